"""Arch 2: the previous *output* is fed back (two inputs, one output), trained with teacher forcing.

    h_t      = act(combine(x_t U, p_{t-1} W) + b)
    logits_t = h_t V + c

p_{t-1} is the "previous output", 27 wide: under teacher forcing (training, by default) the true previous
target, one-hot; at test time (evaluation, sampling) the model's own previous distribution softmax(logits_{t-1}).
Note that the true previous target *is* the current input x_t: see README for what that means.

build_graph below is the post's graph (--graph post); fast.py holds the same model rewritten for speed
(--graph fast, the default). Run `python arch2_output.py --help` for the options.
"""
import sys

import fast
import graphs
import training
from graphs import tf

# ---------------------------------------------------------------------------------------------
# Hyperparameters: the post's concatenation notebook, Arch 2, except num_steps.
# ---------------------------------------------------------------------------------------------
ARCHITECTURE = "arch2_output"
HPARAMS = dict(
    batch_size=(64, "text streams trained side by side, one cursor each"),
    num_nodes=(50, "n, the width of x_t U and p_{t-1} W; concat makes the hidden layer 2n wide"),
    num_unrollings=(20, "time steps unrolled per training step"),
    activation=("tanh", "act: relu or tanh"),
    combine=("concat", "how x_t U and p_{t-1} W meet: concat (the post's best), add or multiply"),
    teacher_forcing=(True, "feed the true previous target as p_{t-1} in training (the model's own output if not)"),
    optimizer=("sgd", "sgd, adadelta or adam"),
    learning_rate=(2.5, "initial learning rate"),
    decay_steps=(5_000, "the learning rate is multiplied by decay_rate every decay_steps steps"),
    decay_rate=(0.1, "factor of the exponential learning-rate decay"),
    staircase=(True, "decay in steps (True) or continuously (False)"),
    clip_norm=(1.25, "gradients are rescaled so that their global norm is at most this"),
    init=("default", "initial weights: default (mean 0, variance 1/fan-in) or notebook (the notebooks' "
                     "truncated_normal(shape, -0.1, 0.1): README, Differences)"),
    num_steps=(50_001, "training steps (the notebook's count)"),
)


# ---------------------------------------------------------------------------------------------
# The graph, as the post builds it.
# ---------------------------------------------------------------------------------------------
def build_graph(hp):
    """The post's Arch 2 graph for hyperparameters hp: training, evaluation and sampling branches."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(hp["seed"])
        n, batch_size, num_unrollings = hp["num_nodes"], hp["batch_size"], hp["num_unrollings"]
        alphabet_size = graphs.alphabet_size
        hidden_size = 2 * n if hp["combine"] == "concat" else n  # concat puts x_t U and p_{t-1} W side by side
        act, combine = graphs.ACTIVATIONS[hp["activation"]], graphs.COMBINES[hp["combine"]]

        # Weights, named after the equations (graphs.weight says how they are initialised).
        U = graphs.weight([alphabet_size, n], "U", hp["init"])  # [27, n]: input character -> hidden
        W = graphs.weight([alphabet_size, n], "W", hp["init"])  # [27, n]: previous output -> hidden
        b = tf.Variable(tf.zeros([hidden_size]), name="b")  # [hidden_size]
        V = graphs.weight([hidden_size, alphabet_size], "V", hp["init"])  # [hidden_size, 27]: hidden -> scores
        c = tf.Variable(tf.zeros([alphabet_size]), name="c")  # [27]

        def cell(x, p):
            """One time step: logits_t from the one-hot input x_t [batch, 27] and the previous output p_{t-1}."""
            h = act(combine(tf.matmul(x, U), tf.matmul(p, W)) + b)
            return tf.matmul(h, V) + c

        def unroll(inputs, p, targets=None):
            """The cell over a list of inputs from the previous output p: (every step's logits stacked in time
            order [steps * batch, 27], the last previous output).

            With targets (teacher forcing), the true previous target is fed as the previous output at each
            step; without, the model's own distribution softmax(logits_{t-1}), through which gradients flow.
            """
            logits = []
            for t, x in enumerate(inputs):
                logits.append(cell(x, p))
                if targets is not None:
                    p = targets[t]  # teacher forcing: the true target of this step is the next step's p
                else:
                    p = tf.nn.softmax(logits[-1])  # free running: the model's own output, softmax applied once
            return tf.concat(logits, axis=0), p

        # Training: placeholders for the inputs and targets of each unrolling, kept in lists.
        train_inputs = [tf.placeholder(tf.float32, [batch_size, alphabet_size], name=f"train_input_{i}")
                        for i in range(num_unrollings)]
        train_labels = [tf.placeholder(tf.float32, [batch_size, alphabet_size], name=f"train_label_{i}")
                        for i in range(num_unrollings)]
        # The previous output carried from the previous mega-batch: fed in, zeros at the very start, and the
        # last one fetched to be fed back at the next step.
        initial_output = tf.placeholder(tf.float32, [batch_size, alphabet_size], name="initial_state")
        logits, final_output = unroll(train_inputs, initial_output,
                                      targets=train_labels if hp["teacher_forcing"] else None)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
            labels=tf.concat(train_labels, axis=0), logits=logits))

        # Optimizer: exponential learning-rate decay, gradients clipped by their global norm.
        train_op, learning_rate, grad_norm = graphs.optimize(loss, hp)

        # Evaluation and sampling feed the model's own outputs back, as the post prescribes for test time;
        # evaluation can also feed the true previous characters (teacher_forced_eval).
        return graphs.Model(graph, hp, unroll, alphabet_size, "saved_p", initial_output, final_output, logits,
                            loss, train_op, learning_rate, grad_norm, train_inputs=train_inputs,
                            train_labels=train_labels, teacher_forced_eval=True)


GRAPHS = {"post": build_graph, "fast": fast.arch2_graph}  # --graph: the post's, or the same model made fast


def main(argv=None):
    """Trains Arch 2 from the command line; returns the exit status."""
    return training.main(ARCHITECTURE, HPARAMS, GRAPHS, argv)


if __name__ == "__main__":
    sys.exit(main())
