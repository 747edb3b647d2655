"""The post's claims, and the best recipe this project knows, as re-runnable sets of training runs over seeds.

    python experiments.py claims --seeds 3 [--data PATH]     # 24 runs: 12 to 20 minutes on 2 cores
    python experiments.py recipe --seeds 3 [--data PATH]     # 6 runs of 30 minutes
    python experiments.py claims --list                      # the plan, and what is done

Every run is an ordinary run folder, OUT/SET/CONFIG-seedK, trained by the architecture's script in its own
process (its output in train.log there). A finished run (results.json) is reused and an interrupted one is
resumed, so running the same command again continues where it stopped. Then OUT/SET holds summary.csv (one
row per run), summary.md (one row per configuration: mean and standard deviation over the seeds, and a
verdict line per claim) and validation.png (the validation curves, mean and range across seeds).
"""
import machinery.startup  # noqa: F401 -- first: Ctrl-C while the libraries load exits quietly
import contextlib
import csv
import json
import math
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import arch1_hidden
import arch2_output
import data
import plot
from machinery import folder as run_folders, ngram, settings
from machinery.command import STOP_SIGNALS, UserError, run_command


ROOT = Path(__file__).resolve().parent
NOTE = "bits/char of the last checkpoint on the full validation and test splits, mean ± standard deviation"
# A claim: (what it says, configuration A, configuration B, the results.json key compared). It holds when A's
# mean is lower (better) than B's by at least twice the standard error of the difference.
RECIPE = ["--num-steps", "1000000000", "--combine", "add", "--num-nodes", "512", "--batch-size", "64",
          "--num-unrollings", "50", "--optimizer", "adam", "--learning-rate", "0.002", "--warmup-steps", "1000",
          "--decay-minutes", "7.5", "--decay-rate", "0.5", "--no-staircase", "--eval-frequency", "2500",
          "--patience", "4"]
SETS = {
    "claims": {
        "about": "the post's claims at a fixed number of steps (--num-steps)",
        "budget": "num_steps",
        "configs": {
            "arch1-concat-relu-40": ("arch1_hidden", []),
            "arch1-add-relu-40": ("arch1_hidden", ["--combine", "add"]),
            "arch1-concat-tanh-40": ("arch1_hidden", ["--activation", "tanh"]),
            "arch1-concat-relu-20": ("arch1_hidden", ["--num-unrollings", "20"]),
            "arch1-concat-tanh-20": ("arch1_hidden", ["--activation", "tanh", "--num-unrollings", "20"]),
            "arch1-notebook-init": ("arch1_hidden", ["--init", "notebook"]),
            "arch2-teacher-forcing": ("arch2_output", []),
            "arch2-free-running": ("arch2_output", ["--no-teacher-forcing"]),
        },
        "claims": [
            ("concatenation works better than addition (Arch 1)",
             "arch1-concat-relu-40", "arch1-add-relu-40", "valid_bpc"),
            ("relu trains better with 40 unrollings than with 20",
             "arch1-concat-relu-40", "arch1-concat-relu-20", "valid_bpc"),
            ("tanh trains worse with 40 unrollings than with 20",
             "arch1-concat-tanh-20", "arch1-concat-tanh-40", "valid_bpc"),
            ("with 40 unrollings relu trains better than tanh",
             "arch1-concat-relu-40", "arch1-concat-tanh-40", "valid_bpc"),
            ("teacher forcing trains Arch 2 better, scored on its own outputs (the post's test time)",
             "arch2-teacher-forcing", "arch2-free-running", "valid_bpc"),
            ("teacher forcing trains Arch 2 better, scored feeding the true previous characters",
             "arch2-teacher-forcing", "arch2-free-running", "valid_bpc_teacher_forced"),
            ("the default initialisation trains better than the notebooks' (mean -0.1)",
             "arch1-concat-relu-40", "arch1-notebook-init", "valid_bpc"),
        ],
    },
    "recipe": {
        "about": "the best vanilla-RNN configuration this project knows against the post's defaults, on the "
                 "same time budget (--time-budget)",
        "budget": "time_budget",
        "configs": {
            "post-defaults": ("arch1_hidden", ["--num-steps", "1000000000", "--eval-frequency", "5000"]),
            # the best of the search on gcide8 (docs/recipe.md): add and relu, 512 wide, Adam 0.002 warmed up
            # over 1,000 steps (no explosion at the start) and halved every 7.5 minutes of training, whatever
            # the machine's speed
            "recipe": ("arch1_hidden", RECIPE),
        },
        "claims": [("the recipe beats the post's defaults in the same time",
                    "recipe", "post-defaults", "best_valid_bpc")],
    },
}
DEFAULT_STEPS = 30_001  # claims: 12.5 minutes for the set, 3 seeds, on jargon8 and 2 cores (docs/claims.md)
DEFAULT_BUDGET = 30.0  # recipe: minutes a run
SCRIPTS = {script.ARCHITECTURE: script for script in (arch1_hidden, arch2_output)}
FIELDS = ["config", "seed", "graph", "steps", "train_seconds", "valid_bpc", "test_bpc", "best_step", "best_valid_bpc",
          "best_test_bpc", "valid_bpc_teacher_forced", "test_bpc_teacher_forced", "folder"]


class ExperimentError(UserError):
    """A run failed or a folder does not fit the plan; the message says what to do, in one line."""


def plan(name, seeds, out, data_path, num_steps, time_budget, graph="fast", threads=0):
    """[(config, seed, folder, command)] of a set: every configuration with every seed, trained with graph
    ("fast" by default: the same model as the post's graph, proven equal by the tests, 1.4 to 2 times
    quicker) and threads CPU threads (0: the runs' default, every core)."""
    budget = (["--num-steps", str(num_steps), "--eval-frequency", str(max(1, num_steps // 10))]  # 10 validations
              if SETS[name]["budget"] == "num_steps" else ["--time-budget", str(time_budget)])
    runs = []
    for config, (script, options) in SETS[name]["configs"].items():
        for seed in range(1, seeds + 1):
            folder = Path(out) / name / f"{config}-seed{seed}"
            command = [f"{script}.py", *options, *budget, "--graph", graph, "--seed", str(seed), "--out", str(folder)]
            if threads:
                command += ["--threads", str(threads)]
            if data_path is not None:
                command += ["--data", str(data_path)]
            runs.append((config, seed, folder, command))
    return runs


def status(folder):
    """"done" (results.json), "partial" (a checkpoint to resume) or "to do"."""
    if (folder / "results.json").exists():
        return "done"
    return "partial" if (folder / "config.json").exists() else "to do"


def work_left(folder, timed, whole):
    """What a planned run has left to train of `whole`: seconds of its time budget if `timed`, else steps."""
    if status(folder) == "done":
        return 0
    try:
        done = json.loads((folder / "config.json").read_text()) if status(folder) == "partial" else {}
        spent = done.get("train_seconds", 0.0) - done.get("budget_start", 0.0) if timed else done.get("step", 0)
        return max(0, whole - spent)
    except (OSError, ValueError, TypeError, AttributeError):  # a damaged run: the run itself will say what is wrong
        return 0


def plan_totals(runs, timed, whole):
    """The line that ends --list: how many runs are done, partial and to do, and the training time left (a
    time budget's seconds; for steps, at the pace of the set's finished runs, when there are some)."""
    states = [status(folder) for _, _, folder, _ in runs]
    left = sum(work_left(folder, timed, whole) for _, _, folder, _ in runs)
    said = (f"{len(runs)} runs: {states.count('done')} done, {states.count('partial')} partial, "
            f"{states.count('to do')} to do")
    if timed:
        return f"{said}; about {left / 60:,.0f} min of training left (the budgets), plus each run's start and evaluation"
    paces = []
    for _, _, folder, _ in runs:
        if status(folder) == "done":
            with contextlib.suppress(ExperimentError, KeyError, TypeError, ZeroDivisionError):
                results = results_of(folder)
                paces.append(results["train_seconds"] / results["steps"])
    if not left:
        return f"{said}; nothing left to train"
    if not paces:
        return f"{said}; {left:,} steps left (no estimate of the time until a run has finished)"
    return (f"{said}; {left:,} steps left, about {left * statistics.fmean(paces) / 60:,.0f} min of training at "
            f"the pace of the {len(paces)} finished")


def _die_with_parent():
    """In the child, on Linux: SIGTERM when this process dies, however it dies (kill -9 included), so that the
    run saves and stops instead of training on alone in its own session."""
    import ctypes
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_one(folder, command):
    """Trains one run in its own process, resuming it if it was interrupted; its output goes to train.log.

    The run has its own process group, so a Ctrl-C (or a SIGTERM) reaches it once, forwarded from here: it
    saves a checkpoint and stops, and this process stops after it.
    """
    if status(folder) == "partial":
        command = [command[0], "--resume", *command[command.index("--out"):]]  # config.json holds the rest
    folder.mkdir(parents=True, exist_ok=True)
    posix = sys.platform != "win32"
    with open(folder / "train.log", "a") as log:
        child = subprocess.Popen([sys.executable, "-u", *command], cwd=ROOT, stdout=log, stderr=subprocess.PIPE,
                                 text=True, start_new_session=posix,
                                 preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        forward = lambda signum, frame: child.send_signal(signum) if posix else None  # Windows: it has it too
        previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
        try:
            _, err = child.communicate()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    if child.returncode in (128 + s for s in STOP_SIGNALS):
        raise KeyboardInterrupt
    if child.returncode:
        said = err.strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
        raise ExperimentError(f"{folder}: {said[0]} (the command: python {' '.join(command)})")


def check_reused(folder, command):
    """ExperimentError if a finished run was made with other settings than the plan's (e.g. --num-steps)."""
    module = SCRIPTS[command[0][:-len(".py")]]
    planned = vars(settings.build_parser(module.ARCHITECTURE, module.HPARAMS).parse_args(command[1:]))
    hparams = read_run_json(folder / "config.json").get("hparams")
    if not isinstance(hparams, dict):
        raise ExperimentError(f"{folder / 'config.json'} is damaged (no hparams); delete {folder} to train it again")
    for name, value in planned.items():
        if name in hparams and hparams[name] != value and name != "graph":  # either graph trains the same model
            raise ExperimentError(f"{folder} was trained with --{name.replace('_', '-')} {hparams[name]}, not "
                                  f"{value}; pass another --out for a set with other settings")


def read_run_json(path):
    """A finished run's config.json or results.json; ExperimentError if it is damaged."""
    try:
        value = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise ExperimentError(f"{path} is damaged ({getattr(e, 'strerror', None) or 'not JSON'}); delete its run "
                              f"folder {path.parent} to train it again") from None
    if not isinstance(value, dict):
        raise ExperimentError(f"{path} is damaged (not an object); delete its run folder {path.parent} to train it again")
    return value


def results_of(folder):
    return read_run_json(folder / "results.json")


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def verdict(a, b):
    """(difference of the means, its standard error, verdict) of a claim that a is lower than b."""
    (mean_a, _), (mean_b, _) = mean_std(a), mean_std(b)
    if mean_a is None or mean_b is None:
        return None, None, "not measured"
    difference = mean_a - mean_b
    if len(a) < 2 or len(b) < 2:
        return difference, None, "one seed: no verdict"
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    if abs(difference) < 2 * se:
        return difference, se, "within noise"
    return difference, se, "holds" if difference < 0 else "reversed"


def _cell(mean, std):
    if mean is None:
        return ""
    return f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")


NGRAM_ORDERS = (5, 6)  # the yardsticks in every summary: a vanilla RNN should beat the 5-gram


def ngram_rows(data_path, folder):
    """{order: scores} of Kneser-Ney n-grams on the set's corpus (evaluate.py --ngram), kept in ngram.json
    beside the summary and computed again only when the corpus changes."""
    cache = folder / "ngram.json"
    ids, source = data.load_corpus(data_path, log=lambda s: None)
    key = {"data": source, "chars": len(ids)}
    try:
        kept = json.loads(cache.read_text())
        if kept.get("corpus") == key:
            return {int(k): v for k, v in kept["orders"].items()}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass
    train, valid, test = data.split(ids)
    orders = {}
    for order in NGRAM_ORDERS:
        model = ngram.KneserNey(train, order)
        orders[order] = {"valid_bpc": round(model.bpc(valid), 4), "test_bpc": round(model.bpc(test), 4)}
    run_folders.write_json(cache, {"corpus": key, "orders": orders})
    return orders


def summarise(name, runs, out, command_line, data_path=None):
    """Writes summary.csv, summary.md and validation.png for the finished runs of a set; returns summary.md."""
    folder = Path(out) / name
    rows = []
    for config, seed, run_path, _ in runs:
        if status(run_path) == "done":
            results = results_of(run_path)
            rows.append({**{k: results.get(k) for k in FIELDS}, "config": config, "seed": seed,
                         "folder": str(run_path)})
    with open(folder / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    by_config = {config: [r for r in rows if r["config"] == config] for config in SETS[name]["configs"]}
    lines = [f"# {name}: {SETS[name]['about']}", "", f"`{command_line}`", "", f"{NOTE}; best: the checkpoint "
             f"that validated best (best/).", "",
             "| configuration | runs | graph | valid bpc | test bpc | best valid bpc | best test bpc | steps | "
             "training time (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for config, config_rows in by_config.items():
        if not config_rows:
            continue
        column = lambda key: mean_std([r[key] for r in config_rows])
        steps, seconds = column("steps")[0], column("train_seconds")[0]
        graphs = ", ".join(sorted({str(r["graph"] or "fast") for r in config_rows}))  # runs before 'graph': fast
        lines.append(f"| {config} | {len(config_rows)} | {graphs} | {_cell(*column('valid_bpc'))} | "
                     f"{_cell(*column('test_bpc'))}"
                     f" | {_cell(*column('best_valid_bpc'))} | {_cell(*column('best_test_bpc'))} | {steps:,.0f} | "
                     f"{seconds:,.1f} |")
        if config_rows[0]["valid_bpc_teacher_forced"] is not None:
            lines.append(f"| {config}, scored feeding the true previous characters | {len(config_rows)} | {graphs} | "
                         f"{_cell(*column('valid_bpc_teacher_forced'))} | {_cell(*column('test_bpc_teacher_forced'))}"
                         f" | | | | |")
    for order, scores in ngram_rows(data_path, folder).items():
        lines.append(f"| {order}-gram, Kneser-Ney (evaluate.py --ngram {order}) | | | {scores['valid_bpc']:.3f} | "
                     f"{scores['test_bpc']:.3f} | | | | |")
    lines += ["", "Verdicts. A claim that A is better (lower) than B holds when mean(A) - mean(B) is negative by at "
              "least twice its standard error, sqrt(var(A)/n(A) + var(B)/n(B)); a difference smaller than that is "
              "within noise; a positive one that large is reversed.", "",
              "| claim | A | B | compared | mean(A) - mean(B) | standard error | verdict |",
              "|---|---|---|---|---|---|---|"]
    for claim, a, b, key in SETS[name]["claims"]:
        difference, se, said = verdict([r[key] for r in by_config[a] if r[key] is not None],
                                       [r[key] for r in by_config[b] if r[key] is not None])
        lines.append(f"| {claim} | {a} | {b} | {key} | {'' if difference is None else f'{difference:+.3f}'} | "
                     f"{'' if se is None else f'{se:.3f}'} | **{said}** |")
    text = "\n".join(lines) + "\n"
    (folder / "summary.md").write_text(text)
    draw_curves(by_config, folder / "validation.png", name)
    return text


def draw_curves(by_config, path, name):
    """The validation bits/char of each configuration against steps and against training time: the mean over
    seeds, and their range (time: each seed's own curve, as seeds reach a step at different times)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(14, 5.5))
    for i, (config, config_rows) in enumerate(by_config.items()):
        scalars = [plot.read_scalars(r["folder"]) for r in config_rows]
        curves = [s.get("valid/bpc", ([], [])) for s in scalars]
        steps = sorted(set.intersection(*[set(s) for s, _ in curves])) if curves else []
        if not steps:
            continue
        values = [[dict(zip(*curve))[s] for s in steps] for curve in curves]
        mean = [statistics.fmean(v) for v in zip(*values)]
        by_step.plot(steps, mean, color=f"C{i}", marker=".", label=f"{config} ({len(curves)} seeds)")
        by_step.fill_between(steps, [min(v) for v in zip(*values)], [max(v) for v in zip(*values)],
                             color=f"C{i}", alpha=0.2)
        labelled = False
        for s, curve in zip(scalars, curves):
            seconds = dict(zip(*s.get("valid/train_seconds", ([], []))))
            points = [(seconds[step] / 60, v) for step, v in zip(*curve) if step in seconds]
            if points:  # runs made before the training time was logged have none
                by_time.plot(*zip(*points), color=f"C{i}", marker=".", linewidth=1,
                             label=None if labelled else config)
                labelled = True
    by_step.set_xlabel("step")
    by_time.set_xlabel("training time (minutes)")
    for ax in (by_step, by_time):
        ax.set_ylabel("validation bits/char")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    by_step.set_title(f"{name}: validation against steps, mean and range across seeds")
    by_time.set_title("against training time, each seed" if by_time.lines else
                      "against training time: runs made before it was logged")
    fig.tight_layout()
    plot.save_figure(fig, path, dpi=90)
    labels = [line.get_label() for line in by_time.lines if not line.get_label().startswith("_")]
    plt.close(fig)
    return labels


def build_parser():
    number = settings.checked_number
    parser = settings.OneLineParser(prog="experiments.py", description=settings.description(__doc__))
    parser.add_argument("set", choices=tuple(SETS), help="claims: the post's claims; recipe: the best "
                        "configuration against the post's defaults on a time budget")
    parser.add_argument("--data", metavar="PATH", help="the corpus every run trains on (default: text8)")
    parser.add_argument("--seeds", type=number(int, low=1, high=100), default=3, metavar="K",
                        help="runs of each configuration, with seeds 1..K (default 3)")
    parser.add_argument("--out", metavar="DIR", default="checkpoints/experiments",
                        help="where the sets' run folders and summaries go (default checkpoints/experiments)")
    parser.add_argument("--num-steps", type=number(int, low=1, high=10 ** 9), default=DEFAULT_STEPS, metavar="N",
                        help=f"claims: training steps of every run (default {DEFAULT_STEPS:,})")
    parser.add_argument("--time-budget", type=number(float, low=0.01, high=1e6), default=DEFAULT_BUDGET,
                        metavar="MINUTES", help=f"recipe: minutes of training a run (default {DEFAULT_BUDGET:g})")
    parser.add_argument("--graph", choices=("post", "fast"), default="fast",
                        help="the graph every run trains with (default fast: the post's model, proven equal by the "
                             "tests, 1.4 to 2 times quicker)")
    parser.add_argument("--threads", type=number(int, low=0, high=1024), default=0, metavar="N",
                        help="CPU threads of every run (default 0: every core). On a time budget a run's steps "
                             "depend on it: --threads 1 gives each run one core, the same whether the runs go one "
                             "at a time or two side by side")
    parser.add_argument("--list", action="store_true", help="print the plan and what is done, run nothing")
    return parser


def main(argv=None):
    """Trains (or lists) a set from the command line; returns the exit status."""
    return run_command("experiments.py", _main, argv)


def _main(argv):
    args = build_parser().parse_args(argv)
    runs = plan(args.set, args.seeds, args.out, args.data, args.num_steps, args.time_budget, args.graph,
                args.threads)
    if args.list:
        for i, (config, seed, folder, planned) in enumerate(runs, start=1):
            print(f"[{i}/{len(runs)}] {status(folder):7} python {' '.join(planned)}")
        print(plan_totals(runs, SETS[args.set]["budget"] == "time_budget",
                          60 * args.time_budget if SETS[args.set]["budget"] == "time_budget" else args.num_steps))
        return 0
    command_line = f"python experiments.py {args.set}" + (f" --data {args.data}" if args.data else "") + \
        f" --seeds {args.seeds} " + (f"--num-steps {args.num_steps}" if SETS[args.set]["budget"] == "num_steps"
                                     else f"--time-budget {args.time_budget:g}") + \
        (" --graph post" if args.graph == "post" else "") + (f" --threads {args.threads}" if args.threads else "")
    try:
        if args.data is not None:
            data.load_text(args.data, log=lambda s: None)  # a bad --data is said once, before any run
        (Path(args.out) / args.set).mkdir(parents=True, exist_ok=True)
        # Time left: a time budget is the time a run takes; steps take what this command's runs took so far.
        timed = SETS[args.set]["budget"] == "time_budget"
        whole = 60 * args.time_budget if timed else args.num_steps
        started, trained = time.time(), 0
        for i, (config, seed, folder, planned) in enumerate(runs, start=1):
            said = f"[{i}/{len(runs)}] {config}, seed {seed}"
            if status(folder) == "done":
                check_reused(folder, planned)
                print(f"{said}: done before, reused", flush=True)
                continue
            left = sum(work_left(f, timed, whole) for _, _, f, _ in runs[i - 1:])
            if timed:
                per_unit = 1.0  # a second of budget takes a second
            else:
                per_unit = (time.time() - started) / trained if trained else None
            eta = f", about {max(1, round(left * per_unit / 60))} min left" if per_unit else ""
            print(f"{said}: training ({status(folder)}){eta}", flush=True)
            this_run = work_left(folder, timed, whole)
            run_one(folder, planned)
            trained += this_run
            results = results_of(folder)
            print(f"{said}: valid {results['valid_bpc']:.3f}, test {results['test_bpc']:.3f} bits/char, "
                  f"{results['steps']:,} steps in {results['train_seconds']:,.0f} s", flush=True)
        print(summarise(args.set, runs, args.out, command_line, args.data), end="")
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue where it stopped", flush=True)
        return 128 + signal.SIGINT
    print(f"wrote {Path(args.out) / args.set / 'summary.md'}, summary.csv and validation.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
