"""experiments.py on a tiny set (stopped and continued), its verdict rule; evaluate.py; --time-budget;
--init notebook; the best checkpoint's scores in results.json."""
import csv
import json
import math
import os
import re
import signal
import threading

import numpy as np
import pytest

import arch1_hidden
import arch2_output
import data
import evaluate
import experiments
from machinery import ngram, sessions, settings
from helpers import ROOT, TINY, hparams, load_run, wait_until, session, variables, write_corpus



@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus") / "words.txt", words=6000)


TINY_SET = {
    "about": "a tiny set for the tests",
    "budget": "num_steps",
    "configs": {"concat": ("arch1_hidden", TINY), "add": ("arch1_hidden", [*TINY, "--combine", "add"])},
    "claims": [("concat beats add", "concat", "add", "valid_bpc")],
}


def test_verdict_rule():
    assert experiments.verdict([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])[2] == "holds"
    assert experiments.verdict([2.0, 2.1, 1.9], [1.0, 1.1, 0.9])[2] == "reversed"
    difference, se, said = experiments.verdict([1.0, 1.2, 0.8], [1.1, 1.3, 0.9])
    assert said == "within noise" and difference == pytest.approx(-0.1)
    assert se == pytest.approx(math.sqrt(0.04 / 3 + 0.04 / 3))  # sample variances of 0.04
    assert experiments.verdict([1.0], [2.0])[2] == "one seed: no verdict"
    assert experiments.verdict([], [2.0])[2] == "not measured"


@pytest.mark.slow
def test_a_tiny_set_stopped_and_continued(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(experiments.SETS, "tiny", TINY_SET)
    out = tmp_path / "experiments"
    args = ["tiny", "--data", str(corpus), "--seeds", "2", "--num-steps", "3000", "--out", str(out)]
    assert experiments.main(args + ["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 5 and listed[0].startswith("[1/4] to do   python arch1_hidden.py")
    assert listed[-1] == "4 runs: 0 done, 0 partial, 4 to do; 12,000 steps left (no estimate of the time until a run has finished)"
    second = out / "tiny" / "concat-seed2"

    def ctrl_c_once_the_second_run_trains():  # as a user would, at the terminal
        wait_until(lambda: (second / "train.log").exists() and "step " in (second / "train.log").read_text(),
                   what="the second run's first report line")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_once_the_second_run_trains, daemon=True).start()
    assert experiments.main(args) == 130
    printed = capsys.readouterr().out
    assert "[1/4] concat, seed 1: valid" in printed and "run the same command again" in printed
    assert experiments.status(second) == "partial"  # its Ctrl-C saved a checkpoint
    partial_step = json.loads((second / "config.json").read_text())["step"]
    assert 0 < partial_step < 3000

    assert experiments.main(args) == 0
    printed = capsys.readouterr().out
    assert "[1/4] concat, seed 1: done before, reused" in printed
    assert "[2/4] concat, seed 2: training (partial)" in printed
    assert "resumed" in (second / "train.log").read_text()
    assert experiments.main(args + ["--list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "4 runs: 4 done, 0 partial, 0 to do; nothing left to train"
    with open(out / "tiny" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["config"], r["seed"], r["steps"]) for r in rows] == [
        ("concat", "1", "3000"), ("concat", "2", "3000"), ("add", "1", "3000"), ("add", "2", "3000")]
    summary = (out / "tiny" / "summary.md").read_text()
    train, valid, test = data.split(data.load_corpus(corpus, log=lambda s: None)[0])
    five = ngram.KneserNey(train, 5)  # the yardstick's row: its bits/char on the same splits
    assert f"| 5-gram, Kneser-Ney (evaluate.py --ngram 5) | | | {five.bpc(valid):.3f} | {five.bpc(test):.3f} |" in summary
    assert "| 6-gram, Kneser-Ney" in summary and (out / "tiny" / "ngram.json").exists()
    assert "| concat | 2 | fast | " in summary and "| concat beats add | concat | add | valid_bpc |" in summary
    assert any(f"**{v}**" in summary for v in ("holds", "reversed", "within noise"))
    assert (out / "tiny" / "validation.png").read_bytes()[:4] == b"\x89PNG"
    # against training time as well as steps: every run logs its training time at each validation
    by_config = {config: [r for r in rows if r["config"] == config] for config in ("concat", "add")}
    assert experiments.draw_curves(by_config, tmp_path / "v.png", "tiny") == ["concat", "add"]
    # a set's runs made with other settings are not mixed in
    assert experiments.main(["tiny", "--data", str(corpus), "--seeds", "1", "--num-steps", "100",
                             "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "concat-seed1 was trained with --" in err and "pass another --out" in err and err.count("\n") == 1


@pytest.mark.slow
def test_a_set_on_a_time_budget(corpus, tmp_path, capsys, monkeypatch):
    configs = {name: (script, [*options, "--num-steps", "100000000"])
               for name, (script, options) in TINY_SET["configs"].items()}
    monkeypatch.setitem(experiments.SETS, "budget", {**TINY_SET, "budget": "time_budget", "configs": configs})
    out = tmp_path / "experiments"
    assert experiments.main(["budget", "--data", str(corpus), "--seeds", "1", "--time-budget", "0.02",
                             "--out", str(out), "--threads", "1"]) == 0
    for name in ("concat", "add"):
        results = json.loads((out / "budget" / f"{name}-seed1" / "results.json").read_text())
        assert results["stopped_by_time_budget"] and results["time_budget"] == 0.02
        assert json.loads((out / "budget" / f"{name}-seed1" / "config.json").read_text())["hparams"]["threads"] == 1
    printed = capsys.readouterr().out
    assert "one seed: no verdict" in printed
    assert "`python experiments.py budget --data " in printed and "--time-budget 0.02 --threads 1`" in printed
    assert "[1/2] concat, seed 1: training (to do), about 1 min left" in printed  # 2 x 1.2 s of budget, rounded up


def test_the_list_ends_with_the_totals_and_the_time_left(tmp_path):
    done, partial = tmp_path / "done", tmp_path / "partial"
    for folder in (done, partial):
        folder.mkdir()
    (done / "results.json").write_text(json.dumps({"train_seconds": 240.0, "steps": 2000}))  # 0.12 s a step
    (partial / "config.json").write_text(json.dumps({"step": 500}))
    runs = [("a", 1, done, []), ("a", 2, partial, []), ("b", 1, tmp_path / "new", [])]
    assert experiments.plan_totals(runs, False, 2000) == (
        "3 runs: 1 done, 1 partial, 1 to do; 3,500 steps left, about 7 min of training at the pace of the 1 finished")
    assert experiments.plan_totals(runs, True, 1800).startswith("3 runs: 1 done, 1 partial, 1 to do; about 60 min")


def test_time_left_counts_what_a_partial_run_has_done(tmp_path):
    folder = tmp_path / "run"
    assert experiments.work_left(folder, True, 1800) == 1800  # seconds of --time-budget 30
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"train_seconds": 1750.0, "budget_start": 100.0}))
    assert experiments.work_left(folder, True, 1800) == 150  # 1,650 s of this budget spent
    (folder / "config.json").write_text(json.dumps({"step": 10000}))
    assert experiments.work_left(folder, False, 30001) == 20001  # steps
    (folder / "config.json").write_text("{damaged")
    assert experiments.work_left(folder, False, 30001) == 0  # the run says what is wrong when it comes to it
    (folder / "results.json").write_text("{}")
    assert experiments.work_left(folder, False, 30001) == 0  # done


def test_the_claims_set_has_every_claim_of_the_issue():
    configs = experiments.SETS["claims"]["configs"]
    assert all(a in configs and b in configs for _, a, b, _ in experiments.SETS["claims"]["claims"])
    runs = experiments.plan("claims", 3, "out", "corpus.txt", 30001, 30)
    assert len(runs) == 3 * len(configs) and runs[0][3][-2:] == ["--data", "corpus.txt"]
    recipe = experiments.plan("recipe", 1, "out", None, 30001, 30)
    assert all("--time-budget" in command and "30" in command for *_, command in recipe)


def test_sets_train_the_fast_graph_unless_told_otherwise(capsys):
    assert experiments.main(["claims", "--seeds", "1", "--list", "--out", "nowhere"]) == 0
    default = capsys.readouterr().out.splitlines()
    assert experiments.main(["claims", "--seeds", "1", "--list", "--out", "nowhere", "--graph", "post"]) == 0
    post = capsys.readouterr().out.splitlines()
    assert all("--graph fast" in line for line in default if line.startswith("["))
    assert all("--graph post" in line for line in post if line.startswith("["))
    assert len([line for line in post if line.startswith("[")]) == len(experiments.SETS["claims"]["configs"])
    assert not any("--threads" in line for line in default + post)  # the runs' own default: every core
    assert experiments.main(["recipe", "--seeds", "1", "--list", "--out", "nowhere", "--threads", "1"]) == 0
    planned = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(planned) == 2 and all(line.endswith(" --threads 1") for line in planned)


@pytest.fixture(scope="module")
def runs(corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    for name, module in (("one", arch1_hidden), ("two", arch2_output)):
        assert module.main(["--data", str(corpus), "--out", str(tmp / name), *TINY, "--num-steps", "60"]) == 0
    return tmp


def test_evaluate_scores_any_text(runs, corpus, tmp_path, capsys):
    ids = data.text_to_ids(corpus.read_text())
    assert evaluate.main(["--checkpoint", str(runs / "one"), "--data", str(corpus), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["chars"] == len(ids) - 1 and scores["step"] == 60 and scores["architecture"] == "arch1_hidden"
    assert scores["perplexity"] == pytest.approx(2 ** scores["bpc"], rel=1e-3) and 1 < scores["bpc"] < 4.8
    config, model, sess = load_run(runs / "one")
    assert scores["bpc"] == pytest.approx(sessions.Evaluator(sess, model)(ids) / math.log(2), abs=1e-4)
    assert evaluate.main(["--checkpoint", str(runs / "two"), "--data", str(corpus)]) == 0
    own = capsys.readouterr().out
    assert evaluate.main(["--checkpoint", str(runs / "two"), "--data", str(corpus), "--teacher-forced"]) == 0
    forced = capsys.readouterr().out
    assert "bits/char" in own and "teacher-forced" in forced and own.split()[1] != forced.split()[1]


def test_evaluate_errors_are_one_line(runs, tmp_path, capsys):
    (tmp_path / "a.txt").write_text("a b")
    for argv, message in ((["--checkpoint", str(runs / "one"), "--data", str(tmp_path / "a.txt"), "--teacher-forced"],
                           "--teacher-forced is for Arch 2"),
                          (["--checkpoint", str(tmp_path / "none"), "--data", str(tmp_path / "a.txt")],
                           "no such run folder"),
                          (["--checkpoint", str(runs / "one"), "--data", str(tmp_path / "missing.txt")],
                           "no such file")):
        assert evaluate.main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("evaluate.py: error: "), err


def test_time_budget_ends_the_run_and_resume_continues_with_what_is_left(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "100000000",
                              "--time-budget", "0.02"]) == 0  # 1.2 s
    results = json.loads((out / "results.json").read_text())
    assert results["stopped_by_time_budget"] and results["steps"] % 10 == 0 and 0 < results["steps"] < 10 ** 8
    printed = capsys.readouterr().out
    assert "the time budget of 0.02 minutes is spent" in printed
    # the report lines follow the budget: no step total, the budget's time spent and what is left of it
    lines = [line for line in printed.splitlines() if line.startswith("step ")]
    assert lines and all("/" not in line.split("loss")[0] for line in lines)
    assert all(re.search(r"0:0\d elapsed of the 0\.02-minute budget, 0:0\d left$", line) for line in lines)
    assert json.loads((out / "config.json").read_text())["hparams"]["time_budget"] == 0.02
    assert arch1_hidden.main(["--out", str(out), "--resume"]) == 1
    assert "has spent its time budget (0.02 minutes)" in capsys.readouterr().err
    assert arch1_hidden.main(["--out", str(out), "--resume", "--time-budget", "0.02"]) == 0  # a new budget
    again = json.loads((out / "results.json").read_text())
    assert again["stopped_by_time_budget"] and again["steps"] > results["steps"]
    assert arch1_hidden.main(["--out", str(out), "--resume", "--time-budget", "0",
                              "--num-steps", str(again["steps"] + 20)]) == 0
    assert json.loads((out / "results.json").read_text())["steps"] == again["steps"] + 20


def report_rates(printed):
    return [float(line.split(" lr ")[1].split()[0]) for line in printed.splitlines() if line.startswith("step ")]


@pytest.mark.parametrize("module, graph", [(arch1_hidden, "post"), (arch2_output, "fast")])
def test_decay_minutes_anneal_with_the_clock_and_resume_where_they_were(module, graph, corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert module.main(["--data", str(corpus), "--out", str(out), *TINY, "--summary-frequency", "25",
                        "--num-steps", "100000000", "--learning-rate", "1", "--decay-rate", "0.5", "--no-staircase",
                        "--decay-minutes", "0.01", "--graph", graph, "--time-budget", "0.05"]) == 0  # halved every 0.6 s
    rates = report_rates(capsys.readouterr().out)
    seconds = json.loads((out / "config.json").read_text())["train_seconds"]  # 3 s, and a little
    # the clock is set once a second: the last rate is the one of at most a second before the end
    assert 0.5 ** ((seconds + 0.2) / 0.6) <= rates[-1] <= 0.5 ** ((seconds - 1.3) / 0.6) < 0.2
    assert rates == sorted(rates, reverse=True)
    assert module.main(["--out", str(out), "--resume", "--time-budget", "0.02"]) == 0
    resumed = report_rates(capsys.readouterr().out)
    assert resumed[0] <= rates[-1]  # the schedule goes on from where it was, not from the start


@pytest.mark.parametrize("module", [arch1_hidden, arch2_output])
def test_the_notebooks_initialisation(module):
    for graph in ("post", "fast"):
        model = module.GRAPHS[graph](hparams(module, init="notebook", num_nodes=64))
        weights = session(model).run({name: v for v in model.graph.get_collection("trainable_variables")
                                      for name in [v.op.name] if name in "UWV"})
        for name, value in weights.items():  # truncated_normal(shape, -0.1, 0.1): mean -0.1, stddev 0.1
            assert value.mean() == pytest.approx(-0.1, abs=0.01), name
            assert np.abs(value + 0.1).max() <= 0.2 + 1e-6  # truncated at two standard deviations
    default = module.build_graph(hparams(module, num_nodes=64))
    assert abs(session(default).run(variables(default)["U"]).mean()) < 0.05


@pytest.mark.parametrize("combine", ["add", "concat"])
def test_the_recurrent_initialisations(combine):
    n = 8
    rows = 2 * n if combine == "concat" else n
    drawn = {}
    for recurrent_init in ("default", "orthogonal", "identity"):
        for graph in ("post", "fast"):
            model = arch1_hidden.GRAPHS[graph](hparams(arch1_hidden, num_nodes=n, combine=combine, seed=3,
                                                       recurrent_init=recurrent_init))
            drawn[recurrent_init, graph] = session(model).run({k: v for k, v in variables(model).items() if k in "UWV"})
        post, fast = drawn[recurrent_init, "post"], drawn[recurrent_init, "fast"]
        for name in "UWV":  # both graphs draw the same weights, and U and V as the default draws them
            np.testing.assert_array_equal(fast[name], post[name], err_msg=name)
            if name != "W":
                np.testing.assert_array_equal(post[name], drawn["default", "post"][name], err_msg=name)
        assert post["W"].shape == (rows, n)
    orthogonal, identity = drawn["orthogonal", "post"]["W"], drawn["identity", "post"]["W"]
    np.testing.assert_allclose(orthogonal.T @ orthogonal, np.eye(n), atol=1e-5)  # orthonormal columns
    assert np.abs(orthogonal - np.eye(rows, n)).max() > 0.05  # a random one, not the identity
    np.testing.assert_array_equal(identity, np.eye(rows, n))
    assert not np.allclose(drawn["default", "post"]["W"].T @ drawn["default", "post"]["W"], np.eye(n), atol=0.1)


def test_arch2_has_no_recurrent_init(capsys):
    with pytest.raises(SystemExit):
        settings.build_parser(arch2_output.ARCHITECTURE, arch2_output.HPARAMS).parse_args(["--recurrent-init", "identity"])
    assert "unrecognized arguments: --recurrent-init identity" in capsys.readouterr().err


def test_results_score_the_best_checkpoint_as_well_as_the_last(corpus, tmp_path, monkeypatch):
    real_call, calls = sessions.Evaluator.__call__, []

    def first_validation_looks_best(self, ids, teacher_forced=False):
        calls.append(len(ids))
        return 0.1 if len(calls) == 1 else real_call(self, ids, teacher_forced)

    monkeypatch.setattr(sessions.Evaluator, "__call__", first_validation_looks_best)
    out = tmp_path / "run"
    assert arch1_hidden.main(["--data", str(corpus), "--out", str(out), *TINY, "--num-steps", "60",
                              "--optimizer", "adam", "--learning-rate", "0.02"]) == 0
    monkeypatch.undo()
    results = json.loads((out / "results.json").read_text())
    assert results["best_step"] == 20 and results["steps"] == 60
    best = evaluate.evaluate(out / "best", corpus, log=lambda s: None)
    assert best["step"] == 20
    test_ids = data.split(data.text_to_ids(corpus.read_text()))[2]
    config, model, sess = load_run(out / "best")
    assert results["best_test_bpc"] == pytest.approx(sessions.Evaluator(sess, model)(test_ids) / math.log(2), abs=1e-4)
    assert results["best_test_bpc"] > results["test_bpc"]  # 40 more steps of adam did help


def test_the_recipe_does_not_explode_at_the_start(tmp_path, capsys):
    """Adam moves each of W's 512 x 512 entries by about the learning rate at each early step, whatever the
    gradient's size, and coherently (relu states are never negative): the relu state then explodes. Warmed up,
    the recipe's first steps on the shipped text stay bounded (docs/recipe.md)."""
    out = tmp_path / "run"
    recipe = list(experiments.RECIPE)
    recipe[recipe.index("--num-steps") + 1] = "60"  # the worst comes near step 50: the sum of the rates so far
    assert arch1_hidden.main(["--data", str(ROOT / "data" / "jargon8.zip"), "--out", str(out), "--graph", "fast",
                              *recipe, "--summary-frequency", "1", "--eval-frequency", "1000"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    losses = [float(line.split(" loss ")[1].split()[0]) for line in lines]
    grads = [float(line.split(" grad ")[1].split()[0]) for line in lines]
    assert len(losses) == 60 and max(losses) < 20 and max(grads) < 1000, (max(losses), max(grads))
