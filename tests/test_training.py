"""The Session loop through the command line: outputs, checkpoints, resume, Ctrl-C, NaN, every option, errors."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import arch1_hidden
import data
import training
from helpers import TINY, variables, write_corpus

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


def test_event_file_holds_the_reported_scalars(corpus, tmp_path):
    from training import tf
    out = tmp_path / "run"
    assert run(["--data", corpus, "--out", out, "--num-steps", 20, *TINY]) == 0
    tags = set()
    for path in out.glob("events.out.tfevents.*"):
        for event in tf.train.summary_iterator(str(path)):
            tags.update(v.tag for v in event.summary.value)
    assert {"train/loss", "train/bpc", "learning_rate", "grad_norm/mean", "final/valid_bpc"} <= tags


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
    from batches import BatchGenerator
    calls = {"n": 0}
    real_next = BatchGenerator.next

    def next_with_nan_at_step_25(self):
        calls["n"] += 1
        arrays = real_next(self)
        return [a * np.nan for a in arrays] if calls["n"] == 25 else arrays

    monkeypatch.setattr(BatchGenerator, "next", next_with_nan_at_step_25)
    out = tmp_path / "run"
    assert run(["--data", corpus, "--out", out, *TINY, "--num-steps", 100]) == 1
    err = capsys.readouterr().err
    assert "the loss became nan at step 25;" in err and "(step 20)" in err and err.count("\n") == 1
    config = json.loads((out / "config.json").read_text())
    assert config["step"] == 20 and config["checkpoint"] == "model.ckpt-20"
    assert int(checkpoint_values(out)["global_step"]) == 20
    assert sorted(p.name for p in out.glob("model.ckpt-*.index")) == ["model.ckpt-20.index"]


def test_a_diverging_learning_rate_is_reported(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["--data", corpus, "--out", out, *TINY, "--optimizer", "sgd", "--clip-norm", "1e30",
                "--learning-rate", "1e30", "--num-steps", 100]) == 1
    err = capsys.readouterr().err
    assert "became nan at step" in err and "no checkpoint was saved yet" in err and err.count("\n") == 1
    assert not (out / "config.json").exists()
