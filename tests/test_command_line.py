"""Every tool's command line: an option must be spelt out, a mistyped one is named with the one meant, and --help
answers without loading TensorFlow."""
import pytest

import bench
import evaluate
import experiments
import gradients
import plot
import sample
import arch1_hidden
import arch2_output
from machinery import settings
from helpers import run_child

TOOLS = ["arch1_hidden.py", "arch2_output.py", "sample.py", "evaluate.py", "gradients.py", "experiments.py",
         "bench.py", "plot.py"]


def error_of(main, argv, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("main, argv, meant", [
    (arch1_hidden.main, ["--num-step", "10"], "--num-steps"),
    (arch2_output.main, ["--num-unroll", "10"], "--num-unrollings"),
    (sample.main, ["--len", "5"], "--length"),
    (evaluate.main, ["--data", "x", "--checkpoin", "y"], "--checkpoint"),
    (gradients.main, ["run", "--horizo", "5"], "--horizon"),
    (experiments.main, ["claims", "--seed", "2"], "--seeds"),
    (plot.main, ["run", "--ou", "x.png"], "--out"),
    (bench.main, ["--quic"], "--quick"),
])
def test_an_abbreviated_option_is_an_error_naming_the_option_meant(main, argv, meant, capsys):
    err = error_of(main, argv, capsys)
    assert f"unrecognized argument {argv[-2] if main is not bench.main else argv[-1]}: did you mean {meant}?" in err


def test_an_unknown_option_is_said_as_it_is(capsys):
    assert "unrecognized arguments: --foo 3" in error_of(arch1_hidden.main, ["--foo", "3"], capsys)


def test_experiments_without_a_set_names_the_sets(capsys):
    err = error_of(experiments.main, ["--list"], capsys)
    assert f"name the set to run: {', '.join(experiments.SETS)}" in err


def test_every_description_is_whole():
    for tool in (evaluate, gradients, plot, bench, experiments):
        said = settings.description(tool.__doc__)
        assert said.endswith((".", ")")) and "\n" not in said, tool.__name__


@pytest.mark.slow
@pytest.mark.parametrize("tool", TOOLS)
def test_help_answers_without_loading_tensorflow(tool):
    done = run_child(["-X", "importtime", tool, "--help"])  # -X importtime lists every module imported
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
    assert "tensorflow" not in done.stderr
