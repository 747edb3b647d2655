"""Ways a run could lose work or end in a traceback, each reproduced: a closing terminal (SIGHUP), output
that goes away (a closed pipe, a closed stderr), a save killed before the first config.json, a full disk
found at the start, damaged zips and symbolic-link loops as --data."""
import re
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

import arch1_hidden
from machinery import folder as run_folder
from machinery.command import UserError
from helpers import TINY, write_corpus

pytestmark = pytest.mark.slow  # whole trainings, subprocesses and signals (-m "not slow" leaves them out)

ROOT = Path(__file__).resolve().parent.parent
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and descriptors")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "words.txt")


def start(args, **kwargs):
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    proc = subprocess.Popen([sys.executable, "-u", *map(str, args)], cwd=ROOT, text=True, **kwargs)
    watchdog = threading.Timer(180, proc.kill)  # never hang the suite
    watchdog.start()
    return proc, watchdog


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
    proc, watchdog = start(["arch1_hidden.py", "--data", corpus, "--out", out, *TINY, "--num-steps", 200])
    lines = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()  # what head does after its lines
    stderr = proc.stderr.read()
    proc.wait(timeout=120)
    watchdog.cancel()
    assert all(lines) and proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "the output went away" in stderr, stderr
    assert config_of(out)["step"] == 200 and (out / "results.json").exists()


@POSIX
def test_a_closed_stderr_is_not_a_silent_exit(corpus, tmp_path):
    """python arch1_hidden.py ... 2>&-: stderr closed before Python starts."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "arch1_hidden.py", "--data", str(corpus), "--out", str(out), *TINY,
                           "--num-steps", "20"], cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=180,
                          preexec_fn=lambda: __import__("os").close(2))
    assert proc.returncode == 0 and "results in" in proc.stdout, proc.stdout
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
    assert "MB free" in err and "needs about" in err
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
    proc, watchdog = start(["sample.py", "--checkpoint", trained, "--length", 10_000_000, "--seed", 1])
    while "from " not in proc.stderr.readline():  # "sample.py: arch1_hidden at step 20 from ...": sampling now
        pass
    import time
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    watchdog.cancel()
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in stderr, stderr
    assert len(stdout.strip()) > 10 and set(stdout.strip()) <= set(" abcdefghijklmnopqrstuvwxyz")


@POSIX
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("tool", ["sample.py", "evaluate.py"])
def test_a_full_disk_under_the_output_is_one_line(tool, trained, corpus):
    args = (["--checkpoint", trained, "--length", 100_000] if tool == "sample.py"
            else ["--checkpoint", trained, "--data", corpus, "--json"])
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, tool, *map(str, args)], cwd=ROOT, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=180)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "Exception" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1] == f"{tool}: error: the output: No space left on device"


@POSIX
def test_a_closed_pipe_under_evaluate_is_quiet(trained, corpus):
    proc, watchdog = start(["evaluate.py", "--checkpoint", trained, "--data", corpus])
    proc.stdout.close()  # evaluate.py ... | head -c 0
    stderr = proc.stderr.read()
    proc.wait(timeout=120)
    watchdog.cancel()
    assert "Traceback" not in stderr and "Exception" not in stderr, stderr


@pytest.mark.parametrize("argv, words", [(["--one", "abc"], "--one takes eval or"),
                                         (["--one", "99"], "--one takes eval or"),
                                         (["--fastest"], "unrecognized arguments: --fastest")])
def test_bench_bad_options_are_one_line(argv, words):
    proc = subprocess.run([sys.executable, "bench.py", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell pipe and SIGINT")
def test_bench_stopped_by_ctrl_c_is_quiet():
    proc = subprocess.Popen([sys.executable, "bench.py", "--quick"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("configuration")  # it has started measuring
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell pipe")
def test_experiments_into_head_is_quiet(tmp_path):
    proc = subprocess.run(f"{sys.executable} experiments.py claims --seeds 3 --list --out {tmp_path} | head -n 2",
                          shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.count("\n") == 2 and proc.stdout.startswith("[1/24]")
    assert proc.stderr == "", proc.stderr


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
    proc = subprocess.run([sys.executable, "experiments.py", "claims", "--out", str(tmp_path / "afile"),
                           "--data", str(tmp_path / "afile")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr


@POSIX
def test_the_tools_read_a_run_that_is_training(corpus, tmp_path):
    """sample.py, evaluate.py and gradients.py on a folder whose run saves and prunes every 10 steps."""
    import evaluate
    import gradients
    import sample
    out = tmp_path / "live"
    proc, watchdog = start(["arch1_hidden.py", "--data", corpus, "--out", out, *TINY, "--eval-frequency", 10,
                            "--keep", 1, "--valid-chars", 50, "--num-steps", 10_000_000])
    try:
        for line in proc.stdout:
            if line.startswith("validation at step 30"):
                break
        for _ in range(2):
            assert sample.main(["--checkpoint", str(out), "--length", "20"]) == 0
            assert evaluate.main(["--checkpoint", str(out), "--data", str(corpus), "--json"]) == 0
            assert gradients.main([str(out), "--plot", str(tmp_path / "g.png")]) == 0
        assert proc.poll() is None and run_folder.read_config(out)["step"] > 30  # it went on saving all along
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
        watchdog.cancel()


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
    import time
    out = tmp_path / "run"
    command = ["arch1_hidden.py", "--data", str(corpus), "--out", str(out), *TINY, "--eval-frequency", "100000",
               "--num-steps", "10000000"]
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import experiments; from pathlib import Path; "
            f"experiments.run_one(Path({str(out)!r}), {command!r})")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    log = lambda: (out / "train.log").read_text() if (out / "train.log").exists() else ""
    deadline = time.time() + 120
    while time.time() < deadline and not re.search(r"^step +30/", log(), re.MULTILINE):
        time.sleep(0.2)
    parent.kill()  # kill -9: nothing of the parent's can forward anything
    parent.wait()
    deadline = time.time() + 60
    while time.time() < deadline and "interrupted: saved step" not in log():
        time.sleep(0.2)
    assert "interrupted: saved step" in (out / "train.log").read_text()  # the child got SIGTERM, saved, stopped
    assert run_folder.read_config(out)["step"] >= 30
    while time.time() < deadline:  # and it ended: its lock is free
        try:
            with run_folder.lock(out):
                break
        except UserError:
            time.sleep(0.2)
    else:
        pytest.fail("the training run outlived its experiment")
