"""Arch 1: the hidden layer of the previous step is fed back (two inputs, two outputs).

    h_t      = act(combine(x_t U, h_{t-1} W) + b)      the new hidden state (the model's memory)
    logits_t = h_t V + c                                 scores of the next character

Run `python arch1_hidden.py --help` for the options; README.md explains the output.
"""
import sys

import training
from training import tf

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
    num_steps=(100_001, "training steps (the post ran 800,001: see README)"),
)


# ---------------------------------------------------------------------------------------------
# The graph.
# ---------------------------------------------------------------------------------------------
def recurrence(pre_activations, W, h, activation):
    """h_t = act(p_t + h_{t-1} W) for each step from h_0 = h: the part that runs through time.

    pre_activations holds every step's p_t stacked in time order [steps * batch, n], and so does the result,
    every h_t. The rows of a batch are independent text streams, so the two halves of the batch run as two
    independent chains of matmuls, one per core (TF runs PARALLEL_OPS ops at a time); an odd batch is one chain.

    The gradient is backpropagation through time written out: walking back,
    dL/dh_{t-1} = (dL/dh_t * act'(h_t)) W^T, the product that makes gradients vanish or explode. The same
    maths as TF's automatic gradient (the tests check it against a numpy reference) in fewer ops: three a
    step on the critical path instead of five or six, and dL/dW in one matmul per chain.
    """
    act = training.ACTIVATIONS[activation]
    act_grad = {"relu": lambda dh, h: tf.raw_ops.ReluGrad(gradients=dh, features=h),  # dh * act'(h), one op
                "tanh": lambda dh, h: tf.raw_ops.TanhGrad(y=h, dy=dh)}[activation]
    steps = pre_activations.shape[0] // h.shape[0]
    chains = training.PARALLEL_OPS if h.shape[0] % training.PARALLEL_OPS == 0 else 1

    def by_chain(stacked):
        """[steps * batch, n] -> [chain][step] blocks of [batch / chains, n]."""
        blocks = [tf.split(step, chains) for step in tf.split(stacked, steps)]
        return [[blocks[t][k] for t in range(steps)] for k in range(chains)]

    def stacked(blocks):
        """The inverse of by_chain."""
        return tf.concat([chain[t] for t in range(steps) for chain in blocks], axis=0)

    @tf.custom_gradient
    def forward(W, h0, pre):
        h0s, pres, hs = tf.split(h0, chains), by_chain(pre), []
        for h, pre_k in zip(h0s, pres):
            hs_k = []
            for p in pre_k:
                h = act(p + tf.matmul(h, W))
                hs_k.append(h)
            hs.append(hs_k)

        def backward(d_hs):
            W_T = tf.transpose(W)  # once; a matmul with transpose_b=True ran at half speed (see session_config)
            d_pre, d_h0, d_W = [], [], []
            for h0_k, hs_k, d_hs_k in zip(h0s, hs, by_chain(d_hs)):
                d_pre_k, d_h = [None] * steps, None
                for t in reversed(range(steps)):
                    d_h = d_hs_k[t] if d_h is None else d_hs_k[t] + d_h  # from the output, and from step t + 1
                    d_pre_k[t] = act_grad(d_h, hs_k[t])
                    d_h = tf.matmul(d_pre_k[t], W_T)  # dL/dh_{t-1}
                # dL/dW = sum_t h_{t-1}^T dL/dpre_t: one matmul once the chain's walk back is done.
                d_W.append(tf.matmul(tf.concat([h0_k] + hs_k[:-1], 0), tf.concat(d_pre_k, 0), transpose_a=True))
                d_pre.append(d_pre_k)
                d_h0.append(d_h)
            return tf.add_n(d_W), tf.concat(d_h0, 0), stacked(d_pre)

        return stacked(hs), backward

    return forward(tf.convert_to_tensor(W), h, pre_activations)


def build_graph(hp):
    """The Arch 1 graph for hyperparameters hp: training, evaluation and sampling branches sharing weights."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(hp["seed"])
        n, batch_size, num_unrollings = hp["num_nodes"], hp["batch_size"], hp["num_unrollings"]
        alphabet_size = training.alphabet_size
        concat = hp["combine"] == "concat"
        hidden_size = 2 * n if concat else n  # width of h_t
        act = training.ACTIVATIONS[hp["activation"]]

        # Weights, named after the equations. Initialised N(0, 1/fan_in) (truncated): the original's
        # truncated_normal(shape, -0.1, 0.1) meant a range but drew from a normal of mean -0.1.
        U = training.weight([alphabet_size, n], "U")  # input character -> hidden
        W = training.weight([hidden_size, n], "W")  # previous hidden state -> hidden
        b = tf.Variable(tf.zeros([hidden_size]), name="b")
        V = training.weight([hidden_size, alphabet_size], "V")  # hidden -> next-character scores
        c = tf.Variable(tf.zeros([alphabet_size]), name="c")

        def unroll(inputs, h):
            """Runs the cell over a list of one-hot inputs [batch, 27] from state h [batch, hidden_size].

            Returns the logits of every step stacked in time order [steps * batch, 27] and the last state.
            """
            steps, batch = len(inputs), inputs[0].shape[0]
            x = tf.concat(inputs, axis=0)  # [steps * batch, 27]
            if concat:
                # h_t = act(concat([x_t U, h_{t-1} W]) + b) splits into two halves; with W = [W_a; W_r],
                # b = [b_a; b_r] and V = [V_a; V_r]:
                #   a_t = act(x_t U + b_a)                        sees only the current character,
                #   r_t = act(a_{t-1} W_a + r_{t-1} W_r + b_r)    sees only the past,
                #   logits_t = a_t V_a + r_t V_r + c.
                # x_t is one-hot, so a_t is the row of A = act(U + b_a) for the current character: a_t = x_t A,
                # a_t W_a = x_t (A W_a), a_t V_a = x_t (A V_a). Those [27, n] tables are made once per run;
                # only r_{t-1} W_r remains recurrent, the rest is one matmul for all steps.
                W_a, W_r = tf.split(W, 2, axis=0)  # [n, n] each
                b_a, b_r = tf.split(b, 2)
                V_a, V_r = tf.split(V, 2, axis=0)  # [n, 27] each
                a_0, r_0 = tf.split(h, 2, axis=1)  # the state carried in (a_0 W_a is the first a_{t-1} W_a)
                A = act(U + b_a)  # [27, n]: a_t for each character
                a_prev_W = tf.concat([tf.matmul(a_0, W_a), tf.matmul(x[:-batch], tf.matmul(A, W_a))], axis=0)
                r = recurrence(a_prev_W + b_r, W_r, r_0, hp["activation"])
                logits = tf.matmul(x, tf.matmul(A, V_a)) + tf.matmul(r, V_r) + c
                return logits, tf.concat([tf.matmul(inputs[-1], A), r[-batch:]], axis=1)
            xU = tf.matmul(x, U)  # x_t U for every step in one matmul: it does not depend on the past
            if hp["combine"] == "add":
                hs = recurrence(xU + b, W, h, hp["activation"])  # act(x_t U + b + h_{t-1} W)
            else:  # multiply: x_t U scales h_{t-1} W, so the loop is written out here and TF differentiates it
                hs = []
                for xU_t in tf.split(xU, steps):
                    h = act(xU_t * tf.matmul(h, W) + b)
                    hs.append(h)
                hs = tf.concat(hs, axis=0)
            logits = tf.matmul(hs, V) + c  # one output projection for all steps
            return logits, hs[-batch:]

        # Training: a list of placeholders, one per unrolling (+1: labels are the inputs shifted by one).
        train_data = training.unrolled_placeholders(num_unrollings, batch_size)
        inputs, labels = train_data[:-1], train_data[1:]
        # The hidden state is carried from one mega-batch to the next (truncated backprop through time).
        saved_h = tf.Variable(tf.zeros([batch_size, hidden_size]), trainable=False, name="saved_h")
        logits, h = unroll(inputs, saved_h)
        with tf.control_dependencies([saved_h.assign(h)]):
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
                labels=tf.concat(labels, axis=0), logits=logits))
        reset_state = saved_h.assign(tf.zeros_like(saved_h))

        # Optimizer: exponential learning-rate decay, gradients clipped by their global norm.
        train_op, learning_rate, grad_norm = training.optimize(loss, hp)

        # Evaluation (many streams over held-out text) and sampling (batch 1) reuse unroll's weights.
        return training.Model(graph, hp, unroll, state_size=hidden_size, train_data=train_data, logits=logits,
                              loss=loss, train_op=train_op, learning_rate=learning_rate, grad_norm=grad_norm,
                              reset_state=reset_state)


def main(argv=None):
    """Trains Arch 1 from the command line; returns the exit status."""
    return training.main(ARCHITECTURE, HPARAMS, build_graph, argv)


if __name__ == "__main__":
    sys.exit(main())
