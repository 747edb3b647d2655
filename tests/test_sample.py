"""sample.py on runs of both architectures: options, repeatability, temperature, the distribution, errors."""
import json
import shutil
import signal
import sys

import numpy as np
import pytest

import arch1_hidden
import arch2_output
import data
import sample
from helpers import TINY, child, load_run, run_child, sample_probs, write_corpus

ALPHABET = set(data.ALPHABET)


@pytest.fixture(scope="module", params=["arch1", "arch2"])
def run_dir(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    corpus = write_corpus(tmp / "words.txt")
    module = arch1_hidden if request.param == "arch1" else arch2_output
    assert module.main(["--data", str(corpus), "--out", str(tmp / "run"), *TINY, "--num-steps", "300",
                        "--optimizer", "adam", "--learning-rate", "0.02"]) == 0
    return tmp / "run"


def samples(capsys, *argv):
    assert sample.main([str(a) for a in argv]) == 0
    out, err = capsys.readouterr()
    return out.splitlines(), err


@pytest.mark.slow
def test_every_option(run_dir, capsys):
    lines, err = samples(capsys, "--checkpoint", run_dir, "--length", 50, "--prime", "the ", "--temperature",
                         0.7, "--seed", 3, "--num-samples", 3)
    assert len(lines) == 3 and all(len(line) == 54 and line.startswith("the ") for line in lines)
    assert all(set(line) <= ALPHABET for line in lines)
    assert "at step 300" in err
    argmax, _ = samples(capsys, "--checkpoint", run_dir, "--length", 30, "--prime", "the ", "--argmax",
                        "--num-samples", 2)
    assert argmax[0] == argmax[1] and len(argmax[0]) == 34  # greedy decoding is deterministic
    plain, _ = samples(capsys, "--checkpoint", run_dir, "--length", 40, "--seed", 1)
    assert len(plain) == 1 and len(plain[0]) == 40 and set(plain[0]) <= ALPHABET  # no prime: 40 characters
    empty, _ = samples(capsys, "--checkpoint", run_dir, "--length", 0, "--num-samples", 2, "--prime", "a b")
    assert empty == ["a b", "a b"]  # the prime alone
    nothing, _ = samples(capsys, "--checkpoint", run_dir, "--length", 0, "--seed", 1)
    assert nothing == [""]


def test_default_checkpoint_is_checkpoints_arch1(run_dir, capsys, monkeypatch, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    shutil.copytree(run_dir, tmp_path / "checkpoints" / "arch1")
    monkeypatch.chdir(tmp_path)
    lines, err = samples(capsys, "--length", 10, "--seed", 1)
    assert len(lines[0]) == 10 and "checkpoints/arch1" in err


def test_same_seed_same_text_and_other_seeds_differ(run_dir, capsys):
    first, _ = samples(capsys, "--checkpoint", run_dir, "--length", 100, "--seed", 5, "--num-samples", 2)
    again, _ = samples(capsys, "--checkpoint", run_dir, "--length", 100, "--seed", 5, "--num-samples", 2)
    other, _ = samples(capsys, "--checkpoint", run_dir, "--length", 100, "--seed", 6, "--num-samples", 2)
    assert first == again and first != other and first[0] != first[1]


def test_low_temperature_matches_argmax(run_dir, capsys):
    cold, _ = samples(capsys, "--checkpoint", run_dir, "--length", 60, "--prime", "one ", "--temperature", 1e-4,
                      "--seed", 2)
    greedy, _ = samples(capsys, "--checkpoint", run_dir, "--length", 60, "--prime", "one ", "--argmax")
    assert cold == greedy


def chi_square(counts, probabilities):
    """Pearson's statistic and degrees of freedom, pooling categories expected fewer than 5 times."""
    expected = probabilities * counts.sum()
    small = expected < 5
    observed = np.append(counts[~small], counts[small].sum())
    expected = np.append(expected[~small], expected[small].sum())
    keep = expected > 0
    return float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()), int(keep.sum()) - 1


# Upper 0.1% points of the chi-square distribution, by degrees of freedom (a fixed seed makes the test exact).
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32, 8: 26.12, 9: 27.88,
            10: 29.59, 11: 31.26, 12: 32.91, 13: 34.53, 14: 36.12, 15: 37.70, 16: 39.25, 17: 40.79, 18: 42.31,
            19: 43.82, 20: 45.31, 21: 46.80, 22: 48.27, 23: 49.73, 24: 51.18, 25: 52.62, 26: 54.05}


def first_characters(capsys, run_dir, *argv):
    lines, _ = samples(capsys, "--checkpoint", run_dir, "--length", 1, "--num-samples", 3000, "--seed", 11, *argv)
    return np.bincount([data.char2id(line[-1]) for line in lines], minlength=27)


@pytest.mark.slow
def test_high_temperature_is_close_to_uniform(run_dir, capsys):
    counts = first_characters(capsys, run_dir, "--prime", "the", "--temperature", 1e4)
    stat, dof = chi_square(counts, np.full(27, 1 / 27))
    assert dof == 26 and stat < CHI2_999[dof]


@pytest.mark.slow
def test_sampled_frequencies_match_the_models_softmax(run_dir, capsys):
    counts = first_characters(capsys, run_dir, "--prime", "the")
    config, model, sess = load_run(run_dir)
    p = sample_probs(sess, model, data.text_to_ids("the"))[-1]
    p = p.astype(np.float64) / p.sum()
    assert p.max() > 0.2  # the model has learnt something, so this is not a test of the uniform case
    stat, dof = chi_square(counts, p)
    assert stat < CHI2_999[dof], (stat, dof)
    uniform, _ = chi_square(counts, np.full(27, 1 / 27))
    assert uniform > 10 * CHI2_999[26]  # and the counts are far from uniform


def error(capsys, *argv):
    code = sample.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("sample.py: error: "), err
    return err


def test_errors_are_one_line(run_dir, tmp_path, capsys):
    assert "no such run folder" in error(capsys, "--checkpoint", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "holds no config.json" in error(capsys, "--checkpoint", tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "architecture": "arch9_lstm"}))
    assert "'arch9_lstm'; known ones are arch1_hidden, arch2_output" in error(capsys, "--checkpoint", broken)
    (broken / "config.json").write_text("{not json")
    assert "damaged" in error(capsys, "--checkpoint", broken)
    (broken / "config.json").write_text(json.dumps(config))
    for p in broken.glob("model.ckpt-*"):
        p.unlink()
    assert f"checkpoint {config['checkpoint']} that config.json names is missing" in error(
        capsys, "--checkpoint", broken)
    assert "holds no letters" in error(capsys, "--checkpoint", run_dir, "--prime", "!?!")


@pytest.mark.parametrize("argv, message", [
    (["--temperature", "0"], "argument --temperature: 0 is out of range: it must be at least 1e-06"),
    (["--temperature", "-1"], "argument --temperature: -1 is out of range: it must be at least 1e-06"),
    (["--temperature", "1e7"], "argument --temperature: 1e7 is out of range: it must be at least 1e-06 and at "
                               "most 1e+06"),
    (["--temperature", "inf"], "argument --temperature: inf is out of range"),
    (["--length", "-5"], "argument --length: -5 is out of range: it must be at least 0"),
    (["--num-samples", "-1"], "argument --num-samples: -1 is out of range: it must be at least 0"),
    (["--seed", "x"], "argument --seed: 'x' is not an integer"),
])
def test_bad_values_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        sample.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1


def test_a_prime_with_uppercase_and_digits_is_cleaned_and_said(run_dir, capsys):
    lines, err = samples(capsys, "--checkpoint", run_dir, "--length", 5, "--prime", "The 2 ", "--seed", 1)
    assert lines[0].startswith("the two ") and len(lines[0]) == len("the two ") + 5
    assert "--prime cleaned with the text8 rules to 'the two '" in err


def test_the_smallest_temperature_is_argmax_not_nan(run_dir, capsys):
    cold, _ = samples(capsys, "--checkpoint", run_dir, "--length", 60, "--prime", "one ", "--temperature", 1e-6,
                      "--seed", 2)
    greedy, _ = samples(capsys, "--checkpoint", run_dir, "--length", 60, "--prime", "one ", "--argmax")
    assert cold == greedy


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and signals")
def test_output_into_a_closed_pipe_ends_quietly(run_dir):
    done = run_child(f"{sys.executable} sample.py --checkpoint {run_dir} --length 200 --num-samples 5000 "
                     f"--seed 1 | head -2", shell=True)
    assert len(done.stdout.splitlines()) == 2 and "Traceback" not in done.stderr
    assert "Error" not in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_prints_the_text_made_so_far(run_dir, signum):
    # however long the sample asked for, Ctrl-C (or kill) stops it at the next character, with what was made
    with child(["sample.py", "--checkpoint", run_dir, "--length", 10 ** 9, "--seed", 1, "--num-samples", 2,
                "--prime", "the "]) as run:
        run.wait_for("sample.py: generating", "stderr")
        run.send(signum)
        assert run.finish(timeout=60) == 128 + signum and "Traceback" not in run.stderr, run.stderr
    made = run.stdout.rstrip("\n")
    assert made.startswith("the ") and "\n" not in made and set(made) <= ALPHABET


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_reaches_the_tools_even_when_the_suite_ignores_it(run_dir):
    # A suite started as a background job (`pytest &`) ignores SIGINT, and a child inherits that: Python then
    # makes no KeyboardInterrupt of Ctrl-C, and the Ctrl-C tests would wait for nothing (their children kept
    # spinning). tests/helpers.child starts every child with Ctrl-C at its default.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with child(["sample.py", "--checkpoint", run_dir, "--length", 10 ** 9, "--seed", 1]) as run:
            run.wait_for("sample.py: generating", "stderr")
            run.send(signal.SIGINT)
            assert run.finish(timeout=60) == 130, run.stderr
    finally:
        signal.signal(signal.SIGINT, previous)
