"""Arch 1: the hidden layer of the previous step is fed back (two inputs, two outputs).

    h_t      = act(combine(x_t U, h_{t-1} W) + b)      the new hidden state (the model's memory)
    logits_t = h_t V + c                                 scores of the next character

build_graph below is the post's graph (--graph post). fast.py holds the same model rewritten for speed
(--graph fast, the default), which the tests prove equal to this one. Run `python arch1_hidden.py --help`
for the options; README.md explains the output.
"""
import sys

import fast
import graphs
import training
from graphs import tf

# ---------------------------------------------------------------------------------------------
# Hyperparameters: the post's concatenation notebook, except num_steps (see README for the full run).
# ---------------------------------------------------------------------------------------------
ARCHITECTURE = "arch1_hidden"
HPARAMS = dict(
    batch_size=(32, "text streams trained side by side, one cursor each"),
    num_nodes=(100, "n, the width of x_t U and h_{t-1} W; concat makes the hidden state 2n wide"),
    num_unrollings=(40, "time steps unrolled per training step (the post: 20 with tanh, 40 with relu)"),
    activation=("relu", "act: relu or tanh (the post: relu allowed 40 unrollings, tanh 20; README has ours)"),
    combine=("concat", "how x_t U and h_{t-1} W meet: concat (the post's best), add or multiply"),
    optimizer=("adadelta", "sgd, adadelta or adam"),
    learning_rate=(2.5, "initial learning rate (the post: most learning happens between 0.1 and 2.5)"),
    decay_steps=(80_000, "the learning rate is multiplied by decay_rate every decay_steps steps"),
    decay_rate=(0.75, "factor of the exponential learning-rate decay"),
    staircase=(True, "decay in steps (True) or continuously (False)"),
    clip_norm=(1.25, "gradients are rescaled so that their global norm is at most this"),
    init=("default", "initial weights: default (mean 0, variance 1/fan-in) or notebook (the notebooks' "
                     "truncated_normal(shape, -0.1, 0.1): README, Differences)"),
    num_steps=(100_001, "training steps (the post ran 800,001: see README)"),
)


# ---------------------------------------------------------------------------------------------
# The graph, as the post builds it.
# ---------------------------------------------------------------------------------------------
def build_graph(hp):
    """The post's Arch 1 graph for hyperparameters hp: training, evaluation and sampling branches."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(hp["seed"])
        n, batch_size, num_unrollings = hp["num_nodes"], hp["batch_size"], hp["num_unrollings"]
        alphabet_size = graphs.alphabet_size
        hidden_size = 2 * n if hp["combine"] == "concat" else n  # concat puts x_t U and h_{t-1} W side by side
        act, combine = graphs.ACTIVATIONS[hp["activation"]], graphs.COMBINES[hp["combine"]]

        # Weights, named after the equations (graphs.weight says how they are initialised).
        U = graphs.weight([alphabet_size, n], "U", hp["init"])  # [27, n]: input character -> hidden
        W = graphs.weight([hidden_size, n], "W", hp["init"])  # [hidden_size, n]: previous hidden state -> hidden
        b = tf.Variable(tf.zeros([hidden_size]), name="b")  # [hidden_size]
        V = graphs.weight([hidden_size, alphabet_size], "V", hp["init"])  # [hidden_size, 27]: hidden -> scores
        c = tf.Variable(tf.zeros([alphabet_size]), name="c")  # [27]

        def cell(x, h):
            """One time step: (h_t, logits_t) from the one-hot input x_t [batch, 27] and h_{t-1}."""
            h = act(combine(tf.matmul(x, U), tf.matmul(h, W)) + b)
            return h, tf.matmul(h, V) + c

        def unroll(inputs, h):
            """The cell over a list of inputs from the state h: (every step's logits stacked in time order
            [steps * batch, 27], the last state)."""
            logits = []
            for x in inputs:
                h, step_logits = cell(x, h)
                logits.append(step_logits)
            return tf.concat(logits, axis=0), h

        # Training. The post: "placeholders need to be defined for inputs and target values of each
        # unrolling", kept in lists so that the number of unrollings is a value, not lines of code.
        train_inputs = [tf.placeholder(tf.float32, [batch_size, alphabet_size], name=f"train_input_{i}")
                        for i in range(num_unrollings)]
        train_labels = [tf.placeholder(tf.float32, [batch_size, alphabet_size], name=f"train_label_{i}")
                        for i in range(num_unrollings)]
        # The hidden state carried from the previous mega-batch (truncated backprop through time): fed in,
        # zeros at the start, and the last one fetched to be fed back at the next step.
        initial_state = tf.placeholder(tf.float32, [batch_size, hidden_size], name="initial_state")
        logits, final_state = unroll(train_inputs, initial_state)
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
            labels=tf.concat(train_labels, axis=0), logits=logits))

        # Optimizer: exponential learning-rate decay, gradients clipped by their global norm.
        train_op, learning_rate, grad_norm = graphs.optimize(loss, hp)

        # Evaluation (many streams over held-out text) and sampling (batch 1) call unroll with the same weights.
        return graphs.Model(graph, hp, unroll, hidden_size, "saved_h", initial_state, final_state, logits, loss,
                            train_op, learning_rate, grad_norm, train_inputs=train_inputs, train_labels=train_labels)


GRAPHS = {"post": build_graph, "fast": fast.arch1_graph}  # --graph: the post's, or the same model made fast


def main(argv=None):
    """Trains Arch 1 from the command line; returns the exit status."""
    return training.main(ARCHITECTURE, HPARAMS, GRAPHS, argv)


if __name__ == "__main__":
    sys.exit(main())
