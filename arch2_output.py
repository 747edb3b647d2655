"""Arch 2: the previous *output* is fed back (two inputs, one output), trained with teacher forcing.

    h_t      = act(combine(x_t U, p_{t-1} W) + b)
    logits_t = h_t V + c

p_{t-1} is the "previous output", 27 wide: under teacher forcing (training, by default) the true previous
target, one-hot; at test time (evaluation, sampling) the model's own previous distribution softmax(logits_{t-1}).
Note that the true previous target *is* the current input x_t: docs/architectures.md says what that means.

This file is the post's Arch 2, whole: the hyperparameters, the graph with its optimizer and its sampling
branch (build_graph), and the Session loop that trains it and samples from it (session_loop). It is what
`python arch2_output.py` runs. machinery/fast.py holds the same model rewritten for speed (--graph fast),
which the tests prove equal to this one. Run `python arch2_output.py --help` for the options.
"""
import machinery.startup  # noqa: F401 -- first: Ctrl-C while the libraries load exits quietly
import sys

import numpy as np

from batches import Batch, getWindowBatch
from data import alphabet_size, id2char, one_hot, random_distribution, sample_distribution, vec2mat
from machinery import fast, graphs, training
from machinery.tf1 import tf

# ---------------------------------------------------------------------------------------------
# Hyperparameters: the post's concatenation notebook, Arch 2, except num_steps.
# ---------------------------------------------------------------------------------------------
ARCHITECTURE = "arch2_output"
HPARAMS = dict(
    batch_size=(64, "text streams trained side by side, one cursor each"),
    num_nodes=(50, "n, the width of x_t U and p_{t-1} W; concat makes the hidden layer 2n wide"),
    num_unrollings=(20, "time steps unrolled per training step"),
    activation=("tanh", "act: relu or tanh"),
    combine=("concat", "how x_t U and p_{t-1} W meet: concat (the post's choice), add or multiply"),
    teacher_forcing=(True, "feed the true previous target as p_{t-1} in training (the model's own output if not)"),
    optimizer=("sgd", "sgd, adadelta or adam"),
    learning_rate=(2.5, "initial learning rate"),
    decay_steps=(5_000, "the learning rate is multiplied by decay_rate every decay_steps steps"),
    decay_rate=(0.1, "factor of the exponential learning-rate decay"),
    staircase=(True, "decay in steps (True) or continuously (False)"),
    decay_minutes=(0.0, "not the post's: multiply the learning rate by decay_rate every this many minutes of training "
                        "instead of every decay_steps steps, to anneal alike on any machine (0: by steps)"),
    warmup_steps=(0, "not the post's: the learning rate rises linearly to its value over this many first steps (0: none)"),
    clip_norm=(1.25, "gradients are rescaled so that their global norm is at most this"),
    init=("default", "initial weights: default (mean 0, variance 1/fan-in) or notebook (the notebooks' "
                     "truncated_normal(shape, -0.1, 0.1): docs/differences.md)"),
    num_steps=(50_001, "training steps (the notebook's count)"),
)


# ---------------------------------------------------------------------------------------------
# The graph, as the post builds it.
# ---------------------------------------------------------------------------------------------
def build_graph(hp):
    """The post's Arch 2 graph for hyperparameters hp: its training and sampling branches (graphs.Model adds
    an evaluation branch that scores held-out text with the same cell)."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(hp["seed"])
        n, batch_size, num_unrollings = hp["num_nodes"], hp["batch_size"], hp["num_unrollings"]
        hidden_size = 2 * n if hp["combine"] == "concat" else n  # concat puts x_t U and p_{t-1} W side by side
        act, combine = graphs.ACTIVATIONS[hp["activation"]], graphs.COMBINES[hp["combine"]]

        # Weights, named after the equations (graphs.weight says how they are initialised).
        U = graphs.weight([alphabet_size, n], "U", hp["init"])  # [27, n]: input character -> hidden
        W = graphs.weight([alphabet_size, n], "W", hp["init"])  # [27, n]: previous output -> hidden
        b = tf.Variable(tf.zeros([hidden_size]), name="b")  # [hidden_size]
        V = graphs.weight([hidden_size, alphabet_size], "V", hp["init"])  # [hidden_size, 27]: hidden -> scores
        c = tf.Variable(tf.zeros([alphabet_size]), name="c")  # [27]

        def cell(x, p):  # the listings' RNN(i, o_input)
            """One time step: logits_t from the one-hot input x_t [batch, 27] and the previous output p_{t-1}."""
            h = act(combine(tf.matmul(x, U), tf.matmul(p, W)) + b)
            return tf.matmul(h, V) + c

        def unroll(inputs, p, targets=None):
            """The cell over a list of inputs from the previous output p: (every step's logits stacked in time
            order [steps * batch, 27], the last previous output).

            With targets (teacher forcing), the true previous target is fed as the previous output at each
            step; without, the model's own distribution softmax(logits_{t-1}), through which gradients flow.
            """
            outputs = []  # the logits of each step
            for t, x in enumerate(inputs):
                outputs.append(cell(x, p))
                if targets is not None:
                    p = targets[t]  # teacher forcing: the true target of this step is the next step's p
                else:
                    p = tf.nn.softmax(outputs[-1])  # free running: the model's own output, softmax applied once
            return tf.concat(outputs, axis=0), p

        # Training: placeholders for the inputs and targets of each unrolling, kept in lists.
        train = [tf.placeholder(tf.float32, [batch_size, alphabet_size], name=f"train_{i}")
                 for i in range(num_unrollings)]
        labels = [tf.placeholder(tf.float32, [batch_size, alphabet_size], name=f"labels_{i}")
                  for i in range(num_unrollings)]
        # The previous output carried from the previous mega-batch: fed in, zeros at the very start, and the
        # last one fetched to be fed back at the next step. Step 0 takes it; under teacher forcing step i > 0
        # takes labels[i - 1].
        output_feed = tf.placeholder(tf.float32, [batch_size, alphabet_size], name="output_feed")
        logits, final_output = unroll(train, output_feed, targets=labels if hp["teacher_forcing"] else None)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
            labels=tf.concat(labels, axis=0), logits=logits))

        # Optimizer: the learning rate decays exponentially with the global step, and the gradients are
        # clipped by their global norm before they are applied.
        global_step = tf.train.get_or_create_global_step()
        learning_rate = tf.train.exponential_decay(
            hp["learning_rate"], global_step, hp["decay_steps"], hp["decay_rate"], staircase=hp["staircase"])
        if hp["decay_minutes"] or hp["warmup_steps"]:  # not the post's: decay with time, warm up (docs/differences.md)
            learning_rate = graphs.our_schedule(hp, global_step, learning_rate)
        optimizer = graphs.OPTIMIZERS[hp["optimizer"]](learning_rate)
        gradients, variables = zip(*optimizer.compute_gradients(loss))
        gradients_clipped, grad_norm = tf.clip_by_global_norm(gradients, hp["clip_norm"])  # grad_norm: before clipping
        train_op = optimizer.apply_gradients(zip(gradients_clipped, variables), global_step=global_step)  # the listings' opt

        # Sampling: one character at a time (batch 1) through the same cell and weights. At test time the
        # previous output fed back is the model's own distribution, as the post prescribes.
        val_input = tf.placeholder(tf.float32, [1, alphabet_size], name="val_input")  # x_t, one-hot
        val_output = tf.placeholder(tf.float32, [1, alphabet_size], name="val_output")  # p_{t-1}
        val_logits = cell(val_input, val_output)
        val_probs = tf.nn.softmax(val_logits)  # softmax once (the notebooks applied it twice); the next p_{t-1}

        # Evaluation feeds the model's own outputs back too; it can also feed the true previous characters.
        return graphs.Model(graph=graph, hp=hp, unroll=unroll, state_size=alphabet_size, state_name="saved_p",
                            train=train, labels=labels, initial_state=output_feed, final_state=final_output,
                            logits=logits, loss=loss, train_op=train_op, learning_rate=learning_rate,
                            grad_norm=grad_norm, val_input=val_input, val_state=val_output,
                            val_state_after=val_probs, val_logits=val_logits, val_probs=val_probs,
                            teacher_forced_eval=True)


GRAPHS = {"post": build_graph, "fast": fast.arch2_graph}  # --graph: the post's, or the same model made fast


# ---------------------------------------------------------------------------------------------
# Training: a session with our graph, the mega-batches fed step after step, evaluated periodically.
# ---------------------------------------------------------------------------------------------
def sample(session, model, length, rng):
    """length characters drawn from the model, as the notebooks sample: a first character drawn from a
    random distribution over the alphabet, then each next one drawn from val_probs and fed back, with
    val_probs itself as the next previous output."""
    char_id = sample_distribution(random_distribution(rng), rng)
    output = np.zeros([1, alphabet_size], np.float32)  # the previous output at the start: zeros, as in training
    text = id2char(char_id)
    for _ in range(length - 1):
        output = session.run(model.val_probs, feed_dict={model.val_input: vec2mat(one_hot(char_id)),
                                                         model.val_state: output})
        char_id = sample_distribution(output, rng)
        text += id2char(char_id)
    return text


def session_loop(argv=None):
    """Trains Arch 2 with the settings of the command line argv; returns the results (also in results.json)."""
    with training.Run(ARCHITECTURE, HPARAMS, argv) as run:  # the settings, the run folder, the data
        hp, num_unrollings = run.hp, run.hp["num_unrollings"]
        train_text = run.splits[0]  # data.py: text8 (or --data) split 90/5/5; the run scores the other two
        batch = Batch(train_text, hp["batch_size"])  # batch_size cursors spread through the text
        model = GRAPHS[hp["graph"]](hp)
        session = run.new_session(model, batch)
        if run.resumed:
            state = run.restore()  # --resume: the weights, the carried previous output and the cursors saved
        else:
            session.run(model.init)
            state = np.zeros([hp["batch_size"], alphabet_size], np.float32)  # the previous output at the start: zeros
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
                # under teacher forcing the graph also feeds each label back as the next step's previous output
                feed_dict[model.labels[i]] = mega_batch_y[i]
            # state: the last previous output (teacher forcing: the last label), fed back at the next step
            _, loss, learning_rate, grad_norm, state = session.run(fetches, feed_dict=feed_dict)
            run.record(step, loss, learning_rate, grad_norm)  # a report line every summary_frequency steps
            if step % hp["eval_frequency"] == 0:
                valid_bpc = run.validate(step)  # bits/char on the validation text, free running as at test time
                run.save(step, state, valid_bpc)  # a checkpoint (the best by validation kept in best/)
                for _ in range(3):  # and samples, to read what the model has learnt
                    run.say("  sample: " + sample(session, model, 80, rng))
        return run.finish(state)  # the last checkpoint, the whole validation and test splits, results.json


def main(argv=None):
    """Trains Arch 2 from the command line; returns the exit status."""
    return training.main(ARCHITECTURE, session_loop, argv)


if __name__ == "__main__":
    sys.exit(main())
