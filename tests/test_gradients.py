"""gradients.py and plot.py: measured gradient norms against the maths, their files, and their errors."""
import csv

import numpy as np
import pytest

import arch1_hidden
import arch2_output
import gradients
import plot
import reference
from helpers import TINY, hparams, session, variables, write_corpus


@pytest.mark.parametrize("a", [0.5, 1.5])
def test_linear_recurrence_matches_the_analytic_norms(a):
    # U = 0, W = a I and a positive bias keep every pre-activation positive, so relu is the identity and
    # h_t = h_{t-1} W + b: then dL_T/dh_{T-k} = a^k dL_T/dh_T, with dL_T/dh_T = (softmax(h_T V + c) - y) V^T.
    n, horizon, streams = 5, 8, 4
    model = arch1_hidden.build_graph(hparams(arch1_hidden, combine="add", activation="relu", num_nodes=n))
    probe = gradients.add_measurement(model, horizon, warmup=0, streams=streams)
    sess = session(model)
    rng = np.random.default_rng(0)
    V = rng.standard_normal((n, 27)).astype(np.float32)
    for name, value in {"U": np.zeros((27, n)), "W": a * np.eye(n), "b": np.full(n, 2.0), "V": V,
                        "c": np.zeros(27)}.items():
        variables(model)[name].load(value.astype(np.float32), sess)
    ids = rng.integers(0, 27, size=(horizon + 1, streams)).astype(np.int32)
    norms = sess.run(probe["norms"], {probe["ids"]: ids})
    h = np.zeros((streams, n))
    for _ in range(horizon):
        h = h * a + 2.0
    g = (reference.softmax(h @ V) - np.eye(27)[ids[-1]]) @ V.T  # dL_T/dh_T of each stream
    expected = [a ** k * np.linalg.norm(g, axis=1).mean() for k in range(1, horizon + 1)]
    np.testing.assert_allclose(norms, expected, rtol=1e-4)
    assert (norms[-1] < norms[0]) == (a < 1)  # vanishing below 1, exploding above


def test_relu_and_tanh_at_initialisation_decay_as_the_jacobians_predict():
    # Each step back multiplies the gradient by W^T diag(act'); for a random direction its norm shrinks by
    # about sqrt(||W||_F^2 / n * mean(act'^2)): relu' is 0 or 1, tanh' = 1 - h^2.
    factors = {}
    for activation in ("relu", "tanh"):
        model = arch1_hidden.build_graph(hparams(arch1_hidden, combine="add", activation=activation,
                                                 num_nodes=64, seed=3))
        probe = gradients.add_measurement(model, 30, warmup=50, streams=64)
        sess = session(model)
        ids = np.random.default_rng(0).integers(0, 27, size=(81, 64)).astype(np.int32)
        norms, states = sess.run([probe["norms"], probe["states"]], {probe["ids"]: ids})
        W = sess.run(variables(model)["W"])
        slope = (states > 0).mean() if activation == "relu" else ((1 - states ** 2) ** 2).mean()
        predicted = np.sqrt((W ** 2).sum() / W.shape[0] * slope)
        measured = (norms[29] / norms[4]) ** (1 / 25)
        assert measured == pytest.approx(predicted, rel=0.05), activation
        factors[activation] = (predicted, measured)
    # At this initialisation tanh's derivative stays near 1 while relu zeroes half the units: tanh's
    # gradient reaches further back, and the measurements agree.
    assert factors["tanh"][0] > factors["relu"][0] and factors["tanh"][1] > factors["relu"][1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    corpus = write_corpus(tmp / "words.txt", words=6000)
    for name, module in (("one", arch1_hidden), ("two", arch2_output)):
        assert module.main(["--data", str(corpus), "--out", str(tmp / name), *TINY, "--num-steps", "40"]) == 0
    return tmp


def read_csv(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["k", "mean_grad_norm"]
    return [int(r[0]) for r in rows[1:]], [float(r[1]) for r in rows[1:]]


@pytest.mark.slow
def test_files_for_one_run_and_several(runs, tmp_path, capsys):
    assert gradients.main([str(runs / "one")]) == 0
    ks, norms = read_csv(runs / "one" / "gradients.csv")
    assert ks == list(range(1, 6)) and all(v > 0 and np.isfinite(v) for v in norms)  # num_unrollings 5
    assert (runs / "one" / "gradients.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "both.png"
    assert gradients.main([str(runs / "one"), str(runs / "two"), "--init", "--horizon", "12", "--plot", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 10_000
    for name in ("one", "two"):
        ks, norms = read_csv(runs / name / "gradients-init.csv")
        assert ks == list(range(1, 13))
    printed = capsys.readouterr().out
    assert "at initialisation" in printed and "arch2_output" in printed


def test_data_option_measures_on_another_text(runs, tmp_path):
    other = write_corpus(tmp_path / "other.txt", words=3000, seed=9)
    assert gradients.main([str(runs / "one"), "--data", str(other), "--plot", str(tmp_path / "g.png")]) == 0
    _, own = read_csv(runs / "one" / "gradients.csv")
    assert (tmp_path / "g.png").exists() and len(own) == 5


def test_gradient_errors_are_one_line(runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for argv, message in ([[str(tmp_path / "nowhere")], "no such run folder"],
                          [[str(tmp_path / "empty")], "holds no config.json"]):
        assert gradients.main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("gradients.py: error: ")
    with pytest.raises(SystemExit) as e:
        gradients.main([str(runs / "one"), "--horizon", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --horizon: 0 is out of range" in err and err.count("\n") == 1


def test_training_curves(runs, tmp_path, capsys):
    assert plot.main([str(runs / "one")]) == 0
    assert (runs / "one" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "curves.png"
    assert plot.main([str(runs / "one"), str(runs / "two"), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    scalars = plot.read_scalars(runs / "one")
    steps, values = scalars["train/loss"]
    assert steps == [10, 20, 30, 40] and all(0 < v < 5 for v in values)
    assert scalars["valid/bpc"][0] == [20, 40]
    # TensorBoard gets the same validation tags at every validation, the last one included
    assert scalars["valid/perplexity"][0] == [20, 40]
    # training and validation in bits/char on one axis, every line in a legend
    panels = plot.draw([("one", scalars)], tmp_path / "one.png")
    assert panels["bits per character"]["labels"] == ["one: training batches", "one: validation"]
    assert panels["gradient norm before clipping"]["labels"] == ["one: mean of the period",
                                                                 "one: largest of the period"]
    np.testing.assert_allclose(scalars["train/bpc"][1], np.array(values) / np.log(2), rtol=1e-5)
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    assert plot.main([str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "no TensorBoard event files" in err and err.count("\n") == 1


def test_curves_of_a_short_or_diverging_run_can_be_read(tmp_path):
    one_line = {"train/bpc": ([1000], [4.1e9]), "learning_rate": ([1000], [2.5]), "grad_norm/mean": ([1000], [1e11]),
                "valid/bpc": ([1000], [3.9])}  # one report line, a diverging loss, a rate that has not decayed
    panels = plot.draw([("one", one_line)], tmp_path / "one.png")
    bits, rate = panels["bits per character"], panels["learning rate"]
    assert bits["markers"][0] == "o"  # a single point is drawn
    assert bits["ylim"][1] <= plot.BITS_SHOWN  # one huge value does not flatten the rest
    assert rate["yscale"] == "linear"  # 2.5 -> 1.88 is no decade: plain numbers on a linear axis
    decaying = {"learning_rate": ([1, 100000, 200000], [2.5, 0.25, 0.025])}
    assert plot.draw([("two", decaying)], tmp_path / "two.png")["learning rate"]["yscale"] == "log"


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["gradients", "plot"])
def test_figure_paths_are_checked_before_the_work(tool, runs, tmp_path, capsys):
    main, flag, prog = ((gradients.main, "--plot", "gradients.py") if tool == "gradients"
                        else (plot.main, "--out", "plot.py"))
    cases = [(tmp_path / "missing" / "g.png", "the folder"), (tmp_path / "g.jpeg", "must end in .png, .pdf, .svg"),
             (tmp_path / "g", "must end in .png")]
    for path, message in cases:
        assert main([str(runs / "one"), flag, str(path)]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith(f"{prog}: error: "), err
        assert not path.exists()
    folder = tmp_path / "figures"  # a folder: the default name inside it, and said so
    folder.mkdir()
    assert main([str(runs / "one"), flag, str(folder)]) == 0
    name = "gradients.png" if tool == "gradients" else "curves.png"
    assert (folder / name).read_bytes()[:4] == b"\x89PNG" and f"wrote {folder / name}" in capsys.readouterr().out
    assert main([str(runs / "one"), flag, str(tmp_path / "g.svg")]) == 0
    assert (tmp_path / "g.svg").read_text().lstrip().startswith("<?xml") and not list(tmp_path.glob(".*tmp*"))
