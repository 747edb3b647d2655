"""Graph pieces both architectures share, in both graphs (the post's and fast.py's): the activations and
combines, the weights' initialisation, the sampling branch of fast.py's graphs, and the Model that holds an
architecture's branches and adds the evaluation branch.
"""
import collections
import math
import zlib

import data
from machinery.tf1 import tf

alphabet_size = data.alphabet_size
ACTIVATIONS = {"relu": lambda z: tf.nn.relu(z), "tanh": lambda z: tf.tanh(z)}
COMBINES = {"concat": lambda xU, hW: tf.concat([xU, hW], axis=1), "add": lambda xU, hW: xU + hW,
            "multiply": lambda xU, hW: xU * hW}
OPTIMIZERS = {"sgd": lambda rate: tf.train.GradientDescentOptimizer(rate),
              "adadelta": lambda rate: tf.train.AdadeltaOptimizer(rate), "adam": lambda rate: tf.train.AdamOptimizer(rate)}
INITS = ("default", "notebook")
RECURRENT_INITS = ("default", "orthogonal", "identity")  # Arch 1's W only; ours, not the post's
EVAL_STREAMS = 128  # parallel streams of the evaluation branch
EVAL_UNROLLINGS = 100  # time steps per evaluation run


def weight(shape, name, init="default"):
    """A weight matrix. default: a truncated normal of mean 0 and variance 1 / fan_in. notebook: the post's
    notebooks' truncated_normal(shape, -0.1, 0.1), which meant a range but draws from a normal of mean -0.1
    and standard deviation 0.1 (docs/differences.md).

    The random op's seed comes from the name, so the post's graph and fast.py's, which build their ops in
    different orders, draw the same initial weights from the same --seed.
    """
    mean, stddev = (0.0, 1.0 / math.sqrt(shape[0])) if init == "default" else (-0.1, 0.1)
    return tf.Variable(tf.truncated_normal(shape, mean=mean, stddev=stddev, seed=zlib.crc32(name.encode())),
                       name=name)


def recurrent_weight(shape, init="default", recurrent_init="default"):
    """W, Arch 1's recurrent weights [hidden_size, n]. default: as weight() makes every matrix (init).
    orthogonal: a random orthogonal matrix (Saxe et al., 2014; orthonormal columns when concat makes W 2n x n).
    identity: the identity (Le et al., 2015, with relu: the IRNN; its top n x n block when W is 2n x n). Neither
    is the post's: docs/differences.md."""
    if recurrent_init == "default":
        return weight(shape, "W", init)
    if recurrent_init == "orthogonal":
        initial = tf.orthogonal_initializer(seed=zlib.crc32(b"W"))(shape)
    else:
        initial = tf.eye(*shape)
    return tf.Variable(initial, name="W")


def our_schedule(hp, global_step, learning_rate):
    """The learning rate of --decay-minutes and --warmup-steps (neither is the post's: docs/differences.md).

    --decay-minutes M: the rate is multiplied by decay_rate every M minutes of the run's training (the clock of
    --time-budget, in the variable train_minutes, which the run keeps up to date: Model.train_minutes), instead
    of every decay_steps steps, so that a run anneals the same way on a slow or a fast machine.
    --warmup-steps N: the rate rises linearly from rate / N to the full rate over the first N steps.
    learning_rate is the post's rate, decayed by steps, which --decay-minutes replaces.
    """
    if hp["decay_minutes"]:
        train_minutes = tf.Variable(0.0, trainable=False, name="train_minutes")
        tf.add_to_collection("train_minutes", train_minutes)
        rate = tf.train.exponential_decay(hp["learning_rate"], train_minutes, hp["decay_minutes"], hp["decay_rate"],
                                          staircase=hp["staircase"])
    else:
        rate = learning_rate  # the post's decay by steps, as the script made it
    if hp["warmup_steps"]:
        rate *= tf.minimum(1.0, tf.cast(global_step + 1, tf.float32) / hp["warmup_steps"])
    return rate


def dropout_mask(hp, rows, width, name):
    """--dropout p (not the post's: docs/differences.md): a [rows, width] mask, each entry 0 with probability p
    and 1 / (1 - p) otherwise, drawn anew at every training step from (--seed, the step, name). The draw is
    stateless, so the post's graph and fast.py's, which apply it in different shapes, drop the same units."""
    global_step = tf.cast(tf.train.get_or_create_global_step(), tf.int32)
    seed = tf.stack([global_step, tf.constant(hp["seed"] ^ (zlib.crc32(name.encode()) >> 1), tf.int32)])
    keep = tf.random.stateless_uniform([rows, width], seed=seed) >= hp["dropout"]
    return tf.cast(keep, tf.float32) / (1.0 - hp["dropout"])


def dropout_masks(hp, steps, batch, widths):
    """--dropout's masks for a training window of steps x batch rows: [the masks of each step], one per width
    (Arch 1: x_t U's, h_t's), or None without --dropout. They are rows of one dropout_mask per width."""
    if not hp.get("dropout"):
        return None
    masks = [tf.split(dropout_mask(hp, steps * batch, width, f"dropout_{k}"), steps) for k, width in enumerate(widths)]
    return list(zip(*masks))


def sampling_branch(unroll, state_size):
    """(val_input, val_state, val_state_after, val_logits, val_probs): the batch-1 branch the scripts' build_graph
    write out with their cell, made here from an unroll (fast.py's graphs): one character in, the state
    before and after it, the scores and the distribution of the next character."""
    val_input = tf.placeholder(tf.float32, [1, alphabet_size], name="val_input")
    val_state = tf.placeholder(tf.float32, [1, state_size], name="val_state")
    val_logits, val_state_after = unroll([val_input], val_state)
    return val_input, val_state, val_state_after, val_logits, tf.nn.softmax(val_logits)


# The evaluation branch's fetches, each (summed nats, next state): feeding back the model's own outputs (free),
# and for Arch 2 the true previous characters (forced; None for Arch 1).
Evaluation = collections.namedtuple("Evaluation", "free forced")


class Model:
    """A built graph: an architecture's training and sampling branches, plus an evaluation branch added here.

    unroll(inputs, state) -> (logits [steps * batch, 27], last state) is the architecture's cell run over a
    list of one-hot inputs [batch, 27]; the evaluation branch calls it with its own batch size, sharing the
    weights. With teacher_forced_eval, unroll also takes targets=... (Arch 2) and evaluation can feed them.

    The training branch is fed the state carried from the previous mega-batch (initial_state) and gives the
    last one (final_state); the post's graph is fed the lists of one-hot placeholders train and labels,
    fast.py's the window as two arrays of ids (batch_x, batch_y). The sampling branch (batch 1) is fed one
    character (val_input) and the state before it (val_state); it gives the state after it (val_state_after),
    the scores of the next character (val_logits) and their softmax (val_probs).
    """

    def __init__(self, *, graph, hp, unroll, state_size, state_name, initial_state, final_state, logits, loss,
                 train_op, learning_rate, grad_norm, val_input, val_state, val_state_after, val_logits, val_probs,
                 train=None, labels=None, batch_x=None, batch_y=None, teacher_forced_eval=False):
        self.graph, self.hp, self.unroll, self.state_size = graph, hp, unroll, state_size
        self.initial_state, self.final_state, self.logits, self.loss = initial_state, final_state, logits, loss
        self.train_op, self.learning_rate, self.grad_norm = train_op, learning_rate, grad_norm
        self.train, self.labels, self.batch_x, self.batch_y = train, labels, batch_x, batch_y
        self.val_input, self.val_state, self.val_state_after = val_input, val_state, val_state_after
        self.val_logits, self.val_probs = val_logits, val_probs
        with graph.as_default():
            self.global_step = tf.train.get_global_step()
            # The carried state lives in the training loop; this variable holds it in the checkpoints, so
            # that --resume continues with the state the run stopped with.
            self.saved_state = tf.Variable(tf.zeros(initial_state.shape), trainable=False, name=state_name)
            # --decay-minutes: the minutes trained, which the run sets as they pass (our_schedule); else None.
            self.train_minutes = (graph.get_collection("train_minutes") or [None])[0]

            # Evaluation: EVAL_STREAMS streams of held-out text, EVAL_UNROLLINGS steps per run, ids one-hot
            # encoded in the graph; the state goes in and out through the feed, weights mask padding.
            self.eval_inputs = tf.placeholder(tf.int32, [EVAL_UNROLLINGS, EVAL_STREAMS], name="eval_inputs")
            self.eval_labels = tf.placeholder(tf.int32, [EVAL_UNROLLINGS, EVAL_STREAMS], name="eval_labels")
            self.eval_weights = tf.placeholder(tf.float32, [EVAL_UNROLLINGS, EVAL_STREAMS], name="eval_weights")
            self.eval_state = tf.placeholder(tf.float32, [EVAL_STREAMS, state_size], name="eval_state")

            def evaluation(**targets):
                """(summed nats, next state) of one evaluation run."""
                logits, next_state = unroll(
                    tf.unstack(tf.one_hot(self.eval_inputs, alphabet_size), axis=0), self.eval_state, **targets)
                nats = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=tf.reshape(self.eval_labels, [-1]), logits=logits)
                return tf.reduce_sum(nats * tf.reshape(self.eval_weights, [-1])), next_state

            forced = (evaluation(targets=tf.unstack(tf.one_hot(self.eval_labels, alphabet_size), axis=0))
                      if teacher_forced_eval else None)  # Arch 2: feeding the true previous characters
            self.evaluation = Evaluation(evaluation(), forced)

            # Checkpoints hold the weights, the optimizer's slots, the step and the carried state.
            self.saved_variables = tf.global_variables()
            self.saver = tf.train.Saver(var_list=self.saved_variables, max_to_keep=None)
            self.init = tf.global_variables_initializer()
