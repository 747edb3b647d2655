"""The Session loop through the command line: outputs, checkpoints, resume, Ctrl-C, NaN, every option, errors."""
import json
import math
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

import arch1_hidden
import arch2_output
import data
from machinery import fast, sessions, settings, training
from helpers import TINY, child, hparams, run_child, wait_until, write_corpus

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "words.txt")


def run(args, capsys=None):
    status = arch1_hidden.main([str(a) for a in args])
    return status


def checkpoint_values(folder):
    """The variables of the checkpoint a run folder's config.json names."""
    import tensorflow as tf2
    config = json.loads((folder / "config.json").read_text())
    reader = tf2.train.load_checkpoint(str(folder / config["checkpoint"]))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_a_run_leaves_checkpoints_config_events_and_results(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["--data", corpus, "--out", out, "--num-steps", 50, *TINY]) == 0
    printed = capsys.readouterr().out
    assert "step 10/50" in printed and "bpc" in printed and "grad" in printed and "chars/s" in printed
    assert re.search(r"^step 50/50 .* chars/s  0:\d\d elapsed, 0:00 left$", printed, re.MULTILINE)
    assert "validation at step 20" in printed and printed.count("  sample: ") == 6
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "arch1_hidden" and config["step"] == 50
    assert config["checkpoint"] == "model.ckpt-50" and config["data"] == str(corpus.resolve())
    assert config["hparams"]["num_nodes"] == 8 and config["hparams"]["activation"] == "relu"
    assert len(config["batch_position"]) == 4
    assert sorted(p.name for p in out.glob("model.ckpt-*.index")) == [
        "model.ckpt-20.index", "model.ckpt-40.index", "model.ckpt-50.index"]
    best = json.loads((out / "best" / "config.json").read_text())
    assert (out / "best" / (best["checkpoint"] + ".index")).exists()
    assert best["best_valid_bpc"] == config["best_valid_bpc"]
    assert list(out.glob("events.out.tfevents.*"))
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 50 and results["train_seconds"] > 0
    for split in ("valid", "test"):
        assert 1.0 < results[f"{split}_bpc"] < math.log2(27) + 0.5
        assert results[f"{split}_perplexity"] == pytest.approx(2 ** results[f"{split}_bpc"], rel=1e-3)
    assert results["valid_chars"] == len(data.split(data.text_to_ids(corpus.read_text()))[1]) - 1


def recorded_windows(module, graph, corpus, out, monkeypatch, steps=3):
    """The inputs and labels [steps, num_unrollings, batch_size] as ids that a real run of the script fed to
    its training step: the post's feed dict (train, labels), or the fast graph's callable (batch_x, batch_y)."""
    windows = []
    real_run, real_make_callable = sessions.CallableSession.run, sessions.make_callable

    def recording_run(self, fetches, feed_dict=None, **kwargs):
        names = {getattr(k, "name", str(k)).split(":")[0]: v for k, v in (feed_dict or {}).items()}
        if "train_0" in names:
            windows.append([np.stack([names[f"{n}_{i}"] for i in range(5)]).argmax(-1) for n in ("train", "labels")])
        return real_run(self, fetches, feed_dict=feed_dict, **kwargs)

    def recording_make_callable(sess, fetches, feeds):
        run_step = real_make_callable(sess, fetches, feeds)
        if feeds[0].name.startswith("batch_x"):
            return lambda batch_x, batch_y, state: windows.append([batch_x.copy(), batch_y.copy()]) or run_step(
                batch_x, batch_y, state)
        return run_step

    monkeypatch.setattr(sessions.CallableSession, "run", recording_run)
    monkeypatch.setattr(sessions, "make_callable", recording_make_callable)
    assert module.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", str(steps),
                        "--graph", graph]) == 0
    return np.array(windows)


@pytest.mark.parametrize("graph", ["post", "fast"])
@pytest.mark.parametrize("module", [arch1_hidden, arch2_output])
def test_training_feeds_the_text_and_its_next_characters(module, graph, corpus, tmp_path, monkeypatch):
    # The notebooks' Arch 2 fed one stale batch as both its inputs and its labels. Each step here must feed,
    # for every stream, a window of the training text as inputs and the same window one character on as
    # labels, and the next step must continue where this one ended.
    windows = recorded_windows(module, graph, corpus, tmp_path / "run", monkeypatch)
    assert windows.shape == (3, 2, 5, 4)  # steps, (inputs, labels), num_unrollings, batch_size
    train_text = data.ids_to_text(data.split(data.text_to_ids(corpus.read_text()))[0])
    for k, (x, y) in enumerate(windows):
        for s in range(4):
            inputs, labels = data.ids_to_text(x[:, s]), data.ids_to_text(y[:, s])
            assert labels[:-1] == inputs[1:] and inputs + labels[-1] in train_text, (k, s, inputs, labels)
            if k:
                assert inputs[0] == data.ids_to_text(windows[k - 1][1][-1, s]), (k, s)


def test_event_file_holds_the_reported_scalars(corpus, tmp_path):
    from machinery.tf1 import tf
    out = tmp_path / "run"
    assert run(["--data", corpus, "--out", out, "--num-steps", 20, *TINY]) == 0
    tags = set()
    for path in out.glob("events.out.tfevents.*"):
        for event in tf.train.summary_iterator(str(path)):
            tags.update(v.tag for v in event.summary.value)
    assert {"train/loss", "train/bpc", "learning_rate", "grad_norm/mean", "final/valid_bpc"} <= tags


@pytest.mark.slow
def test_resume_continues_exactly(corpus, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run(["--data", corpus, "--out", straight, "--num-steps", 40, *TINY]) == 0
    assert run(["--data", corpus, "--out", split, "--num-steps", 20, *TINY]) == 0
    assert run(["--out", split, "--resume", "--num-steps", 40]) == 0  # data and sizes come from config.json
    a, b = checkpoint_values(straight), checkpoint_values(split)
    assert a.keys() == b.keys() and int(b["global_step"]) == 40
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)
    ca, cb = (json.loads((d / "config.json").read_text()) for d in (straight, split))
    assert ca["batch_position"] == cb["batch_position"]


def test_a_new_run_does_not_overwrite_an_old_one(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["--data", corpus, "--out", out, "--num-steps", 10, *TINY]) == 0
    before = (out / "config.json").read_text()
    assert run(["--data", corpus, "--out", out, "--num-steps", 10, *TINY]) == 1
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and err.count("\n") == 1
    assert (out / "config.json").read_text() == before


def test_resume_refuses_changed_hyperparameters(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["--data", corpus, "--out", out, "--num-steps", 10, *TINY]) == 0
    capsys.readouterr()
    assert run(["--out", out, "--resume", "--num-nodes", 16]) == 1
    err = capsys.readouterr().err
    assert "--num-nodes 8" in err and err.count("\n") == 1


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path, capsys, monkeypatch):
    # A loss that turns NaN at step 25, as a diverging run's would: what the loop hands the run is altered.
    real_record = training.Run.record
    monkeypatch.setattr(training.Run, "record", lambda self, step, loss, *rest: real_record(
        self, step, np.float32("nan") if step == 25 else loss, *rest))
    out = tmp_path / "run"
    assert run(["--data", corpus, "--out", out, *TINY, "--num-steps", 100]) == 1
    err = capsys.readouterr().err
    assert "the loss became nan at step 25;" in err and "(step 20)" in err and err.count("\n") == 1
    config = json.loads((out / "config.json").read_text())
    assert config["step"] == 20 and config["checkpoint"] == "model.ckpt-20"
    assert int(checkpoint_values(out)["global_step"]) == 20
    assert sorted(p.name for p in out.glob("model.ckpt-*.index")) == ["model.ckpt-20.index"]


def test_patience_stops_a_run_whose_validation_no_longer_improves(corpus, tmp_path, capsys, monkeypatch):
    scores = iter([3.0, 2.0, 2.5, 2.6])  # validations at steps 10, 20 (the best), 30 and 40 (two without a gain)
    real_call = sessions.Evaluator.__call__
    monkeypatch.setattr(sessions.Evaluator, "__call__", lambda self, ids, teacher_forced=False: next(
        scores, None) or real_call(self, ids, teacher_forced))
    out = tmp_path / "run"
    assert run(["--data", corpus, "--out", out, *TINY, "--eval-frequency", 10, "--num-steps", 1000,
                "--patience", 2]) == 0
    printed = capsys.readouterr().out
    assert "2 validations in a row have not beaten the best (step 20): the run ends here (--patience 2)" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 40 and results["stopped_by_patience"] and results["best_step"] == 20
    assert json.loads((out / "best" / "config.json").read_text())["step"] == 20


def test_a_diverging_learning_rate_is_reported(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["--data", corpus, "--out", out, *TINY, "--optimizer", "sgd", "--clip-norm", "1e6",
                "--learning-rate", "1e4", "--num-steps", 100]) == 1
    err = capsys.readouterr().err
    assert "became nan at step" in err and "no checkpoint was saved yet" in err and err.count("\n") == 1
    assert not (out / "config.json").exists()


def test_every_option_reaches_the_run(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    options = {"--batch-size": 5, "--num-nodes": 6, "--num-unrollings": 7, "--activation": "tanh",
               "--combine": "add", "--optimizer": "adam", "--learning-rate": 0.02, "--decay-steps": 5,
               "--decay-rate": 0.5, "--clip-norm": 2.0, "--num-steps": 12, "--summary-frequency": 4,
               "--eval-frequency": 3, "--valid-chars": 300, "--keep": 2, "--seed": 7, "--threads": 1,
               "--graph": "post", "--init": "notebook", "--time-budget": 60.0, "--patience": 5,
               "--recurrent-init": "orthogonal", "--dropout": 0.2, "--warmup-steps": 20}
    argv = ["--data", corpus, "--out", out, "--no-staircase"] + [str(x) for kv in options.items() for x in kv]
    assert run(argv) == 0
    printed = capsys.readouterr().out
    hp = json.loads((out / "config.json").read_text())["hparams"]
    for flag, value in options.items():
        assert hp[flag[2:].replace("-", "_")] == value, flag
    assert hp["staircase"] is False
    assert [line.split()[1] for line in printed.splitlines() if line.startswith("step ")] == ["4/12", "8/12", "12/12"]
    assert "validation at step 3: " in printed and "(300 characters)" in printed  # --valid-chars
    assert sorted(p.name for p in out.glob("model.ckpt-*.index")) == ["model.ckpt-12.index", "model.ckpt-9.index"]
    # the rate that step 12 (global step 11 before it) used, continuous decay: 0.02 * 0.5 ** (11 / 5), warming up
    assert f"lr {0.02 * 0.5 ** (11 / 5) * 12 / 20:.3g} " in printed


@pytest.mark.slow
def test_the_same_seed_repeats_a_run_and_another_seed_does_not(corpus, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert run(["--data", corpus, "--out", tmp_path / name, *TINY, "--num-steps", 10, "--seed", seed]) == 0
    a, b, c = (checkpoint_values(tmp_path / name) for name in "abc")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["U"], c["U"])


@pytest.mark.parametrize("argv, message", [
    (["--num-nodes", "0"], "argument --num-nodes: 0 is out of range: it must be at least 1"),
    (["--num-nodes", "abc"], "argument --num-nodes: 'abc' is not an integer"),
    (["--batch-size", "2.5"], "argument --batch-size: '2.5' is not an integer"),
    (["--learning-rate", "-1"], "argument --learning-rate: -1 is out of range"),
    (["--learning-rate", "nan"], "argument --learning-rate: nan is out of range"),
    (["--clip-norm", "0"], "argument --clip-norm: 0 is out of range"),
    (["--decay-rate", "1.5"], "argument --decay-rate: 1.5 is out of range: it must be at least 1e-06 and at "
                              "most 1"),
    (["--clip-norm", "-0.5"], "argument --clip-norm: -0.5 is out of range: it must be at least 1e-06"),
    (["--activation", "sigmoid"], "argument --activation: invalid choice: 'sigmoid'"),
    (["--combine", "max"], "argument --combine: invalid choice"),
    (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice"),
    (["--seed", "-1"], "argument --seed: -1 is out of range: it must be at least 0"),
    (["--num-units", "5"], "unrecognized arguments: --num-units 5"),
    (["--num-nodes", "100000000"], "argument --num-nodes: 100000000 is out of range: it must be at least 1 and at "
                                   "most 4,096"),
    (["--batch-size", "1e30"], "argument --batch-size: '1e30' is not an integer"),
    (["--num-steps", str(10 ** 30)], "argument --num-steps: 1000000000000000000000000000000 is out of range"),
    (["--learning-rate", "1e308"], "argument --learning-rate: 1e308 is out of range: it must be at least 1e-08 and "
                                   "at most 10000"),
    (["--learning-rate", "1e-300"], "argument --learning-rate: 1e-300 is out of range"),
    (["--clip-norm", "1e308"], "argument --clip-norm: 1e308 is out of range"),
    (["--valid-chars", "1"], "argument --valid-chars: 1 is out of range: it must be at least 2"),
    (["--graph", "slow"], "argument --graph: invalid choice: 'slow'"),
    (["--threads", "-1"], "argument --threads: -1 is out of range: it must be at least 0"),
    (["--learning-rate", "-inf"], "argument --learning-rate: -inf is out of range"),
    (["--clip-norm", "-1e5"], "argument --clip-norm: -1e5 is out of range"),
])
def test_bad_values_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        arch1_hidden.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("arch1_hidden.py: error: ")


def test_bad_data_and_folders_are_one_line_errors(corpus, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "emptydir").mkdir()
    cases = [
        (["--data", tmp_path / "missing.txt"], "missing.txt: no such file"),
        (["--data", tmp_path / "empty.txt"], "empty.txt is empty"),
        (["--data", corpus, "--batch-size", 4000], "the train split has 14,793 characters, too few for "
                                                   "batch_size 4000 x (num_unrollings 40 + 1)"),
        (["--resume", "--out", tmp_path / "nowhere"], "nowhere: no such run folder"),
        (["--resume", "--out", tmp_path / "emptydir"], "emptydir holds no config.json"),
        (["--data", corpus, "--out", tmp_path / "empty.txt"], "empty.txt is a file, not a folder"),
        (["--data", corpus, "--out", ""], "--out must name a run folder, not the current folder"),
    ]
    for argv, message in cases:
        assert run(["--out", tmp_path / "out", *argv]) == 1  # a later --out wins
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("arch1_hidden.py: error: "), err
        assert not (tmp_path / "out" / "config.json").exists()


def test_offline_download_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(data, "TEXT8_URL", f"http://127.0.0.1:{port}/text8.zip")
    monkeypatch.setattr(data, "DEFAULT_CACHE", tmp_path / "cache")
    assert run(["--out", tmp_path / "checkpoints" / "arch1"]) == 1
    assert not (tmp_path / "checkpoints").exists()  # a start that failed leaves no folder (nor its lock) behind
    (tmp_path / "mine").mkdir()
    assert run(["--out", tmp_path / "mine"]) == 1
    assert list((tmp_path / "mine").iterdir()) == []  # a folder that was there stays, as it was
    capsys.readouterr()
    assert run(["--out", tmp_path / "out"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not connect" in err and "--data PATH" in err
    assert str(tmp_path / "cache" / "text8.zip") in err
    assert not (tmp_path / "cache" / "text8.zip").exists()
    offered = err.split("--data ")[-1].strip()  # the text this repository ships, to start offline
    assert Path(offered).resolve() == data.SHIPPED and data.SHIPPED.exists()


def script(*argv):
    """Runs a top-level script in a fresh Python, as a user would."""
    return run_child(argv)


@pytest.mark.slow
def test_a_user_mistake_prints_no_traceback(tmp_path):
    done = script("arch1_hidden.py", "--data", tmp_path / "missing.txt", "--out", tmp_path / "out")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no such file" in done.stderr
    done = script("arch1_hidden.py", "--clip-norm", "-2")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--clip-norm" in done.stderr


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_that_resume_continues(corpus, tmp_path):
    out = tmp_path / "run"
    with child(["arch1_hidden.py", "--data", corpus, "--out", out, *TINY, "--eval-frequency", 100000,
                "--num-steps", 10000000]) as training_run:
        training_run.wait_for(lambda line: line.split()[:2] == ["step", "30/10,000,000"])  # training is under way
        training_run.send(signal.SIGINT)
        assert training_run.finish() == 130, training_run.stderr
    assert "Traceback" not in training_run.stderr
    config = json.loads((out / "config.json").read_text())
    step = config["step"]
    assert step >= 30 and f"interrupted: saved step {step:,}" in training_run.stdout
    assert int(checkpoint_values(out)["global_step"]) == step
    assert not (out / "results.json").exists()
    assert run(["--out", out, "--resume", "--num-steps", step + 10]) == 0
    assert json.loads((out / "results.json").read_text())["steps"] == step + 10


def test_threads_come_from_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5}, raising=False)  # 3 of the machine's cores
    for option, threads in ((0, 3), (1, 1), (5, 5)):
        hp = {"threads": option, "graph": "post"}
        config = sessions.session_config(hp, "post")
        assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (1, threads)
        assert fast.chains(hp) == threads
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS and Windows tell no affinity: every core counts
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert settings.threads({"threads": 0}) == 6 and fast.chains({"threads": 0}) == 6


def test_session_settings_follow_the_graph():
    post, fast_graph = (sessions.session_config({"threads": 2}, g) for g in ("post", "fast"))
    rewrite = post.graph_options.rewrite_options
    assert rewrite.arithmetic_optimization == rewrite.DEFAULT  # Grappler's rewrites help the post's graph
    assert fast_graph.graph_options.rewrite_options.arithmetic_optimization == rewrite.OFF
    # a session gets the settings of the graph it runs, whatever the run's --graph was (sample.py --graph, bench)
    hp = hparams(arch1_hidden, batch_size=4, num_nodes=4, num_unrollings=3, graph="post")
    for build, expected in ((arch1_hidden.build_graph, rewrite.DEFAULT), (arch1_hidden.GRAPHS["fast"], rewrite.OFF)):
        with sessions.new_session(build(hp)) as sess:
            assert sess._config.graph_options.rewrite_options.arithmetic_optimization == expected


def test_fast_graph_cuts_the_batch_into_one_chain_per_thread():
    for threads, rows in ((1, [5]), (2, [3, 2]), (3, [2, 2, 1])):
        model = arch1_hidden.GRAPHS["fast"](hparams(arch1_hidden, batch_size=5, num_nodes=4, num_unrollings=3,
                                                    combine="add", threads=threads))
        cuts = [op for op in model.graph.get_operations() if op.type == "SplitV"
                and op.inputs[0].name == model.initial_state.name]  # the carried state, cut into the chains
        assert len(cuts) == 1 and [o.shape[0] for o in cuts[0].outputs] == rows, threads


def test_many_threads_do_not_multiply_the_graph():
    hp = hparams(arch1_hidden, threads=64, combine="add")  # a 64-core machine, or --threads 64; batch 32
    assert fast.chains(hp) == fast.MAX_CHAINS == 16
    model = arch1_hidden.GRAPHS["fast"](hp)
    cuts = [op for op in model.graph.get_operations() if op.type == "SplitV"
            and op.inputs[0].name == model.initial_state.name]
    assert len(cuts) == 1 and len(cuts[0].outputs) == 16  # 32 rows in 16 chains, not 64


@pytest.mark.slow
def test_report_lines_reach_a_log_file_as_they_are_printed(corpus, tmp_path):
    log = tmp_path / "train.log"
    with open(log, "w") as f, child(["arch1_hidden.py", "--data", corpus, "--out", tmp_path / "run", *TINY,
                                     "--eval-frequency", 100000, "--num-steps", 10000000], stdout=f) as training_run:
        # python arch1_hidden.py > train.log &, then tail -f train.log: the line is there while the run goes on
        wait_until(lambda: "step " in log.read_text() or training_run.proc.poll() is not None, what="a report line")
        assert training_run.proc.poll() is None and "step " in log.read_text()
        training_run.send(signal.SIGINT)
        assert training_run.finish() == 130
    assert "interrupted: saved step" in log.read_text()


def test_private_tensorflow_api_missing_falls_back_and_still_works(corpus, tmp_path, capsys, monkeypatch):
    import sample
    monkeypatch.setattr(sessions, "CallableOptions", None)  # as if TensorFlow moved its internal protobuf
    monkeypatch.setattr(sessions, "_said_fallback", [])
    out = tmp_path / "run"
    assert run(["--data", corpus, "--out", out, *TINY, "--num-steps", 40]) == 0
    assert sample.main(["--checkpoint", str(out), "--length", "30", "--seed", "1"]) == 0
    printed, err = capsys.readouterr()
    assert err.count("fast Session callables are missing") == 1  # said once, for the whole process
    assert len(printed.splitlines()[-1]) == 30
    monkeypatch.undo()  # the fast callables again
    fast_out = tmp_path / "fast"
    assert run(["--data", corpus, "--out", fast_out, *TINY, "--num-steps", 40]) == 0
    assert checkpoint_values(out)["U"].tolist() == checkpoint_values(fast_out)["U"].tolist()  # the same run
