"""Arch 1's graph, as the post builds it, against the numpy reference: loss, gradients, state, branches,
schedule, clipping, learning. (tests/test_fast.py proves fast.py's graph equal to this one.)"""
import json
import math

import numpy as np
import pytest

import arch1_hidden
import reference
from machinery import graphs, sessions
from helpers import sample_probs, feed, hparams, one_hot_text, random_weights, session, variables
from machinery.tf1 import tf

SMALL = dict(batch_size=3, num_nodes=4, num_unrollings=5)


@pytest.mark.parametrize("combine", ["concat", "add", "multiply"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_loss_gradients_and_state_match_reference(combine, activation):
    batch_size = 3
    hp = hparams(arch1_hidden, combine=combine, activation=activation, **SMALL)
    model = arch1_hidden.build_graph(hp)
    with model.graph.as_default():
        names = ["U", "W", "b", "V", "c"]
        grads = tf.gradients(model.loss, [variables(model)[n] for n in names])
    sess = session(model)
    rng = np.random.default_rng(0)
    w = random_weights(sess, model, rng)
    width = 8 if combine == "concat" else 4
    h0 = (0.5 * rng.standard_normal((batch_size, width))).astype(np.float32)
    megabatch = one_hot_text(rng, 6, batch_size)

    loss, tf_grads, h_out = sess.run([model.loss, grads, model.final_state], feed(model, megabatch, h0))
    x, labels = megabatch[:-1].astype(np.float64), megabatch[1:].astype(np.float64)
    logits, h_last = reference.arch1_forward(x, h0.astype(np.float64), w, combine, activation)
    assert loss == pytest.approx(reference.cross_entropy(logits, labels), abs=1e-5)
    np.testing.assert_allclose(h_out, h_last, atol=1e-5)  # the state to carry

    f = lambda: reference.cross_entropy(reference.arch1_forward(x, h0.astype(np.float64), w, combine,
                                                                activation)[0], labels)
    numeric = reference.numeric_gradient(f, w)
    for name, g in zip(names, tf_grads):
        np.testing.assert_allclose(g, numeric[name], atol=2e-5, rtol=1e-3, err_msg=name)


@pytest.mark.parametrize("combine", ["concat", "add"])
def test_sampling_branch_shares_the_weights_and_carries_the_hidden_state(combine):
    model = arch1_hidden.build_graph(hparams(arch1_hidden, combine=combine, activation="tanh", **SMALL))
    sess = session(model)
    rng = np.random.default_rng(1)
    w = random_weights(sess, model, rng)
    ids = rng.integers(0, 27, size=6)
    x = np.eye(27)[ids]
    width = 8 if combine == "concat" else 4
    logits, _ = reference.arch1_forward(x[:, None, :], np.zeros((1, width)), w, combine, "tanh")
    probs = sample_probs(sess, model, ids)  # from the zero state, each hidden state fed back
    np.testing.assert_allclose(probs, reference.softmax(logits[:, 0]), atol=1e-6)


@pytest.mark.parametrize("combine", ["concat", "add"])
@pytest.mark.parametrize("min_span", [100, sessions.EVAL_MIN_SPAN])
def test_evaluate_covers_every_character_in_parallel_streams(combine, min_span, monkeypatch):
    monkeypatch.setattr(sessions, "EVAL_MIN_SPAN", min_span)
    model = arch1_hidden.build_graph(hparams(arch1_hidden, combine=combine, activation="tanh", **SMALL))
    sess = session(model)
    rng = np.random.default_rng(2)
    w = random_weights(sess, model, rng)
    ids = rng.integers(0, 27, size=graphs.EVAL_STREAMS * 130 + 7)
    n = len(ids) - 1
    streams = min(graphs.EVAL_STREAMS, -(-n // min_span))  # as many as have min_span characters each
    span = -(-n // streams)
    assert (streams, span) == ((128, 131) if min_span == 100 else (9, 1850))
    total = 0.0
    x = np.eye(27)[ids]
    for s in range(streams):  # each stream from the zero state, as the Evaluator does
        lo, hi = s * span, min((s + 1) * span, n)
        logits, _ = reference.arch1_forward(x[lo:hi, None, :], np.zeros((1, 8 if combine == "concat" else 4)),
                                            w, combine, "tanh")
        total += reference.cross_entropy(logits, x[lo + 1:hi + 1, None, :]) * (hi - lo)
    assert sessions.Evaluator(sess, model)(ids) == pytest.approx(total / n, rel=1e-5)


def test_an_evaluator_reused_on_other_texts_scores_each_from_scratch():
    model = arch1_hidden.build_graph(hparams(arch1_hidden, **SMALL))
    sess = session(model)
    rng = np.random.default_rng(5)
    random_weights(sess, model, rng)
    texts = [rng.integers(0, 27, size=size) for size in (3000, 450, 3000)]
    evaluator = sessions.Evaluator(sess, model)
    scores = [evaluator(ids) for ids in texts]  # the training loop reuses one evaluator for every validation
    assert scores == [pytest.approx(sessions.Evaluator(sess, model)(ids), rel=1e-6) for ids in texts]
    assert scores[0] != pytest.approx(scores[2], rel=1e-3)


def test_initial_loss_is_close_to_ln_27():
    model = arch1_hidden.build_graph(hparams(arch1_hidden, **SMALL))
    sess = session(model)
    megabatch = one_hot_text(np.random.default_rng(3), 6, 3)
    assert sess.run(model.loss, feed(model, megabatch)) == pytest.approx(math.log(27), abs=0.5)
    for name in ("U", "W", "V"):  # with small weights the prediction is uniform: ln 27 nats
        var = variables(model)[name]
        var.load(sess.run(var) * 1e-3, sess)
    assert sess.run(model.loss, feed(model, megabatch)) == pytest.approx(math.log(27), abs=1e-3)


@pytest.mark.parametrize("combine", ["concat", "add"])
def test_default_weights_have_variance_one_over_fan_in(combine):
    # The notebooks' truncated_normal(shape, -0.1, 0.1) meant a range; here each matrix is drawn with a standard
    # deviation of 1/sqrt(fan-in) (truncated at two of them), whatever the width (docs/differences.md).
    model = arch1_hidden.build_graph(hparams(arch1_hidden, combine=combine, num_nodes=64))
    weights = session(model).run({name: variables(model)[name] for name in "UWV"})
    for name, value in weights.items():
        sigma = 1 / math.sqrt(value.shape[0])
        assert abs(value.mean()) < 0.1 * sigma, name
        assert value.std() == pytest.approx(0.88 * sigma, rel=0.1), name  # a normal cut at 2 sigma: 0.88 sigma
        assert np.abs(value).max() <= 2 * sigma + 1e-6, name


def test_the_fetched_state_fed_back_continues_the_text():
    model = arch1_hidden.build_graph(hparams(arch1_hidden, **SMALL))
    sess = session(model)
    rng = np.random.default_rng(4)
    w = random_weights(sess, model, rng)
    first, second = one_hot_text(rng, 6, 3), one_hot_text(rng, 6, 3)
    h = sess.run(model.final_state, feed(model, first))  # from zeros, as at the start of a run
    _, h_ref = reference.arch1_forward(first[:-1].astype(np.float64), np.zeros((3, 8)), w, "concat", "relu")
    logits, _ = reference.arch1_forward(second[:-1].astype(np.float64), h_ref, w, "concat", "relu")
    assert sess.run(model.loss, feed(model, second, h)) == pytest.approx(
        reference.cross_entropy(logits, second[1:]), abs=1e-5)
    logits, _ = reference.arch1_forward(second[:-1].astype(np.float64), np.zeros((3, 8)), w, "concat", "relu")
    assert sess.run(model.loss, feed(model, second)) == pytest.approx(
        reference.cross_entropy(logits, second[1:]), abs=1e-5)


@pytest.mark.parametrize("staircase", [True, False])
def test_learning_rate_schedule(staircase):
    model = arch1_hidden.build_graph(hparams(arch1_hidden, optimizer="sgd", learning_rate=2.0, decay_steps=10,
                                             decay_rate=0.5, staircase=staircase, **SMALL))
    sess = session(model)
    for step in (0, 9, 10, 25, 100):
        model.global_step.load(step, sess)
        expected = 2.0 * 0.5 ** (step // 10 if staircase else step / 10)
        assert sess.run(model.learning_rate) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("staircase", [True, False])
def test_learning_rate_decays_with_the_minutes_trained(staircase):
    model = arch1_hidden.build_graph(hparams(arch1_hidden, learning_rate=2.0, decay_steps=10, decay_minutes=3.0,
                                             decay_rate=0.5, staircase=staircase, **SMALL))
    sess = session(model)
    model.global_step.load(1000, sess)  # the step no longer counts
    for minutes in (0.0, 2.9, 3.0, 7.5, 30.0):
        model.train_minutes.load(minutes, sess)
        expected = 2.0 * 0.5 ** (minutes // 3 if staircase else minutes / 3)
        assert sess.run(model.learning_rate) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("decay_minutes", [0.0, 3.0])
def test_warm_up_raises_the_rate_linearly_then_leaves_the_schedule(decay_minutes):
    model = arch1_hidden.build_graph(hparams(arch1_hidden, learning_rate=2.0, decay_steps=10, decay_rate=0.5,
                                             warmup_steps=4, decay_minutes=decay_minutes, **SMALL))
    sess = session(model)
    for step, expected in ((0, 0.5), (1, 1.0), (2, 1.5), (3, 2.0), (9, 2.0), (10, 1.0 if not decay_minutes else 2.0)):
        model.global_step.load(step, sess)  # global_step is the number of steps done: step + 1 is the current one
        assert sess.run(model.learning_rate) == pytest.approx(expected, rel=1e-6), step
    assert (model.train_minutes is None) == (not decay_minutes)


def test_dropout_drops_in_training_only():
    """--dropout p: in training each unit of x_t U and of h_t (on its way to V) is zeroed with probability p, the
    rest scaled by 1 / (1 - p), a new draw at every step; evaluation and sampling use the whole network."""
    p, shape = 0.25, dict(batch_size=64, num_nodes=32, num_unrollings=10, combine="add")
    plain = arch1_hidden.build_graph(hparams(arch1_hidden, **shape))
    dropped = arch1_hidden.build_graph(hparams(arch1_hidden, dropout=p, **shape))
    rng = np.random.default_rng(0)
    megabatch, ids = one_hot_text(rng, 11, 64), rng.integers(0, 27, size=3000)
    losses, scores, probs = [], [], []
    for model in (plain, dropped):
        sess = session(model)
        random_weights(sess, model, np.random.default_rng(1), scale=0.1)
        losses.append([])
        for step in (0, 0, 1):
            model.global_step.load(step, sess)
            losses[-1].append(sess.run(model.loss, feed(model, megabatch)))
        scores.append(sessions.Evaluator(sess, model)(ids))
        probs.append(sample_probs(sess, model, [20, 8, 5, 0, 3, 1, 20]))
    assert losses[0][0] == losses[0][1] == losses[0][2]  # no dropout: the same loss every time
    assert losses[1][0] == losses[1][1] != losses[1][2]  # dropout: one draw per step, a new one at the next
    assert abs(losses[1][0] - losses[0][0]) > 1e-5
    assert scores[1] == scores[0] and math.isfinite(scores[0])
    np.testing.assert_array_equal(probs[1], probs[0])
    with tf.Graph().as_default():
        mask = graphs.dropout_mask(dropped.hp, 1000, 100, "input")
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run(mask)
    assert set(np.unique(values)) == {0.0, np.float32(1 / (1 - p))}
    assert (values == 0).mean() == pytest.approx(p, abs=0.01)


def test_clipping_reports_the_true_norm_and_bounds_the_update():
    clip, lr = 0.05, 1.0
    model = arch1_hidden.build_graph(hparams(arch1_hidden, optimizer="sgd", learning_rate=lr, clip_norm=clip,
                                             **SMALL))
    with model.graph.as_default():
        params = tf.trainable_variables()
        grads = tf.gradients(model.loss, params)
    sess = session(model)
    rng = np.random.default_rng(5)
    random_weights(sess, model, rng, scale=1.0)
    megabatch = one_hot_text(rng, 6, 3)
    before = sess.run(params)
    true_grads = sess.run(grads, feed(model, megabatch))
    _, reported = sess.run([model.train_op, model.grad_norm], feed(model, megabatch))
    true_norm = math.sqrt(sum(float((g ** 2).sum()) for g in true_grads))
    assert true_norm > clip  # the test is only meaningful when clipping happens
    assert reported == pytest.approx(true_norm, rel=1e-5)
    after = sess.run(params)
    applied = math.sqrt(sum(float(((a - b) ** 2).sum()) for a, b in zip(after, before))) / lr
    assert applied == pytest.approx(clip, rel=1e-4)
    for a, b, g in zip(after, before, true_grads):  # the direction is the gradient's, scaled by clip / norm
        np.testing.assert_allclose(b - a, g * clip / true_norm, atol=1e-6)


def conditional_entropy_given_previous(text):
    """H(x_t | x_{t-1}) of a text in nats, from its own bigram counts: the best any model that sees only
    the previous character can do on it."""
    ids = np.frombuffer(text.encode(), np.uint8)
    pairs = np.zeros((256, 256))
    np.add.at(pairs, (ids[:-1], ids[1:]), 1)
    rows = pairs.sum(axis=1, keepdims=True)
    p = np.divide(pairs, rows, out=np.ones_like(pairs), where=pairs > 0)
    return float(-(pairs * np.log(p)).sum() / pairs.sum())


def test_recurrence_learns_what_the_previous_character_cannot_tell(tmp_path):
    # Blocks "pqpq ": p and q random among 8 letters. The second p and q repeat characters two steps back,
    # which only the carried hidden state can know; the best possible is 2 ln 8 / 5 nats per character.
    rng = np.random.default_rng(0)
    letters = list("abcdefgh")
    text = "".join(p + q + p + q + " " for p, q in rng.choice(letters, size=(6000, 2)))
    (tmp_path / "copy.txt").write_text(text)
    bound = conditional_entropy_given_previous(text)
    best = 2 * math.log(8) / 5
    assert bound - best > 0.6
    status = arch1_hidden.main(["--data", str(tmp_path / "copy.txt"), "--out", str(tmp_path / "run"),
                                "--batch-size", "16", "--num-nodes", "32", "--num-unrollings", "10",
                                "--optimizer", "adam", "--learning-rate", "0.01", "--num-steps", "1500"])
    assert status == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    valid_nats = results["valid_bpc"] * math.log(2)
    assert valid_nats < bound - 0.4, (valid_nats, bound)
    assert valid_nats > best - 0.05  # and no better than possible: the evaluation is honest
