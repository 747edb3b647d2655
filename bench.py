"""Throughput of the project's own training loop, evaluation and sampling, in characters per second.

    python bench.py [--json PATH] [--memory] [--quick]

Training is measured from outside the real loop: training.train() runs on a synthetic corpus with its
training step wrapped (TRAIN_STEPS), and the wrapper times each step's Session run, cuts the run into
periods of equal step counts, and after each period times the same step function on ready mega-batches for
as many steps (the bare step), so that the two are measured interleaved. Loop speed and bare speed are
medians over the periods after the first (TF's warm-up). The loop's overhead is its own work per step (a
period's wall time less its Session runs) plus its periodic validation (with samples and checkpoint),
measured once and spread over the default 10,000 steps between validations, as a share of the loop's step.
Both graphs (--graph post and fast) are measured for each architecture's defaults. Each configuration runs
in its own process.
"""
import argparse
import contextlib
import io
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import arch1_hidden
import arch2_output
import data
import sessions
import settings
import training

try:  # peak memory from the OS: POSIX only (Windows has no resource module)
    import resource
except ImportError:
    resource = None

ROOT = Path(__file__).resolve().parent
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but an "
         "they one two three have had were their first also new time after its who zero five some more").split()

ADD_TANH = ["--combine", "add", "--activation", "tanh", "--optimizer", "sgd", "--batch-size", "64",
            "--num-unrollings", "10"]
# (name, script, options): the configurations the README's Performance table reports
CONFIGS = [
    ("arch1 default (32x40, 100 nodes, concat relu, adadelta), post graph", arch1_hidden, ["--graph", "post"]),
    ("arch1 default (32x40, 100 nodes, concat relu, adadelta), fast graph", arch1_hidden, ["--graph", "fast"]),
    *[(f"arch1 add tanh sgd, 64x10, {n} nodes, fast graph", arch1_hidden, ADD_TANH + ["--num-nodes", str(n)])
      for n in (64, 256, 1024)],
    ("arch2 default (64x20, 50 nodes, concat tanh, sgd), post graph", arch2_output, ["--graph", "post"]),
    ("arch2 default (64x20, 50 nodes, concat tanh, sgd), fast graph", arch2_output, ["--graph", "fast"]),
]
QUICK = [0, 1, 6]  # the configurations --quick runs


def synthetic_text(chars, seed=0):
    """About chars characters of random common words, text8 style."""
    rng = np.random.default_rng(seed)
    words = rng.choice(WORDS, size=chars // 4 + 10)
    return (" " + " ".join(words))[:chars]


class TimedSteps:
    """Wraps a graph's training-step factory (training.TRAIN_STEPS) to time the loop from outside."""

    def __init__(self, graph, period):
        self.graph, self.make_step, self.period = graph, training.TRAIN_STEPS[graph], period
        self.session = []  # seconds in each step's call
        self.loop = []  # wall time of each period of `period` steps in the loop
        self.bare = []  # the same step function, `period` calls on ready mega-batches, right after each period

    def __call__(self, sess, model):
        step = self.make_step(sess, model)
        shape = (model.hp["num_unrollings"] + 1, model.hp["batch_size"])
        ready = [np.random.default_rng(i).integers(0, 27, size=shape).astype(np.uint8) for i in range(20)]
        period_started = time.perf_counter()

        def timed(megabatch_ids, state):
            nonlocal period_started
            started = time.perf_counter()
            result = step(megabatch_ids, state)
            ended = time.perf_counter()
            self.session.append(ended - started)
            if len(self.session) % self.period == 0:
                self.loop.append(ended - period_started)
                bare_state = result[-1]
                for i in range(self.period):
                    *_, bare_state = step(ready[i % len(ready)], bare_state)
                self.bare.append(time.perf_counter() - ended)
                period_started = time.perf_counter()
            return result
        return timed


def bench_training(corpus, out, module, argv, periods, period_seconds):
    """chars/s of the real loop, of the bare step, and the loop's overhead, from a run of the given number of
    periods, each about period_seconds long."""
    hp = {**settings.defaults(module.HPARAMS),
          **vars(settings.build_parser(module.ARCHITECTURE, module.HPARAMS).parse_args(argv))}
    chars_per_step = hp["batch_size"] * hp["num_unrollings"]
    probe = TimedSteps(hp["graph"], 10 ** 9)  # times steps only, to size the periods
    run(module, corpus, out / "probe", argv + ["--num-steps", "30"], probe)
    period = max(10, round(period_seconds / float(np.median(probe.session[10:]))))
    steps = periods * period
    timed = TimedSteps(hp["graph"], period)
    run(module, corpus, out / "run", argv + ["--num-steps", str(steps), "--summary-frequency", str(period),
                                             "--eval-frequency", str(steps // 2)], timed)
    loop = np.array(timed.loop[1:])  # the first period holds TF's warm-up
    session = np.add.reduceat(np.array(timed.session), np.arange(0, steps, period))[1:]
    validating = periods // 2 - 1  # the validation after step steps // 2 falls in the next period: loop[1:][this]
    typical = np.delete(np.arange(len(loop)), validating)
    loop_step = float(np.median(loop[typical])) / period
    bare_step = float(np.median(timed.bare[1:])) / period
    own_per_step = float(np.sum(loop[typical] - session[typical])) / (len(typical) * period)
    validation_seconds = max(0.0, float(loop[validating] - np.median(loop[typical])))
    validation_per_step = validation_seconds / settings.LOOP_OPTIONS["eval_frequency"][0]
    return {"chars_per_second": chars_per_step / loop_step, "bare_step_chars_per_second": chars_per_step / bare_step,
            "loop_overhead": (own_per_step + validation_per_step) / (loop_step + validation_per_step),
            "loop_own_us_per_step": own_per_step * 1e6, "validation_seconds": validation_seconds, "steps": steps}


def run(module, corpus, out, argv, timed):
    """training.train() of a configuration with its training step wrapped by timed, quietly."""
    training.TRAIN_STEPS[timed.graph] = timed
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            training.train(module.ARCHITECTURE, module.HPARAMS, module.GRAPHS,
                           ["--data", str(corpus), "--out", str(out), *argv], log=lambda s: None)
    finally:
        training.TRAIN_STEPS[timed.graph] = timed.make_step


def bench_eval_and_sampling(split_chars, sample_chars):
    """(eval chars/s over split_chars held-out characters, sampling chars/s) at Arch 1's default config."""
    model = arch1_hidden.GRAPHS["fast"](settings.defaults(arch1_hidden.HPARAMS))
    sess = sessions.new_session(model)
    sess.run(model.init)
    ids = data.text_to_ids(synthetic_text(split_chars, seed=1))
    evaluator = sessions.Evaluator(sess, model)
    evaluator(ids[:300_000])  # warm-up
    t0 = time.perf_counter()
    evaluator(ids)
    eval_seconds = time.perf_counter() - t0
    sampler = sessions.Sampler(sess, model)
    rng = np.random.default_rng(0)
    sampler.generate(200, rng)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        sampler.generate(sample_chars, rng)
        times.append(time.perf_counter() - t0)
    sess.close()
    return split_chars / eval_seconds, eval_seconds, sample_chars / float(np.median(times))


def peak_memory_mb(tmp, chars):
    """Peak resident memory (MB) of a default Arch 1 run of 300 steps on a synthetic corpus of chars
    characters, or None where the OS does not report it (Windows)."""
    corpus = Path(tmp) / "big.txt"
    with open(corpus, "w") as f:
        for i in range(0, chars, 10_000_000):
            f.write(synthetic_text(min(10_000_000, chars - i), seed=i))
    done = subprocess.run([sys.executable, str(ROOT / "arch1_hidden.py"), "--data", str(corpus), "--out",
                           str(Path(tmp) / "mem"), "--num-steps", "300", "--eval-frequency", "1000000"],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr)
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024  # macOS reports bytes, Linux KB


def one(which, quick):
    """The figures of one configuration (an index into CONFIGS) or of "eval", measured in this process."""
    periods, period_seconds, split_chars, sample_chars = (4, 0.05, 20_000, 200) if quick else (12, 1.0, 5_000_000, 5000)
    if which == "eval":
        eval_speed, eval_seconds, sample_speed = bench_eval_and_sampling(split_chars, sample_chars)
        return {"eval_chars_per_second": eval_speed, "eval_seconds": eval_seconds, "eval_chars": split_chars,
                "sampling_chars_per_second": sample_speed}
    name, module, options = CONFIGS[int(which)]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(synthetic_text(2_000_000))
        return bench_training(corpus, Path(tmp), module, options, periods, period_seconds)


def in_subprocess(which, quick):
    """one(which) in a fresh Python, so that no configuration inherits another's memory, threads or warm-up."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", str(which)]
                          + (["--quick"] if quick else []), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"bench.py --one {which} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = settings.OneLineParser(prog="bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory of a default run on a 100M-character corpus (~2 min)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--one", metavar="WHICH", help=argparse.SUPPRESS)  # internal: one measurement, as JSON
    args = parser.parse_args(argv)
    if args.one is not None and args.one != "eval" and args.one not in map(str, range(len(CONFIGS))):
        parser.error(f"--one takes eval or a configuration's number from 0 to {len(CONFIGS) - 1}, not {args.one!r}")
    if args.one is not None:
        print(json.dumps(one(args.one, args.quick)))
        return 0
    figures = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {sessions.cores()} cores",
               "training": {}}
    print(f"{'configuration':68} {'loop chars/s':>13} {'bare step':>11} {'overhead':>9}")
    for i in QUICK if args.quick else range(len(CONFIGS)):
        name = CONFIGS[i][0]
        result = figures["training"][name] = in_subprocess(i, args.quick)
        print(f"{name:68} {result['chars_per_second']:>13,.0f} {result['bare_step_chars_per_second']:>11,.0f} "
              f"{result['loop_overhead']:>9.1%}", flush=True)
    figures.update(in_subprocess("eval", args.quick))
    print(f"evaluation (arch1 default, fast graph): {figures['eval_chars_per_second']:,.0f} chars/s, "
          f"{figures['eval_chars']:,} characters in {figures['eval_seconds']:.1f} s")
    print(f"sampling (arch1 default, fast graph, batch 1): {figures['sampling_chars_per_second']:,.0f} chars/s")
    if args.memory:
        chars = 1_000_000 if args.quick else 100_000_000
        with tempfile.TemporaryDirectory() as tmp:
            figures["peak_memory_mb"] = peak_memory_mb(tmp, chars)
        figures["memory_corpus_chars"] = chars
        if figures["peak_memory_mb"] is None:
            print("peak memory: not measured here (this OS does not report it to Python)")
        else:
            print(f"peak memory of a default run on {chars:,} characters: {figures['peak_memory_mb']:,.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(settings.run_command("bench.py", main))
