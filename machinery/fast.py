"""The fast graphs (--graph fast, opt-in): the models of arch1_hidden.py and arch2_output.py rewritten for
speed, 1.4 to 2 times quicker. Read the scripts to follow the post; this module is what --graph fast runs.

Each graph builds the same variables under the same names as the post's, so a checkpoint of either loads in
the other, and offers the same Model (graphs.Model) to the training loop, evaluation, sampling and
gradients.py. tests/test_fast.py proves that both compute the same loss and gradients, train to the same
weights and sample the same text. The techniques, each with the reason it is the same maths:

1. Two fed arrays of ids. Every fed tensor costs Session.run ~19 us, so the post's 2 x num_unrollings
   one-hot placeholders cost ~1.5 ms a step; the window of getWindowBatch travels instead as its two
   [num_unrollings, batch] uint8 arrays, one-hot encoded in the graph (tf.one_hot gives exactly the arrays
   the post feeds), through one Session callable (session_loop).
2. Matmuls hoisted out of the time loop: x_t U does not depend on the past, so it is one matmul for all
   steps, and so is the output projection h_t V + c once every h_t is known.
3. Arch 1, concat: the two halves and the 27-row tables (arch1_graph).
4. Backpropagation through time written out (recurrence): the same derivatives as TF's automatic ones, in
   fewer ops, with the batch split into independent chains, one per core.
5. Arch 2 under teacher forcing: every p_{t-1} is known in advance, so all steps are computed at once.
"""
from batches import getWindowBatch
from machinery import graphs, sessions, settings
from machinery.tf1 import tf

alphabet_size = graphs.alphabet_size


MAX_CHAINS = 16  # more only multiply the graph: 64 threads once made 128 evaluation chains, minutes to build


def chains(hp):
    """How many independent chains recurrence() cuts a batch into: one per thread of the run, at most
    MAX_CHAINS (each chain is its own ops at every step; recurrence also makes no more chains than rows).

    A small model's step is bound by the cost of each op along the recurrence's critical path, which more
    chains do not shorten; a wide model's by its matmuls, which one chain per core splits with no
    synchronisation inside an op (measured on 2 cores: docs/performance.md).
    """
    return min(settings.threads(hp), MAX_CHAINS)


def _weights(hp, hidden_size, recurrent_rows):
    """U, W, b, V, c exactly as the post's graphs make them (same names, shapes and initial values)."""
    n, init = hp["num_nodes"], hp["init"]
    U = graphs.weight([alphabet_size, n], "U", init)
    W = graphs.recurrent_weight([recurrent_rows, n], init, hp.get("recurrent_init", "default"))  # Arch 2 has none
    b = tf.Variable(tf.zeros([hidden_size]), name="b")
    V = graphs.weight([hidden_size, alphabet_size], "V", init)
    c = tf.Variable(tf.zeros([alphabet_size]), name="c")
    return U, W, b, V, c


def _window(hp):
    """(batch_x, batch_y, train, labels): the window of getWindowBatch fed as two arrays of ids [num_unrollings,
    batch_size] and one-hot encoded in the graph into the post's lists train and labels (technique 1)."""
    shape = [hp["num_unrollings"], hp["batch_size"]]
    batch_x = tf.placeholder(tf.uint8, shape, name="batch_x")
    batch_y = tf.placeholder(tf.uint8, shape, name="batch_y")
    return batch_x, batch_y, tf.unstack(tf.one_hot(batch_x, alphabet_size)), tf.unstack(tf.one_hot(batch_y, alphabet_size))


def _loss(logits, labels):
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=tf.concat(labels, axis=0), logits=logits))


def _split_sizes(rows, chains):
    """Row counts of chains near-equal parts of rows."""
    return [rows // chains + (1 if k < rows % chains else 0) for k in range(chains)]


def recurrence(pre_activations, W, h, activation, chains):
    """h_t = act(p_t + h_{t-1} W) for each step from h_0 = h: the part of the cell that runs through time.

    pre_activations holds every step's p_t stacked in time order [steps * batch, n], and so does the result,
    every h_t. The rows of a batch are independent text streams, so the batch is cut into `chains` parts
    that run as independent chains of matmuls, one per core (sessions.session_config runs as many ops at a
    time, one thread each).

    The gradient is backpropagation through time written out. Walking back from the last step,
        dL/dp_t     = (dL/dh_t from the output + dL/dh_t from step t + 1) * act'(h_t)
        dL/dh_{t-1} = dL/dp_t W^T                  (the product that makes gradients vanish or explode)
        dL/dW       = sum_t h_{t-1}^T dL/dp_t      (one matmul per chain, once its walk back is done)
    the same derivatives TF's automatic gradient computes (act'(h_t) is read off h_t itself: relu' is
    h_t > 0, tanh' is 1 - h_t^2), in three ops a step on the critical path instead of five or six.
    """
    act = graphs.ACTIVATIONS[activation]
    act_grad = {"relu": lambda dh, h: tf.raw_ops.ReluGrad(gradients=dh, features=h),  # dh * act'(h), one op
                "tanh": lambda dh, h: tf.raw_ops.TanhGrad(y=h, dy=dh)}[activation]
    batch = h.shape[0]
    steps = pre_activations.shape[0] // batch
    sizes = _split_sizes(batch, min(chains, batch))

    @tf.custom_gradient
    def forward(W, h0, pre):
        h0s, hs = tf.split(h0, sizes), []
        for h, pre_k in zip(h0s, _by_chain(pre, sizes, steps)):
            hs_k = []
            for p in pre_k:
                h = act(p + tf.matmul(h, W))
                hs_k.append(h)
            hs.append(hs_k)

        def backward(d_hs):
            d_W, d_h0, d_pre = _walk_back(W, h0s, hs, _by_chain(d_hs, sizes, steps), act_grad)
            return d_W, tf.concat(d_h0, 0), _stacked(d_pre, steps)

        return _stacked(hs, steps), backward

    return forward(tf.convert_to_tensor(W), h, pre_activations)


def _by_chain(stacked, sizes, steps):
    """[steps * batch, n] -> [chain][step] blocks of [rows of the chain, n], the chains' rows given by sizes."""
    blocks = [tf.split(step, sizes) for step in tf.split(stacked, steps)]
    return [[blocks[t][k] for t in range(steps)] for k in range(len(sizes))]


def _stacked(blocks, steps):
    """The inverse of _by_chain."""
    return tf.concat([chain[t] for t in range(steps) for chain in blocks], axis=0)


def _walk_back(W, h0s, hs, d_hs, act_grad):
    """Backpropagation through time, written out, chain by chain (recurrence's docstring has the equations):
    (dL/dW, [dL/dh_0 of each chain], [[dL/dp_t of each step] of each chain]), from the states h_0 and h_t of
    each chain and the gradients dL/dh_t that reach each h_t from the output."""
    W_T = tf.transpose(W)  # once: transpose_b=True ran at half speed (sessions.session_config)
    d_pre, d_h0, d_W = [], [], []
    for h0_k, hs_k, d_hs_k in zip(h0s, hs, d_hs):
        d_pre_k, d_h = [None] * len(hs_k), None
        for t in reversed(range(len(hs_k))):
            d_h = d_hs_k[t] if d_h is None else d_hs_k[t] + d_h  # from the output, and from step t + 1
            d_pre_k[t] = act_grad(d_h, hs_k[t])
            d_h = tf.matmul(d_pre_k[t], W_T)  # dL/dh_{t-1}
        d_W.append(tf.matmul(tf.concat([h0_k] + hs_k[:-1], 0), tf.concat(d_pre_k, 0), transpose_a=True))
        d_pre.append(d_pre_k)
        d_h0.append(d_h)
    return tf.add_n(d_W), d_h0, d_pre


def optimize(loss, hp):
    """(train_op, learning_rate, grad_norm): the scripts' optimizer block, the same lines: exponential decay,
    gradients clipped by their global norm.

    grad_norm is the global norm before clipping, reported so that exploding gradients can be seen.
    """
    global_step = tf.train.get_or_create_global_step()
    learning_rate = tf.train.exponential_decay(
        hp["learning_rate"], global_step, hp["decay_steps"], hp["decay_rate"], staircase=hp["staircase"])
    if hp["decay_minutes"] or hp["warmup_steps"]:
        learning_rate = graphs.our_schedule(hp, global_step, learning_rate)
    optimizer = graphs.OPTIMIZERS[hp["optimizer"]](learning_rate)
    gradients, params = zip(*optimizer.compute_gradients(loss))
    clipped, grad_norm = tf.clip_by_global_norm(gradients, hp["clip_norm"])
    train_op = optimizer.apply_gradients(zip(clipped, params), global_step=global_step)
    return train_op, learning_rate, grad_norm


def _concat_unroll(inputs, h, weights, activation, num_chains, masks=None):
    """Arch 1's unroll with concat (technique 3): (every step's logits [steps * batch, 27], the last state).

    h_t = act(concat([x_t U, h_{t-1} W]) + b) splits into two halves that never mix. With W = [W_a; W_r],
    b = [b_a; b_r] and V = [V_a; V_r] (top and bottom n rows):
        a_t = act(x_t U + b_a)                        sees only the current character,
        r_t = act(a_{t-1} W_a + r_{t-1} W_r + b_r)    sees only the past,
        logits_t = a_t V_a + r_t V_r + c.
    x_t is one-hot, so a_t is the row of A = act(U + b_a) for the current character: a_t = x_t A,
    a_t W_a = x_t (A W_a), a_t V_a = x_t (A V_a). Those [27, n] tables are made once per run; only r_{t-1} W_r
    remains recurrent, the rest is one matmul for all steps. With --dropout (masks: [the whole window's mask
    for x_t U, for h_t]) a_t is no longer a row of a table: a_t and the output are computed for every step.
    """
    U, W, b, V, c = weights
    batch, x = inputs[0].shape[0], tf.concat(inputs, axis=0)  # x: [steps * batch, 27]
    W_a, W_r = tf.split(W, 2, axis=0)  # [n, n] each
    b_a, b_r = tf.split(b, 2)
    V_a, V_r = tf.split(V, 2, axis=0)  # [n, 27] each
    a_0, r_0 = tf.split(h, 2, axis=1)  # the state carried in (a_0 W_a is the first a_{t-1} W_a)
    if masks is not None:
        a = graphs.ACTIVATIONS[activation](tf.matmul(x, U) * masks[0] + b_a)  # every a_t
        a_prev_W = tf.matmul(tf.concat([a_0, a[:-batch]], axis=0), W_a)
        r = recurrence(a_prev_W + b_r, W_r, r_0, activation, num_chains)
        hs = tf.concat([a, r], axis=1)
        return tf.matmul(hs * masks[1], V) + c, hs[-batch:]
    A = graphs.ACTIVATIONS[activation](U + b_a)  # [27, n]: a_t for each character
    a_prev_W = tf.concat([tf.matmul(a_0, W_a), tf.matmul(x[:-batch], tf.matmul(A, W_a))], axis=0)
    r = recurrence(a_prev_W + b_r, W_r, r_0, activation, num_chains)
    logits = tf.matmul(x, tf.matmul(A, V_a)) + tf.matmul(r, V_r) + c
    return logits, tf.concat([tf.matmul(inputs[-1], A), r[-batch:]], axis=1)


def arch1_graph(hp):
    """Arch 1 (arch1_hidden.build_graph), fast: training, evaluation and sampling branches."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(hp["seed"])
        n, num_chains = hp["num_nodes"], chains(hp)
        concat = hp["combine"] == "concat"
        hidden_size = 2 * n if concat else n
        act = graphs.ACTIVATIONS[hp["activation"]]
        U, W, b, V, c = _weights(hp, hidden_size, hidden_size)

        def unroll(inputs, h, masks=None):
            """arch1_hidden's unroll: (every step's logits [steps * batch, 27], the last state). masks: --dropout's
            for the whole window [steps * batch, width] (x_t U's, h_t's), in training."""
            if concat:
                return _concat_unroll(inputs, h, (U, W, b, V, c), hp["activation"], num_chains, masks)
            steps, batch = len(inputs), inputs[0].shape[0]
            xU = tf.matmul(tf.concat(inputs, axis=0), U)  # x_t U for all steps in one matmul: it needs no past
            if masks is not None:
                xU = xU * masks[0]
            if hp["combine"] == "add":
                hs = recurrence(xU + b, W, h, hp["activation"], num_chains)  # act(x_t U + b + h_{t-1} W)
            else:  # multiply: x_t U scales h_{t-1} W, so the loop is written out here and TF differentiates it
                hs = []
                for xU_t in tf.split(xU, steps):
                    h = act(xU_t * tf.matmul(h, W) + b)
                    hs.append(h)
                hs = tf.concat(hs, axis=0)
            logits = tf.matmul(hs if masks is None else hs * masks[1], V) + c  # one output projection for all steps
            return logits, hs[-batch:]

        batch_x, batch_y, train, labels = _window(hp)
        initial_state = tf.placeholder(tf.float32, [hp["batch_size"], hidden_size], name="initial_state")
        rows = hp["num_unrollings"] * hp["batch_size"]
        masks = ([graphs.dropout_mask(hp, rows, width, f"dropout_{k}") for k, width in enumerate([n, hidden_size])]
                 if hp["dropout"] else None)  # the rows of the post graph's graphs.dropout_masks, whole
        logits, final_state = unroll(train, initial_state, masks)
        loss = _loss(logits, labels)
        train_op, learning_rate, grad_norm = optimize(loss, hp)
        val_input, val_state, val_state_after, val_logits, val_probs = graphs.sampling_branch(unroll, hidden_size)
        return graphs.Model(graph=graph, hp=hp, unroll=unroll, state_size=hidden_size, state_name="saved_h",
                            batch_x=batch_x, batch_y=batch_y, initial_state=initial_state, final_state=final_state,
                            logits=logits, loss=loss, train_op=train_op, learning_rate=learning_rate,
                            grad_norm=grad_norm, val_input=val_input, val_state=val_state,
                            val_state_after=val_state_after, val_logits=val_logits, val_probs=val_probs)


def arch2_graph(hp):
    """Arch 2 (arch2_output.build_graph), fast: training, evaluation and sampling branches."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(hp["seed"])
        hidden_size = 2 * hp["num_nodes"] if hp["combine"] == "concat" else hp["num_nodes"]
        act, combine = graphs.ACTIVATIONS[hp["activation"]], graphs.COMBINES[hp["combine"]]
        U, W, b, V, c = _weights(hp, hidden_size, alphabet_size)

        def unroll(inputs, p, targets=None):
            """arch2_output's unroll: (every step's logits [steps * batch, 27], the last previous output)."""
            xU = tf.matmul(tf.concat(inputs, axis=0), U)  # x_t U for every step in one matmul
            if targets is not None:
                # Teacher forcing: every p_{t-1} (p, then the true targets) is known in advance, so every
                # step's h_t is computed at once: nothing runs through time (technique 5).
                p_prev = tf.concat([p] + targets[:-1], axis=0)  # [steps * batch, 27]
                hs = act(combine(xU, tf.matmul(p_prev, W)) + b)
                return tf.matmul(hs, V) + c, targets[-1]
            logits = []
            for xU_t in tf.split(xU, len(inputs)):
                h = act(combine(xU_t, tf.matmul(p, W)) + b)
                logits.append(tf.matmul(h, V) + c)
                p = tf.nn.softmax(logits[-1])  # the model's own distribution, softmax applied once
            return tf.concat(logits, axis=0), p

        batch_x, batch_y, train, labels = _window(hp)
        output_feed = tf.placeholder(tf.float32, [hp["batch_size"], alphabet_size], name="output_feed")
        logits, final_output = unroll(train, output_feed, targets=labels if hp["teacher_forcing"] else None)
        loss = _loss(logits, labels)
        train_op, learning_rate, grad_norm = optimize(loss, hp)
        val_input, val_state, val_state_after, val_logits, val_probs = graphs.sampling_branch(unroll, alphabet_size)
        return graphs.Model(graph=graph, hp=hp, unroll=unroll, state_size=alphabet_size, state_name="saved_p",
                            batch_x=batch_x, batch_y=batch_y, initial_state=output_feed, final_state=final_output,
                            logits=logits, loss=loss, train_op=train_op, learning_rate=learning_rate,
                            grad_norm=grad_norm, val_input=val_input, val_state=val_state,
                            val_state_after=val_state_after, val_logits=val_logits, val_probs=val_probs,
                            teacher_forced_eval=True)


def session_loop(run, model, session, batch, state, sample, rng):
    """The scripts' Session loop for the fast graph: the same steps, validations, checkpoints and samples, each
    window of getWindowBatch fed as ids through one Session callable; returns the run's results.

    sample(session, model, length, rng) is the script's own sampling function."""
    hp = run.hp
    train_step = sessions.make_callable(
        session, [model.train_op, model.loss, model.learning_rate, model.grad_norm, model.final_state],
        [model.batch_x, model.batch_y, model.initial_state])
    for step in run.steps():
        batch_x, batch_y = getWindowBatch(batch, hp["num_unrollings"])
        loss, learning_rate, grad_norm, state = train_step(batch_x, batch_y, state)
        run.record(step, loss, learning_rate, grad_norm)
        if step % hp["eval_frequency"] == 0:
            run.save(step, state, run.validate(step))
            for _ in range(3):
                run.say("  sample: " + sample(session, model, 80, rng))
    return run.finish(state)
