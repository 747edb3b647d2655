"""Run folders under stress: nothing lost, nothing that reads as a crash. A new run refuses an old run's
folder, pruning deletes only what the run wrote, saves that fail leave the last good checkpoint named,
signals save before stopping, two trainings cannot share a folder, and damaged or hand-edited folders are
one-line errors in every tool."""
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import arch1_hidden
import gradients
import sample
from machinery import ending, folder as run_folder, sessions, training
from helpers import TINY, child, load_run, write_corpus


ROOT = Path(__file__).resolve().parent.parent
POSIX_SIGNALS = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is not delivered this way on Windows")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "words.txt")


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A finished run of 40 steps (checkpoints at 20 and 40), to copy and damage."""
    out = tmp_path_factory.mktemp("trained") / "run"
    assert train(["--data", corpus, "--out", out, *TINY, "--num-steps", 40]) == 0
    return out


def train(argv):
    return arch1_hidden.main([str(a) for a in argv])


def one_line_error(capsys, prefix="arch1_hidden.py: error: "):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(prefix) and "Traceback" not in err, err
    return err


def copy(run, tmp_path, name="copy"):
    return Path(shutil.copytree(run, tmp_path / name))


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file() and p.name != ".lock")


def config_of(folder):
    return json.loads((Path(folder) / "config.json").read_text())


def edit_config(folder, **changes):
    config = config_of(folder)
    for key, value in changes.items():
        target, key = (config["hparams"], key[3:]) if key.startswith("hp_") else (config, key)
        if value is KeyError:
            del target[key]
        else:
            target[key] = value
    (Path(folder) / "config.json").write_text(json.dumps(config))


# ---------------------------------------------------------------------------------------------
# Work lost.
# ---------------------------------------------------------------------------------------------
def test_a_new_run_refuses_a_folder_that_holds_checkpoints(trained, corpus, tmp_path, capsys):
    folder = copy(trained, tmp_path)
    (folder / "config.json").unlink()  # as the damaged-config message used to invite: "train again"
    before = {p: (folder / p).read_bytes() for p in files(folder)}
    assert train(["--data", corpus, "--out", folder, *TINY, "--num-steps", 20]) == 1
    err = one_line_error(capsys)
    assert "already holds a run (model.ckpt-" in err and "--resume" in err
    assert {p: (folder / p).read_bytes() for p in files(folder)} == before


def test_pruning_deletes_only_the_checkpoints_the_run_wrote(trained, tmp_path):
    folder = copy(trained, tmp_path)
    strangers = ["model.ckpt-best.index", "model.ckpt-5.index", "model.ckpt-notes.txt"]
    for name in strangers:
        (folder / name).write_text("not the run's")
    assert train(["--out", folder, "--resume", "--num-steps", 100, "--keep", 2]) == 0
    kept = sorted(p.name for p in folder.glob("model.ckpt-*"))
    assert kept == sorted(strangers + [f"model.ckpt-{s}.{e}" for s in (80, 100)
                                       for e in ("data-00000-of-00001", "index")])
    assert config_of(folder)["saved"] == [80, 100]
    best = config_of(folder / "best")
    assert sorted(p.name for p in (folder / "best").glob("model.ckpt-*.index")) == [best["checkpoint"] + ".index"]


def test_a_large_finite_loss_is_reported_not_a_crash(corpus, tmp_path, capsys, monkeypatch):
    real_record = training.Run.record  # what the loop hands the run at each step: step 20's loss made huge
    monkeypatch.setattr(training.Run, "record", lambda self, step, loss, *rest: real_record(
        self, step, np.float32(1e30) if step == 20 else loss, *rest))
    real_call = sessions.Evaluator.__call__
    monkeypatch.setattr(sessions.Evaluator, "__call__", lambda self, ids, teacher_forced=False:
                        1e4 if len(ids) > 500 else real_call(self, ids, teacher_forced))  # the final splits
    out = tmp_path / "run"
    assert train(["--data", corpus, "--out", out, *TINY, "--num-steps", 20]) == 0
    printed = capsys.readouterr().out
    assert "ppl    inf" in printed and "perplexity inf" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["valid_perplexity"] == float("inf") and config_of(out)["step"] == 20


def test_ctrl_c_during_the_final_evaluation_keeps_the_last_steps(corpus, tmp_path, capsys, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(ending, "final_scores", interrupted)
        assert train(["--data", corpus, "--out", out, *TINY, "--eval-frequency", 1000, "--num-steps", 30]) == 130
    printed = capsys.readouterr().out
    assert "interrupted during the final evaluation: step 30 is saved" in printed
    assert config_of(out)["step"] == 30 and not (out / "results.json").exists()
    assert train(["--out", out, "--resume"]) == 0  # evaluates what was saved, trains nothing
    assert "trained 0 steps" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["steps"] == 30


@POSIX_SIGNALS
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])  # kill, timeout; a closing terminal
def test_sigterm_and_sighup_save_and_stop_like_ctrl_c(signum, corpus, tmp_path):
    signum = getattr(signal, signum)
    out = tmp_path / "run"
    with child(["arch1_hidden.py", "--data", corpus, "--out", out, *TINY, "--eval-frequency", 100000,
                "--num-steps", 10_000_000]) as run:
        run.wait_for(lambda line: line.split()[:2] == ["step", "30/10,000,000"])
        run.send(signum)
        assert run.finish() == 128 + signum and "Traceback" not in run.stderr, run.stderr
    step = config_of(out)["step"]
    assert step >= 30 and f"interrupted: saved step {step:,}" in run.stdout


@POSIX_SIGNALS
@POSIX_SIGNALS
def test_a_run_started_under_nohup_goes_on_when_its_terminal_closes(corpus, tmp_path):
    # nohup python arch1_hidden.py ... &: SIGHUP is ignored from the start, and the run must leave it so
    with child(["arch1_hidden.py", "--data", corpus, "--out", tmp_path / "run", *TINY, "--eval-frequency", 100000,
                "--num-steps", 10_000_000], ignore=(signal.SIGHUP,)) as run:
        run.wait_for(lambda line: line.split()[:2] == ["step", "30/10,000,000"])
        run.send(signal.SIGHUP)  # the terminal closes
        run.wait_for(lambda line: line.split()[:2] == ["step", "60/10,000,000"])  # it went on
        run.send(signal.SIGINT)
        assert run.finish() == 130 and "Traceback" not in run.stderr, run.stderr


@POSIX_SIGNALS
@pytest.mark.parametrize("tool", ["arch1_hidden.py", "arch2_output.py", "sample.py", "evaluate.py", "gradients.py",
                                  "experiments.py", "bench.py", "plot.py", "data.py"])
def test_ctrl_c_while_the_libraries_load_exits_quietly(tool, corpus, tmp_path):
    # -X importtime says on stderr each module Python has imported: a marker of how far the start has gone
    args = {"sample.py": ["--checkpoint", tmp_path / "run"], "evaluate.py": ["--data", corpus, "--checkpoint", tmp_path],
            "gradients.py": [tmp_path], "experiments.py": ["claims", "--list"], "plot.py": [tmp_path],
            "data.py": [corpus]}.get(tool, ["--data", corpus, "--out", tmp_path / "run"])
    with child(["-X", "importtime", tool, *args]) as run:
        run.wait_for("machinery.startup", "stderr")  # the tool's first line has run; numpy is loading
        run.send(signal.SIGINT)
        assert run.finish() == 130, run.stderr
    assert "Traceback" not in run.stderr and "KeyboardInterrupt" not in run.stderr and run.stdout == ""
    assert not (tmp_path / "run").exists()


def test_a_folder_that_cannot_be_written_is_found_at_start(trained, tmp_path, capsys, monkeypatch):
    folder = copy(trained, tmp_path)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")  # what a read-only folder gives (root ignores chmod)

    monkeypatch.setattr(run_folder.tempfile, "TemporaryFile", read_only)
    before = files(folder)
    assert train(["--out", folder, "--resume", "--num-steps", 60]) == 1
    assert "cannot write in" in one_line_error(capsys) and files(folder) == before


def test_a_failed_save_names_the_last_good_checkpoint(trained, tmp_path, capsys):
    folder = copy(trained, tmp_path)
    (folder / "model.ckpt-60.index").mkdir()  # the index cannot be written: a real failure of the Saver
    assert train(["--out", folder, "--resume", "--num-steps", 80, "--eval-frequency", 20]) == 1
    err = one_line_error(capsys)
    assert "could not save step 60" in err and "the last good checkpoint is model.ckpt-40" in err
    assert config_of(folder)["checkpoint"] == "model.ckpt-40"
    assert (folder / "model.ckpt-60.index").is_dir()  # not the run's to delete
    assert not list(folder.glob("model.ckpt-60.data*")) and not list(folder.glob("*.tmp"))


def test_two_trainings_cannot_share_a_folder(trained, tmp_path, capsys):
    folder = copy(trained, tmp_path)
    with run_folder.lock(folder):  # as a training run in another process holds it
        assert train(["--out", folder, "--resume", "--num-steps", 60]) == 1
        err = one_line_error(capsys)
    assert f"is in use by another training run (pid {os.getpid()} on " in err
    assert config_of(folder)["step"] == 40
    assert train(["--out", folder, "--resume", "--num-steps", 60]) == 0  # free again


def test_moved_and_changed_corpora_on_resume(trained, corpus, tmp_path, capsys):
    folder = copy(trained, tmp_path)
    moved = tmp_path / "moved.txt"
    edit_config(folder, data=str(tmp_path / "gone.txt"))
    assert train(["--out", folder, "--resume", "--num-steps", 60]) == 1
    assert "gone.txt is gone; pass --data with where it is now" in one_line_error(capsys)
    other = write_corpus(tmp_path / "other.txt", seed=5)
    assert train(["--out", folder, "--resume", "--num-steps", 60, "--data", other]) == 1
    assert "other.txt is not the text this run trained on" in one_line_error(capsys)
    shutil.copy(corpus, moved)
    assert train(["--out", folder, "--resume", "--num-steps", 60, "--data", moved]) == 0
    assert config_of(folder)["data"] == str(moved.resolve()) and config_of(folder)["step"] == 60
    moved.write_text(moved.read_text().replace("the", "and"))  # a different text at the same path
    assert train(["--out", folder, "--resume", "--num-steps", 80]) == 1
    assert "moved.txt is not the text this run trained on" in one_line_error(capsys)


def test_a_checkpoint_being_pruned_while_sampling_is_retried(trained, tmp_path, monkeypatch):
    folder = copy(trained, tmp_path)
    stale = {**config_of(folder), "checkpoint": "model.ckpt-20"}
    for path in folder.glob("model.ckpt-20.*"):
        path.unlink()  # pruned by the training run after sample.py read config.json
    reads = []
    real_read = run_folder.read_config
    monkeypatch.setattr(run_folder, "read_config", lambda f: reads.append(1) or (stale if len(reads) == 1 else real_read(f)))
    config, model, sess = load_run(folder)
    assert config["checkpoint"] == "model.ckpt-40" and len(reads) == 2  # the stale one, then the newest


# ---------------------------------------------------------------------------------------------
# Damaged and hand-edited run folders: one line from every tool, nothing changed.
# ---------------------------------------------------------------------------------------------
EDITS = {
    "keep 0": dict(hp_keep=0),
    "num_nodes as text": dict(hp_num_nodes="8"),
    "unknown activation": dict(hp_activation="sigmoid"),
    "unknown optimizer": dict(hp_optimizer="rmsprop"),
    "unknown graph": dict(hp_graph="slow"),
    "a size that does not fit the checkpoint": dict(hp_num_nodes=9),
    "a huge size": dict(hp_num_nodes=10 ** 30),
    "missing batch_size": dict(hp_batch_size=KeyError),
    "an unknown setting": dict(hp_depth=3),
    "negative step": dict(step=-1),
    "checkpoint a number": dict(checkpoint=5),
    "no checkpoint": dict(checkpoint=KeyError),
    "architecture a number": dict(architecture=3),
    "unknown architecture": dict(architecture="arch9_lstm"),
    "hparams a list": dict(hparams=[1, 2]),
    "batch position of another batch size": dict(batch_position=[0, 1]),
    "budget start as text": dict(budget_start="soon"),
    "corpus size as text": dict(data_chars="many"),
    "a step past any run": dict(step=10 ** 30),
    "a step that is not the checkpoint's": dict(step=30),
    "train_seconds NaN": dict(train_seconds=float("nan")),
    "train_seconds infinite": dict(train_seconds=float("inf")),
    "a fractional batch position": dict(batch_position=[1.5, 0, 0, 0]),
    "a batch position past any text": dict(batch_position=[10 ** 30, 0, 0, 0]),
}


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
def test_hand_edited_configs_are_one_line_errors_everywhere(edit, trained, tmp_path, capsys):
    folder = copy(trained, tmp_path)
    edit_config(folder, **EDITS[edit])
    before = {p: (folder / p).read_bytes() for p in files(folder)}
    assert train(["--out", folder, "--resume", "--num-steps", 60]) == 1
    one_line_error(capsys)
    if edit not in ("batch position of another batch size", "a batch position past any text",
                    "a step that is not the checkpoint's"):  # only a resumed run checks these
        assert sample.main(["--checkpoint", str(folder), "--length", "5"]) == 1
        one_line_error(capsys, "sample.py: error: ")
        assert gradients.main([str(folder), "--plot", str(tmp_path / "g.png")]) == 1
        one_line_error(capsys, "gradients.py: error: ")
    assert {p: (folder / p).read_bytes() for p in files(folder)} == before


DAMAGE = {
    "truncated data file": lambda f: f.write_bytes(f.read_bytes()[:100]),
    "empty data file": lambda f: f.write_bytes(b""),
    "garbage data file": lambda f: f.write_bytes(os.urandom(len(f.read_bytes()))),
    "missing data file": lambda f: f.unlink(),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_damaged_checkpoints_are_one_line_errors_everywhere(damage, trained, tmp_path, capsys):
    folder = copy(trained, tmp_path)
    DAMAGE[damage](folder / "model.ckpt-40.data-00000-of-00001")
    assert train(["--out", folder, "--resume", "--num-steps", 60]) == 1
    assert "model.ckpt-40" in one_line_error(capsys)
    assert sample.main(["--checkpoint", str(folder), "--length", "5"]) == 1
    assert "model.ckpt-40" in one_line_error(capsys, "sample.py: error: ")
    assert gradients.main([str(folder), "--plot", str(tmp_path / "g.png")]) == 1
    assert "model.ckpt-40" in one_line_error(capsys, "gradients.py: error: ")


def test_a_config_that_is_not_json_or_not_an_object(trained, tmp_path, capsys):
    folder = copy(trained, tmp_path)
    for text in ("{not json", "[1, 2]", ""):
        (folder / "config.json").write_text(text)
        assert train(["--out", folder, "--resume"]) == 1
        assert "is damaged" in one_line_error(capsys)
        assert sample.main(["--checkpoint", str(folder)]) == 1
        assert "is damaged" in one_line_error(capsys, "sample.py: error: ")
