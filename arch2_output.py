"""Arch 2: the previous *output* is fed back (two inputs, one output), trained with teacher forcing.

    h_t      = act(combine(x_t U, p_{t-1} W) + b)
    logits_t = h_t V + c

p_{t-1} is the "previous output", 27 wide: under teacher forcing (training, by default) the true previous
target, one-hot; at test time (evaluation, sampling) the model's own previous distribution softmax(logits_{t-1}).
Note that the true previous target *is* the current input x_t: see README for what that means.

Run `python arch2_output.py --help` for the options.
"""
import sys

import training
from training import tf

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
    num_steps=(50_001, "training steps (the notebook's count)"),
)


# ---------------------------------------------------------------------------------------------
# The graph.
# ---------------------------------------------------------------------------------------------
def build_graph(hp):
    """The Arch 2 graph for hyperparameters hp: training, evaluation and sampling branches sharing weights."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(hp["seed"])
        n, batch_size, num_unrollings = hp["num_nodes"], hp["batch_size"], hp["num_unrollings"]
        alphabet_size = training.alphabet_size
        hidden_size = 2 * n if hp["combine"] == "concat" else n  # width of h_t
        act = training.ACTIVATIONS[hp["activation"]]
        combine = training.COMBINES[hp["combine"]]

        # Weights, named after the equations (initialised as in Arch 1).
        U = training.weight([alphabet_size, n], "U")  # input character -> hidden
        W = training.weight([alphabet_size, n], "W")  # previous output -> hidden
        b = tf.Variable(tf.zeros([hidden_size]), name="b")
        V = training.weight([hidden_size, alphabet_size], "V")  # hidden -> next-character scores
        c = tf.Variable(tf.zeros([alphabet_size]), name="c")

        def unroll(inputs, p, targets=None):
            """Runs the cell over a list of one-hot inputs [batch, 27] from the previous output p [batch, 27].

            With targets (teacher forcing) p_{t-1} is the true previous target; without, the model's own
            softmax(logits_{t-1}), through which gradients flow. Returns the logits of every step stacked in
            time order [steps * batch, 27] and the last previous output, to carry on.
            """
            steps = len(inputs)
            xU = tf.matmul(tf.concat(inputs, axis=0), U)  # x_t U for every step in one matmul
            if targets is not None:
                # Every p_{t-1} is known in advance, so all steps are computed at once: nothing runs through time.
                p_prev = tf.concat([p] + targets[:-1], axis=0)  # [steps * batch, 27]
                hs = act(combine(xU, tf.matmul(p_prev, W)) + b)
                return tf.matmul(hs, V) + c, targets[-1]
            logits = []
            for xU_t in tf.split(xU, steps):
                h = act(combine(xU_t, tf.matmul(p, W)) + b)
                logits.append(tf.matmul(h, V) + c)
                p = tf.nn.softmax(logits[-1])  # the model's own distribution, softmax applied once
            return tf.concat(logits, axis=0), p

        # Training: a list of placeholders, one per unrolling (+1: labels are the inputs shifted by one).
        train_data = training.unrolled_placeholders(num_unrollings, batch_size)
        inputs, labels = train_data[:-1], train_data[1:]
        # The previous output is carried from one mega-batch to the next; all zeros at the very start.
        saved_p = tf.Variable(tf.zeros([batch_size, alphabet_size]), trainable=False, name="saved_p")
        logits, p = unroll(inputs, saved_p, targets=labels if hp["teacher_forcing"] else None)
        with tf.control_dependencies([logits]):  # under teacher forcing p does not depend on saved_p: the
            carry = saved_p.assign(p)  # assignment must wait until this mega-batch has read the old value
        with tf.control_dependencies([carry]):
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
                labels=tf.concat(labels, axis=0), logits=logits))
        reset_state = saved_p.assign(tf.zeros_like(saved_p))

        # Optimizer: exponential learning-rate decay, gradients clipped by their global norm.
        train_op, learning_rate, grad_norm = training.optimize(loss, hp)

        # Evaluation and sampling feed the model's own outputs back, as the post prescribes for test time.
        return training.Model(graph, hp, unroll, state_size=alphabet_size, train_data=train_data, logits=logits,
                              loss=loss, train_op=train_op, learning_rate=learning_rate, grad_norm=grad_norm,
                              reset_state=reset_state, teacher_forced_eval=True)


def main(argv=None):
    """Trains Arch 2 from the command line; returns the exit status."""
    return training.main(ARCHITECTURE, HPARAMS, build_graph, argv)


if __name__ == "__main__":
    sys.exit(main())
