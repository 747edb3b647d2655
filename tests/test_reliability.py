"""Ways a run could lose work or end in a traceback, each reproduced: a closing terminal (SIGHUP), output
that goes away (a closed pipe, a closed stderr), a save killed before the first config.json, a full disk
found at the start, damaged zips and symbolic-link loops as --data."""
import json
import os
import re
import shutil
import signal
import sys
import zipfile
from pathlib import Path

import pytest

import arch1_hidden
import data
from machinery import command, folder as run_folder, sessions, stopping
from machinery.command import UserError
from helpers import TINY, child, load_run, run_child, wait_until, write_corpus


ROOT = Path(__file__).resolve().parent.parent
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and descriptors")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "words.txt")


def one_line_error(capsys, prefix="arch1_hidden.py: error: "):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(prefix) and "Traceback" not in err, err
    return err


def config_of(folder):
    return run_folder.read_config(folder)


@POSIX
def test_a_closed_stdout_pipe_does_not_stop_training(corpus, tmp_path):
    """python arch1_hidden.py ... | head -n 2: the run goes on to its end and saves everything."""
    out = tmp_path / "run"
    with child(["arch1_hidden.py", "--data", corpus, "--out", out, *TINY, "--num-steps", 200]) as run:
        run.wait_for("config: ")  # its second line
        run.close_stdout()  # what head does after its lines
        assert run.finish() == 0, run.stderr
    assert "Traceback" not in run.stderr and "the output went away" in run.stderr, run.stderr
    assert config_of(out)["step"] == 200 and (out / "results.json").exists()


@POSIX
def test_a_closed_stderr_is_not_a_silent_exit(corpus, tmp_path):
    """python arch1_hidden.py ... 2>&-: stderr closed before Python starts."""
    out = tmp_path / "run"
    done = run_child(["arch1_hidden.py", "--data", corpus, "--out", out, *TINY, "--num-steps", 20], stderr=None,
                     before=lambda: os.close(2))
    assert done.returncode == 0 and "results in" in done.stdout, done.stdout
    assert (out / "results.json").exists()


def test_a_save_killed_before_the_first_config_is_cleaned_up(corpus, tmp_path, capsys):
    """kill -9 during the first save leaves the Saver's temporary files and no config.json: ours to delete."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.ckpt-20.data-00000-of-00001.tempstate8814261").write_bytes(b"half a checkpoint")
    (out / "model.ckpt-20_temp").mkdir()
    (out / "model.ckpt-20_temp" / "part-00000-of-00001.index").write_bytes(b"x")
    (out / "notes.txt").write_text("the user's own file")
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "20"]) == 0
    assert config_of(out)["step"] == 20 and (out / "notes.txt").read_text() == "the user's own file"
    assert not list(out.glob("*temp*"))


def test_checkpoint_files_without_a_config_say_what_to_delete(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("model.ckpt-20.index", "model.ckpt-20.data-00000-of-00001"):
        (out / name).write_bytes(b"a save that finished, then died before config.json")
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "20"]) == 1
    err = one_line_error(capsys)
    assert "no config.json" in err and "delete model.ckpt-20.data-00000-of-00001, model.ckpt-20.index" in err
    assert len(list(out.iterdir())) == 2  # nothing deleted that a save finished writing


def test_a_full_disk_is_found_before_training(corpus, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "20"]) == 0
    (out / ".lock").touch()  # an empty file can still be made on a full disk: the old check passed
    real = run_folder.shutil.disk_usage
    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda p: real(p)._replace(free=4096))
    saved = lambda: {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    before = saved()
    assert arch1_hidden.main(["--out", str(out), "--resume", "--num-steps", "60"]) == 1
    err = one_line_error(capsys)
    assert "4 KB free" in err and "needs about" in err
    assert saved() == before


def test_damaged_zips_and_link_loops_are_one_line_errors(corpus, tmp_path, capsys):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("text8", corpus.read_text() * 3)
    raw = bytearray(good.read_bytes())
    start = 30 + len("text8")  # the member's compressed data follows its local header
    raw[start + 40:start + 200] = bytes(160)  # deflate data damaged, the zip's directory intact
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(raw))
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[:len(raw) // 2])
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for path, words in ((damaged, "the zip is damaged"), (truncated, "damaged or truncated zip"),
                        (loop, "loop of symbolic links")):
        out = tmp_path / f"run-{path.name}"
        assert arch1_hidden.main(["--data", str(path), "--out", str(out), *TINY, "--num-steps", "5"]) == 1
        assert words in one_line_error(capsys), path


# ---------------------------------------------------------------------------------------------
# The tools: output that fails is one line, a signal keeps what was made.
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "20"]) == 0
    return out


@POSIX
def test_sample_sigterm_prints_what_it_made(trained):
    with child(["sample.py", "--checkpoint", trained, "--length", 200, "--seed", 1, "--num-samples", 10 ** 6]) as run:
        run.wait_for("\n")  # a first sample is out: sampling is under way
        run.send(signal.SIGTERM)
        assert run.finish() == 128 + signal.SIGTERM and "Traceback" not in run.stderr, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines[0]) == 200 and set("".join(lines)) <= set(" abcdefghijklmnopqrstuvwxyz")
    assert len(lines[-1]) <= 200  # the sample it was making, as far as it got


@POSIX
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("tool", ["sample.py", "evaluate.py", "data.py"])
def test_a_full_disk_under_the_output_is_one_line(tool, trained, corpus):
    args = {"sample.py": ["--checkpoint", trained, "--length", 100_000], "data.py": [corpus],
            "evaluate.py": ["--checkpoint", trained, "--data", corpus, "--json"]}[tool]
    with open("/dev/full", "w") as full:
        done = run_child([tool, *args], stdout=full)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == f"{tool}: error: the output: No space left on device"


@POSIX
def test_a_closed_pipe_under_evaluate_is_quiet(trained, corpus):
    with child(["evaluate.py", "--checkpoint", trained, "--data", corpus]) as run:
        run.close_stdout()  # evaluate.py ... | head -c 0
        run.finish()
    assert "Traceback" not in run.stderr and "Exception" not in run.stderr, run.stderr


@pytest.mark.parametrize("argv, words", [(["--one", "abc"], "--one takes eval or"),
                                         (["--one", "99"], "--one takes eval or"),
                                         (["--fastest"], "unrecognized arguments: --fastest")])
def test_bench_bad_options_are_one_line(argv, words):
    done = run_child(["bench.py", *argv])
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell pipe and SIGINT")
def test_bench_stopped_by_ctrl_c_is_quiet():
    with child(["bench.py", "--quick"]) as run:
        run.wait_for("configuration")  # it has started measuring
        run.send(signal.SIGINT)
        assert run.finish() == 130 and "Traceback" not in run.stderr, run.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell pipe")
def test_experiments_into_head_is_quiet(tmp_path):
    done = run_child(f"{sys.executable} experiments.py claims --seeds 3 --list --out {tmp_path} | head -n 2",
                     shell=True)
    assert done.stdout.count("\n") == 2 and done.stdout.startswith("[1/24]")
    assert done.stderr == "", done.stderr


def test_plot_of_empty_or_garbage_event_files_is_one_line(tmp_path, capsys):
    import plot
    for name, content in (("empty", b""), ("garbage", bytes(range(256)) * 4)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "events.out.tfevents.1.host").write_bytes(content)
        assert plot.main([str(folder), "--out", str(tmp_path / f"{name}.png")]) == 1
        assert "hold none of the training curves" in one_line_error(capsys, "plot.py: error: ")
        assert not (tmp_path / f"{name}.png").exists()


def test_experiments_damaged_run_json_and_out_a_file_are_one_line(tmp_path):
    import experiments
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text("{garbage")
    with pytest.raises(experiments.ExperimentError, match="results.json is damaged"):
        experiments.results_of(folder)
    (tmp_path / "afile").write_text("x")
    done = run_child(["experiments.py", "claims", "--out", tmp_path / "afile", "--data", tmp_path / "afile"])
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


@POSIX
def test_the_tools_read_a_run_that_is_training(corpus, tmp_path):
    """sample.py, evaluate.py and gradients.py on a folder whose run saves and prunes every 10 steps."""
    import evaluate
    import gradients
    import sample
    out = tmp_path / "live"
    with child(["arch1_hidden.py", "--data", corpus, "--out", out, *TINY, "--eval-frequency", 10,
                "--keep", 1, "--valid-chars", 50, "--num-steps", 10_000_000]) as run:
        run.wait_for(lambda line: line.startswith("validation at step 30"))
        for _ in range(2):
            assert sample.main(["--checkpoint", str(out), "--length", "20"]) == 0
            assert evaluate.main(["--checkpoint", str(out), "--data", str(corpus), "--json"]) == 0
            assert gradients.main([str(out), "--plot", str(tmp_path / "g.png")]) == 0
        assert run.proc.poll() is None and run_folder.read_config(out)["step"] > 30  # it went on saving all along


def test_a_model_too_large_for_the_memory_is_refused_before_building(corpus, tmp_path, capsys, monkeypatch):
    from machinery import memory, sessions
    monkeypatch.setattr(memory, "available", lambda: 2 ** 30)  # a machine with 1 GB left
    argv = ["--data", str(corpus), "--out", str(tmp_path / "run"), "--batch-size", "128", "--num-nodes", "4096",
            "--num-unrollings", "100"]  # all in range; about 3.4 GB
    assert arch1_hidden.main(argv) == 1
    err = one_line_error(capsys)
    assert "GB to train and 1.0 GB is available" in err and not list((tmp_path / "run").glob("model.ckpt*"))
    from machinery import settings
    hp = settings.defaults(arch1_hidden.HPARAMS)
    assert sessions.training_memory(hp) < 2 ** 30  # the default model is not refused there


def test_gradients_advice_fits_the_text():
    import numpy as np
    import gradients
    with pytest.raises(Exception, match=r"use --horizon 19 or less"):
        gradients.text_streams(np.zeros(120, np.int32), gradients.WARMUP + 40 + 1)
    with pytest.raises(Exception, match=r"pass a longer text with --data"):
        gradients.text_streams(np.zeros(50, np.int32), gradients.WARMUP + 2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_an_experiment_killed_takes_its_training_run_with_it(corpus, tmp_path):
    out = tmp_path / "run"
    command = ["arch1_hidden.py", "--data", str(corpus), "--out", str(out), *TINY, "--eval-frequency", "100000",
               "--num-steps", "10000000"]
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import experiments; from pathlib import Path; "
            f"experiments.run_one(Path({str(out)!r}), {command!r})")
    log = lambda: (out / "train.log").read_text() if (out / "train.log").exists() else ""

    def lock_is_free():
        try:
            with run_folder.lock(out):
                return True
        except UserError:
            return False

    with child(["-c", code]) as parent:
        wait_until(lambda: re.search(r"^step +30/", log(), re.MULTILINE), what="step 30 in train.log")
        parent.proc.kill()  # kill -9 of the parent alone: nothing of the parent's can forward anything
        parent.finish()
        wait_until(lambda: "interrupted: saved step" in log(), what="the child's save")  # it got SIGTERM
        assert run_folder.read_config(out)["step"] >= 30
        wait_until(lock_is_free, what="the training run's end")  # it ended: its lock is free


# ---------------------------------------------------------------------------------------------
# Saves that die, runs that collide: no work lost, no record that lies.
# ---------------------------------------------------------------------------------------------
def test_a_second_run_leaves_the_folder_of_a_live_run_alone(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    scratch = [out / "model.ckpt-20.data-00000-of-00001.tempstate123", out / "model.ckpt-20_temp"]
    scratch[0].write_bytes(b"a save under way")
    scratch[1].mkdir()
    with run_folder.lock(out):  # run A holds the folder while it makes its first save
        for argv in ([], ["--resume"]):
            assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, *argv]) == 1
            assert "is in use by another training run" in one_line_error(capsys)
    assert all(path.exists() for path in scratch)  # A's save is untouched


def test_what_dead_saves_left_is_cleaned_at_the_next_start(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "40"]) == 0
    left = [out / "model.ckpt-50.index", out / "model.ckpt-50.data-00000-of-00001",  # written, never recorded
            out / "model.ckpt-50.data-00000-of-00001.tempstate99", out / "best" / "model.ckpt-50.index.tempstate7"]
    for path in left:
        path.write_bytes(b"what a kill -9 left")
    (out / "best" / "model.ckpt-50_temp").mkdir()
    (out / "notes.txt").write_text("the user's own file")
    kept = {p.name for p in out.iterdir()} | {p.name for p in (out / "best").iterdir()}
    assert arch1_hidden.main(["--out", str(out), "--resume", "--num-steps", "60"]) == 0
    assert not any(path.exists() for path in left) and not (out / "best" / "model.ckpt-50_temp").exists()
    now = {p.name for p in out.iterdir()} | {p.name for p in (out / "best").iterdir()}
    assert not [name for name in now if "temp" in name]
    assert {p for p in kept if "50" not in p and "ckpt-20" not in p} <= now  # nothing else went


def test_a_run_killed_during_its_first_best_save_resumes(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "20"]) == 0
    (out / "best" / "config.json").unlink()  # killed after the checkpoint's files, before its record
    (out / "best" / "model.ckpt-20.index.tempstate5").write_bytes(b"x")
    assert arch1_hidden.main(["--out", str(out), "--resume", "--num-steps", "40"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["best_step"] in (20, 40) and (out / "best" / "config.json").exists()
    assert run_folder.read_config(out / "best")["step"] == results["best_step"]


def test_the_best_numbers_are_those_of_the_checkpoint_in_best(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "20"]) == 0
    shutil.copytree(out / "best", tmp_path / "best-20")
    assert arch1_hidden.main(["--out", str(out), "--resume", "--num-steps", "40"]) == 0
    assert run_folder.read_config(out)["best_step"] == 40  # validation improved at 40: best/ holds step 40
    # killed while best/ was being replaced: best/ still holds step 20, whatever out's config.json says
    shutil.rmtree(out / "best")
    shutil.copytree(tmp_path / "best-20", out / "best")
    (out / "results.json").unlink()
    assert arch1_hidden.main(["--out", str(out), "--resume", "--num-steps", "40"]) == 0  # evaluates, trains nothing
    results = json.loads((out / "results.json").read_text())
    config, model, sess = load_run(out / "best")
    valid = data.split(data.text_to_ids(corpus.read_text()))[1]
    assert results["best_step"] == 20 and config["step"] == 20
    assert results["best_valid_bpc"] == pytest.approx(sessions.bpc(sessions.Evaluator(sess, model)(valid)), abs=1e-4)


def test_signals_wait_for_a_save_to_finish(monkeypatch):
    with stopping.StopFlag() as flag:
        with pytest.raises(command.Stopped):
            with flag.holding():  # a save
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
                os.kill(os.getpid(), signal.SIGINT)  # and again, 50 ms later: the save goes on to its end
                finished = True
        assert finished and flag.signal == signal.SIGINT
    with stopping.StopFlag() as flag:
        with flag.holding():
            os.kill(os.getpid(), signal.SIGINT)  # one Ctrl-C: the save ends, then the run stops after its step
        assert flag.signal == signal.SIGINT


def test_a_run_started_ignoring_a_signal_keeps_ignoring_it():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a program
    try:
        with stopping.StopFlag() as flag:
            os.kill(os.getpid(), signal.SIGHUP)
            assert flag.signal is None
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_an_event_file_that_cannot_be_written_does_not_stop_the_run(corpus, tmp_path, capsys, monkeypatch):
    from machinery.tf1 import tf

    def full_disk(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "events.out.tfevents: No space left on device")

    monkeypatch.setattr(tf.summary.FileWriter, "add_summary", full_disk)
    monkeypatch.setattr(tf.summary.FileWriter, "flush", full_disk)
    out = tmp_path / "run"
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "40"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("TensorBoard's event file can no longer be written") == 1 and "training goes on" in printed
    assert (out / "results.json").exists()


def test_a_text_larger_than_the_memory_is_refused_before_it_is_read(tmp_path, capsys):
    huge = tmp_path / "sparse.txt"
    with open(huge, "wb") as f:
        f.truncate(2 ** 42)  # 4 TB of holes: nothing on disk, but no machine here can hold it
    with pytest.raises(data.DataError, match="too much for this machine's .* memory"):
        data.load_text(huge)
    assert arch1_hidden.main(["--data", str(huge), "--out", str(tmp_path / "run")]) == 1
    assert "too much for this machine" in one_line_error(capsys)


def test_a_missing_data_file_is_said_before_the_folder(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "5"]) == 0
    assert arch1_hidden.main(["--data", str(tmp_path / "typo.txt"), "--out", str(out)]) == 1
    assert "typo.txt: no such file" in one_line_error(capsys)


def test_the_time_budget_is_checked_at_every_step(corpus, tmp_path, capsys, monkeypatch):
    # a clock that moves a second each time it is read: a budget of 0.1 minutes is spent within a few steps,
    # long before the next report line (--summary-frequency 100000)
    now = [1e9]
    monkeypatch.setattr(stopping.time, "time", lambda: now.append(now[-1] + 1.0) or now[-1])
    out = tmp_path / "run"
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--summary-frequency", "100000",
                              "--time-budget", "0.1", "--num-steps", "100000"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["stopped_by_time_budget"] and results["steps"] <= 6
    assert "the time budget of 0.1 minutes is spent" in capsys.readouterr().out


def test_a_full_run_folder_is_named_not_called_the_output(tmp_path, monkeypatch):
    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(UserError, match=r"cannot write .*results.json \(No space left on device\)"):
        run_folder.write_json(tmp_path / "results.json", {"valid_bpc": 2.5})
    assert not list(tmp_path.iterdir())  # no half-written file left


def test_odd_files_in_a_run_folder_are_named(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint").write_text("a user's own file")  # the name of TensorFlow's bookkeeping file
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY]) == 1
    err = one_line_error(capsys)
    assert "delete checkpoint, or pass another --out" in err
    fifo = tmp_path / "fifo-run"
    fifo.mkdir()
    os.mkfifo(fifo / ".lock")
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(fifo), *TINY]) == 1
    assert ".lock is not a file" in one_line_error(capsys)


def test_a_link_loop_is_said_by_every_tool(trained, tmp_path, capsys):
    import evaluate
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert evaluate.main(["--checkpoint", str(trained), "--data", str(loop)]) == 1
    assert "a loop of symbolic links" in one_line_error(capsys, "evaluate.py: error: ")
    assert evaluate.main(["--ngram", "3", "--data", str(loop)]) == 1
    assert "a loop of symbolic links" in one_line_error(capsys, "evaluate.py: error: ")


def test_a_diverging_perplexity_is_printed_short():
    from machinery import reporting
    assert reporting.figure(2.0 ** 249) == "9.05e+74"  # not 75 digits
    assert reporting.figure(float("inf")).strip() == "inf" and reporting.figure(6.01) == "  6.01"
