"""fast.py's graphs against the post's graphs in the scripts: the same loss, gradients and state on the same
weights and mega-batch; the same weights after training from the same seed; checkpoints interchangeable."""
import json
import re

import numpy as np
import pytest

import arch1_hidden
import arch2_output
import sample
from machinery import sessions
from helpers import TINY, feed, load_run, hparams, megabatches, one_hot_text, random_weights, session, write_corpus
from machinery.tf1 import tf

SMALL = dict(num_nodes=4, num_unrollings=5, threads=2)  # two chains in fast.recurrence
ARCH1_CASES = [dict(combine=c, activation=a) for c in ("concat", "add", "multiply") for a in ("relu", "tanh")]
ARCH2_CASES = [dict(case, teacher_forcing=t) for case in ARCH1_CASES for t in (True, False)]
DROPOUT_CASES = [dict(combine=c, activation="relu", dropout=0.3) for c in ("concat", "add", "multiply")]
CASES = ([(arch1_hidden, case) for case in ARCH1_CASES + DROPOUT_CASES]
         + [(arch2_output, case) for case in ARCH2_CASES])


def both_graphs(module, **overrides):
    hp = hparams(module, **overrides)
    return module.build_graph(hp), module.GRAPHS["fast"](hp)


def trainable(model):
    return {v.op.name: v for v in model.graph.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES)}


def assert_close(fast, post, rtol, name):
    """Equal to rtol, relative to the largest entry (entries near zero have no meaningful relative error)."""
    np.testing.assert_allclose(fast, post, rtol=rtol, atol=rtol * max(1e-30, float(np.abs(post).max())),
                               err_msg=name)


@pytest.mark.parametrize("batch_size", [pytest.param(3, marks=pytest.mark.slow), 4])  # odd: uneven chains
@pytest.mark.parametrize("module, case", CASES, ids=[f"{m.ARCHITECTURE}-" + "-".join(map(str, c.values()))
                                                   for m, c in CASES])
def test_same_loss_state_and_gradients(module, case, batch_size):
    post, fast = both_graphs(module, batch_size=batch_size, **SMALL, **case)
    assert trainable(post).keys() == trainable(fast).keys() == {"U", "W", "b", "V", "c"}
    rng = np.random.default_rng(0)
    megabatch = one_hot_text(rng, 6, batch_size)
    width = post.initial_state.shape[1]
    state = rng.standard_normal((batch_size, width)).astype(np.float32)
    if module is arch2_output:  # a previous output is a distribution
        state = np.exp(state) / np.exp(state).sum(axis=1, keepdims=True)
    results = []
    for model in (post, fast):
        sess = session(model)
        random_weights(sess, model, np.random.default_rng(1))
        names = sorted(trainable(model))
        with model.graph.as_default():
            grads = tf.gradients(model.loss, [trainable(model)[n] for n in names])
        loss, final_state, grad_values = sess.run([model.loss, model.final_state, grads],
                                                  feed(model, megabatch, state))
        results.append((loss, final_state, dict(zip(names, grad_values))))
    (post_loss, post_state, post_grads), (fast_loss, fast_state, fast_grads) = results
    assert fast_loss == pytest.approx(post_loss, rel=1e-5)
    assert_close(fast_state, post_state, 1e-5, "final state")
    for name in post_grads:
        assert_close(fast_grads[name], post_grads[name], 1e-5, name)


@pytest.mark.parametrize("module, case", [(arch1_hidden, dict(combine="concat", activation="relu")),
                                          (arch1_hidden, dict(combine="add", activation="tanh")),
                                          (arch2_output, dict(combine="concat", activation="tanh"))])
@pytest.mark.slow
def test_same_evaluation_and_sampling(module, case):
    post, fast = both_graphs(module, batch_size=4, **SMALL, **case)
    ids = np.random.default_rng(2).integers(0, 27, size=5000)
    scores, texts = [], []
    for model in (post, fast):
        sess = session(model)
        random_weights(sess, model, np.random.default_rng(3))
        evaluator = sessions.Evaluator(sess, model)
        scores.append([evaluator(ids, teacher_forced=forced) for forced in (False, True)
                       if not forced or model.evaluation.forced is not None])
        texts.append("".join(sample.generate(sess, model, 200, np.random.default_rng(4), prime="the ")))
        texts.append(module.sample(sess, model, 200, np.random.default_rng(4)))  # the script's own sampling
    assert scores[1] == pytest.approx(scores[0], rel=1e-5)
    assert texts[2] == texts[0] and texts[3] == texts[1]


TRAINING_CASES = [
    (arch1_hidden, dict(combine="concat", activation="relu", optimizer="adadelta")),
    (arch1_hidden, dict(combine="add", activation="tanh", optimizer="adam", learning_rate=0.01)),
    (arch1_hidden, dict(combine="multiply", activation="tanh", optimizer="sgd", learning_rate=0.5)),
    (arch1_hidden, dict(combine="concat", recurrent_init="orthogonal", optimizer="adam", learning_rate=0.01)),
    (arch1_hidden, dict(combine="add", recurrent_init="identity", optimizer="adam", learning_rate=0.01)),
    (arch1_hidden, dict(combine="concat", dropout=0.3, optimizer="adam", learning_rate=0.01)),
    (arch1_hidden, dict(combine="add", dropout=0.3, warmup_steps=8, decay_steps=5, optimizer="adam",
                        learning_rate=0.01)),
    (arch2_output, dict(teacher_forcing=True)),
    (arch2_output, dict(teacher_forcing=False, optimizer="adam", learning_rate=0.01)),
]


@pytest.mark.parametrize("module, case", TRAINING_CASES,
                         ids=[f"{m.ARCHITECTURE}-{c.get('combine', c.get('teacher_forcing'))}"
                              f"{'-' + c['recurrent_init'] if 'recurrent_init' in c else ''}"
                              f"{'-dropout' if 'dropout' in c else ''}"
                              for m, c in TRAINING_CASES])
@pytest.mark.slow
def test_twenty_steps_from_the_same_seed_reach_the_same_weights(module, case):
    post, fast = both_graphs(module, batch_size=5, num_nodes=16, num_unrollings=8, threads=2, seed=7, **case)
    ids = np.random.default_rng(5).integers(0, 27, size=3000).astype(np.uint8)
    values = []
    for model in (post, fast):
        sess = session(model)
        windows = megabatches(ids, 5, 8)
        state = np.zeros(model.initial_state.shape, np.float32)
        initial = sess.run(trainable(model))
        for _ in range(20):  # each graph fed its own way (helpers.feed): the post's lists, or fast.py's ids
            megabatch = next(windows)
            _, state = sess.run([model.train_op, model.final_state], feed_dict=feed(model, megabatch, state))
        values.append((initial, sess.run({v.op.name: v for v in model.graph.get_collection(
            tf.GraphKeys.GLOBAL_VARIABLES)}), state))
    (post_initial, post_final, post_state), (fast_initial, fast_final, fast_state) = values
    for name in post_initial:  # the same seed draws the same initial weights in both graphs
        np.testing.assert_array_equal(fast_initial[name], post_initial[name], err_msg=name)
    assert post_final.keys() == fast_final.keys()  # optimizer slots and step included
    for name in post_final:
        np.testing.assert_allclose(fast_final[name], post_final[name], atol=1e-4, rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(fast_state, post_state, atol=1e-4)
    assert not np.allclose(post_final["V"], post_initial["V"])  # it did train


@pytest.mark.slow
@pytest.mark.parametrize("module", [arch1_hidden, arch2_output])
@pytest.mark.parametrize("trained_with", ["post", "fast"])
def test_a_checkpoint_of_one_graph_samples_the_same_text_with_the_other(module, trained_with, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "words.txt")
    out = tmp_path / "run"
    assert module.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "30",
                        "--graph", trained_with]) == 0
    assert json.loads((out / "config.json").read_text())["hparams"]["graph"] == trained_with
    assert json.loads((out / "results.json").read_text())["graph"] == trained_with
    texts = []
    for graph in ("post", "fast"):
        config, model, sess = load_run(out, graph=graph)
        assert (model.batch_x is None) == (graph == "post")
        texts.append("".join(sample.generate(sess, model, 300, np.random.default_rng(8), prime="the ")))
    assert texts[0] == texts[1] and len(set(texts[0])) > 5


def report_numbers(printed):
    """The numbers of the report lines, without the speed."""
    return [[float(x) for x in re.findall(r"\d+\.\d+", line.split("chars/s")[0].rsplit(" ", 2)[0])]
            for line in printed.splitlines() if line.startswith(("step ", "validation", "valid", "test"))]


def test_both_graphs_print_the_same_report_lines(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "words.txt", words=6000)
    printed = {}
    for graph in ("post", "fast"):
        assert arch1_hidden.main(["--data", str(corpus), "--out", str(tmp_path / graph), *TINY, "--num-steps", "60",
                                  "--graph", graph]) == 0
        printed[graph] = report_numbers(capsys.readouterr().out)
    assert len(printed["post"]) == 11  # 6 report lines, 3 validations (the last at step 60), the full splits
    np.testing.assert_allclose(np.concatenate(printed["fast"]), np.concatenate(printed["post"]), atol=2e-3)


@pytest.mark.slow
def test_resume_may_switch_the_graph(tmp_path):
    corpus = write_corpus(tmp_path / "words.txt")
    straight, switched = tmp_path / "straight", tmp_path / "switched"
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(straight), *TINY, "--num-steps", "40"]) == 0
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(switched), *TINY, "--num-steps", "20",
                              "--graph", "post"]) == 0
    assert arch1_hidden.main(["--out", str(switched), "--resume", "--num-steps", "40", "--graph", "fast"]) == 0
    config = json.loads((switched / "config.json").read_text())
    assert config["hparams"]["graph"] == "fast" and config["step"] == 40
    a, b = (json.loads((d / "results.json").read_text()) for d in (straight, switched))
    assert b["valid_bpc"] == pytest.approx(a["valid_bpc"], abs=1e-3)


@pytest.mark.parametrize("module", [arch1_hidden, arch2_output])
def test_the_sessions_fast_path_gives_what_session_run_gives(module):
    """sessions.CallableSession answers the post's session.run(fetches, feed_dict=...) through a cached
    callable: the same results as tf.Session.run, step after step, an operation's fetch still None."""
    hp = hparams(module, batch_size=4, num_nodes=8, num_unrollings=5, graph="post")
    model = module.build_graph(hp)
    ids = np.random.default_rng(3).integers(0, 27, size=2000).astype(np.uint8)
    fetches = [model.train_op, model.loss, model.grad_norm, model.final_state]
    results = []
    for make in (lambda: tf.Session(graph=model.graph), lambda: sessions.new_session(model)):
        sess = make()
        sess.run(model.init)
        windows, state, seen = megabatches(ids, 4, 5), np.zeros(model.initial_state.shape, np.float32), []
        for _ in range(5):
            op, loss, grad_norm, state = sess.run(fetches, feed_dict=feed(model, next(windows), state))
            assert op is None
            seen.append((loss, grad_norm, state))
        results.append(seen)
        if isinstance(sess, sessions.CallableSession):
            assert len(sess._callables) == 1  # one signature, one callable
            assert set(sess.run({"loss": model.loss}, feed_dict=feed(model, one_hot_text(np.random.default_rng(0), 6, 4)))) == {"loss"}
        sess.close()
    for (loss_a, grad_a, state_a), (loss_b, grad_b, state_b) in zip(*results):
        np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
        np.testing.assert_allclose(grad_b, grad_a, rtol=1e-6)
        np.testing.assert_allclose(state_b, state_a, rtol=1e-6, atol=1e-7)
