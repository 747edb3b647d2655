"""Arch 1: the hidden layer of the previous step is fed back (two inputs, two outputs).

    h_t      = act(combine(x_t U, h_{t-1} W) + b)      the new hidden state (the model's memory)
    logits_t = h_t V + c                                 scores of the next character

This file is the post's Arch 1, whole: the hyperparameters, the graph with its optimizer and its sampling
branch (build_graph), and the Session loop that trains it and samples from it (session_loop). It is what
`python arch1_hidden.py` runs. machinery/fast.py holds the same model rewritten for speed (--graph fast,
1.4 to 2 times quicker), which the tests prove equal to this one. Run `python arch1_hidden.py --help` for
the options; README.md explains the output.
"""
import machinery.startup  # noqa: F401 -- first: Ctrl-C while the libraries load exits quietly
import sys

import numpy as np

from batches import Batch, getWindowBatch
from data import alphabet_size, id2char, one_hot, random_distribution, sample_distribution, vec2mat
from machinery import fast, graphs, training
from machinery.tf1 import tf

# ---------------------------------------------------------------------------------------------
# Hyperparameters: the post's concatenation notebook, except num_steps (docs/usage.md has the full run).
# ---------------------------------------------------------------------------------------------
ARCHITECTURE = "arch1_hidden"
HPARAMS = dict(
    batch_size=(32, "text streams trained side by side, one cursor each"),
    num_nodes=(100, "n, the width of x_t U and h_{t-1} W; concat makes the hidden state 2n wide"),
    num_unrollings=(40, "time steps unrolled per training step (the post: 20 with tanh, 40 with relu)"),
    activation=("relu", "act: relu or tanh (the post: relu allowed 40 unrollings, tanh 20; docs/claims.md has ours)"),
    combine=("concat", "how x_t U and h_{t-1} W meet: concat (the post's choice), add or multiply"),
    optimizer=("adadelta", "sgd, adadelta or adam"),
    learning_rate=(2.5, "initial learning rate (the post: most learning happens between 0.1 and 2.5)"),
    decay_steps=(80_000, "the learning rate is multiplied by decay_rate every decay_steps steps"),
    decay_rate=(0.75, "factor of the exponential learning-rate decay"),
    staircase=(True, "decay in steps (True) or continuously (False)"),
    decay_minutes=(0.0, "not the post's: multiply the learning rate by decay_rate every this many minutes of training "
                        "instead of every decay_steps steps, to anneal alike on any machine (0: by steps)"),
    warmup_steps=(0, "not the post's: the learning rate rises linearly to its value over this many first steps (0: none)"),
    clip_norm=(1.25, "gradients are rescaled so that their global norm is at most this"),
    init=("default", "initial weights: default (mean 0, variance 1/fan-in) or notebook (the notebooks' "
                     "truncated_normal(shape, -0.1, 0.1): docs/differences.md)"),
    dropout=(0.0, "not the post's: in training, each unit of x_t U and of h_t on its way to V is dropped with "
                  "this probability (0: none; docs/differences.md)"),
    recurrent_init=("default", "W alone: default (as --init), orthogonal or identity (not the post's: "
                               "docs/differences.md)"),
    num_steps=(100_001, "training steps (the notebook ran 800,001: docs/usage.md)"),
)


# ---------------------------------------------------------------------------------------------
# The graph, as the post builds it.
# ---------------------------------------------------------------------------------------------
def build_graph(hp):
    """The post's Arch 1 graph for hyperparameters hp: its training and sampling branches (graphs.Model adds
    an evaluation branch that scores held-out text with the same cell)."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(hp["seed"])
        n, batch_size, num_unrollings = hp["num_nodes"], hp["batch_size"], hp["num_unrollings"]
        hidden_size = 2 * n if hp["combine"] == "concat" else n  # concat puts x_t U and h_{t-1} W side by side
        act, combine = graphs.ACTIVATIONS[hp["activation"]], graphs.COMBINES[hp["combine"]]

        # Weights, named after the equations (graphs.weight and recurrent_weight say how they are initialised).
        U = graphs.weight([alphabet_size, n], "U", hp["init"])  # [27, n]: input character -> hidden
        W = graphs.recurrent_weight([hidden_size, n], hp["init"], hp["recurrent_init"])  # [hidden_size, n]: h_{t-1} -> hidden
        b = tf.Variable(tf.zeros([hidden_size]), name="b")  # [hidden_size]
        V = graphs.weight([hidden_size, alphabet_size], "V", hp["init"])  # [hidden_size, 27]: hidden -> scores
        c = tf.Variable(tf.zeros([alphabet_size]), name="c")  # [27]

        def cell(x, h, masks=None):  # the listings' RNN(i, o_input)
            """One time step: (h_t, logits_t) from the one-hot input x_t [batch, 27] and h_{t-1}. masks: --dropout's
            for x_t U and for h_t on its way to V, in training (not the post's: docs/differences.md)."""
            xU = tf.matmul(x, U) if masks is None else tf.matmul(x, U) * masks[0]
            h = act(combine(xU, tf.matmul(h, W)) + b)
            return h, tf.matmul(h if masks is None else h * masks[1], V) + c

        def unroll(inputs, h, masks=None):
            """The cell over a list of inputs from the state h: (every step's logits stacked in time order
            [steps * batch, 27], the last state). masks: each step's, with --dropout."""
            outputs = []  # the logits of each step
            for t, x in enumerate(inputs):
                h, logits = cell(x, h, masks and masks[t])
                outputs.append(logits)
            return tf.concat(outputs, axis=0), h

        # Training. The post: "placeholders need to be defined for inputs and target values of each
        # unrolling", kept in lists so that the number of unrollings is a value, not lines of code.
        train = [tf.placeholder(tf.float32, [batch_size, alphabet_size], name=f"train_{i}")
                 for i in range(num_unrollings)]
        labels = [tf.placeholder(tf.float32, [batch_size, alphabet_size], name=f"labels_{i}")
                  for i in range(num_unrollings)]
        # The hidden state carried from the previous mega-batch (truncated backprop through time): fed in,
        # zeros at the start, and the last one fetched to be fed back at the next step.
        initial_state = tf.placeholder(tf.float32, [batch_size, hidden_size], name="initial_state")
        masks = graphs.dropout_masks(hp, num_unrollings, batch_size, [n, hidden_size])  # None: no --dropout
        logits, final_state = unroll(train, initial_state, masks)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
            labels=tf.concat(labels, axis=0), logits=logits))

        # Optimizer: the learning rate decays exponentially with the global step, and the gradients are
        # clipped by their global norm before they are applied (the post's answer to exploding gradients).
        global_step = tf.train.get_or_create_global_step()
        learning_rate = tf.train.exponential_decay(
            hp["learning_rate"], global_step, hp["decay_steps"], hp["decay_rate"], staircase=hp["staircase"])
        if hp["decay_minutes"] or hp["warmup_steps"]:  # not the post's: decay with time, warm up (docs/differences.md)
            learning_rate = graphs.our_schedule(hp, global_step, learning_rate)
        optimizer = graphs.OPTIMIZERS[hp["optimizer"]](learning_rate)
        gradients, variables = zip(*optimizer.compute_gradients(loss))
        gradients_clipped, grad_norm = tf.clip_by_global_norm(gradients, hp["clip_norm"])  # grad_norm: before clipping
        train_op = optimizer.apply_gradients(zip(gradients_clipped, variables), global_step=global_step)  # the listings' opt

        # Sampling: one character at a time (batch 1) through the same cell and weights, the hidden state fed
        # in and fetched out as in training.
        val_input = tf.placeholder(tf.float32, [1, alphabet_size], name="val_input")  # x_t, one-hot
        val_hidden = tf.placeholder(tf.float32, [1, hidden_size], name="val_hidden")  # h_{t-1}
        val_hidden_after, val_logits = cell(val_input, val_hidden)  # h_t, and the scores of the next character
        val_probs = tf.nn.softmax(val_logits)  # its distribution, to sample from

        return graphs.Model(graph=graph, hp=hp, unroll=unroll, state_size=hidden_size, state_name="saved_h",
                            train=train, labels=labels, initial_state=initial_state, final_state=final_state,
                            logits=logits, loss=loss, train_op=train_op, learning_rate=learning_rate,
                            grad_norm=grad_norm, val_input=val_input, val_state=val_hidden,
                            val_state_after=val_hidden_after, val_logits=val_logits, val_probs=val_probs)


GRAPHS = {"post": build_graph, "fast": fast.arch1_graph}  # --graph: the post's, or the same model made fast


# ---------------------------------------------------------------------------------------------
# Training: a session with our graph, the mega-batches fed step after step, evaluated periodically.
# ---------------------------------------------------------------------------------------------
def sample(session, model, length, rng):
    """length characters drawn from the model, as the notebooks sample: a first character drawn from a
    random distribution over the alphabet, then each next one drawn from val_probs and fed back."""
    char_id = sample_distribution(random_distribution(rng), rng)
    hidden = np.zeros([1, model.state_size], np.float32)  # the post's "vector of all zeros", as in training
    text = id2char(char_id)
    for _ in range(length - 1):
        probs, hidden = session.run([model.val_probs, model.val_state_after],
                                    feed_dict={model.val_input: vec2mat(one_hot(char_id)), model.val_state: hidden})
        char_id = sample_distribution(probs, rng)
        text += id2char(char_id)
    return text


def session_loop(argv=None):
    """Trains Arch 1 with the settings of the command line argv; returns the results (also in results.json)."""
    with training.Run(ARCHITECTURE, HPARAMS, argv) as run:  # the settings, the run folder, the data
        hp, num_unrollings = run.hp, run.hp["num_unrollings"]
        train_text = run.splits[0]  # data.py: text8 (or --data) split 90/5/5; the run scores the other two
        batch = Batch(train_text, hp["batch_size"])  # batch_size cursors spread through the text
        model = GRAPHS[hp["graph"]](hp)
        session = run.new_session(model, batch)
        if run.resumed:
            state = run.restore()  # --resume: the weights, the carried state and the cursors of the last save
        else:
            session.run(model.init)
            state = np.zeros([hp["batch_size"], model.state_size], np.float32)  # the post: "a vector of all zeros"
        rng = np.random.default_rng(hp["seed"])  # for the samples
        if hp["graph"] == "fast":  # the same loop, the windows fed as ids (machinery/fast.py)
            return fast.session_loop(run, model, session, batch, state, sample, rng)

        fetches = [model.train_op, model.loss, model.learning_rate, model.grad_norm, model.final_state]
        for step in run.steps():  # to num_steps; Ctrl-C, a time budget or --patience end it sooner
            batch_x, batch_y = getWindowBatch(batch, num_unrollings)  # [num_unrollings, batch_size] ids each
            mega_batch_x = list(one_hot(batch_x))  # num_unrollings one-hot arrays [batch_size, 27]: the inputs
            mega_batch_y = list(one_hot(batch_y))  # and their labels, the next characters
            feed_dict = {model.initial_state: state}
            for i in range(num_unrollings):  # the post: "iteratively add keys to the feed dictionary"
                feed_dict[model.train[i]] = mega_batch_x[i]
                feed_dict[model.labels[i]] = mega_batch_y[i]
            _, loss, learning_rate, grad_norm, state = session.run(fetches, feed_dict=feed_dict)  # state: h_t, fed back
            run.record(step, loss, learning_rate, grad_norm)  # a report line every summary_frequency steps
            if step % hp["eval_frequency"] == 0:
                valid_bpc = run.validate(step)  # bits/char on the validation text
                run.save(step, state, valid_bpc)  # a checkpoint (the best by validation kept in best/)
                for _ in range(3):  # and samples, to read what the model has learnt
                    run.say("  sample: " + sample(session, model, 80, rng))
        return run.finish(state)  # the last checkpoint, the whole validation and test splits, results.json


def main(argv=None):
    """Trains Arch 1 from the command line; returns the exit status."""
    return training.main(ARCHITECTURE, session_loop, argv)


if __name__ == "__main__":
    sys.exit(main())
