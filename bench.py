"""Throughput of the project's own training loop, evaluation and sampling, in characters per second.

    python bench.py [--json PATH] [--memory] [--quick]

Training is measured through training.train() itself (batches, feeding, reporting, periodic validation
and checkpoints included) on a synthetic corpus: the median chars/s of its report periods after the first.
The bare Session.run step of the same graph is timed between the loop's report periods. The loop's
overhead is its own work per step (wall time outside the Session runs, measured inside the run) plus its
periodic validation (with samples and checkpoint), measured once and spread over the default 10,000 steps
between validations, as a share of the loop's step. Each configuration runs in its own process.
"""
import argparse
import contextlib
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import arch1_hidden
import arch2_output
import batches
import data
import training

ROOT = Path(__file__).resolve().parent
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but an "
         "they one two three have had were their first also new time after its who zero five some more").split()

ADD_TANH = ["--combine", "add", "--activation", "tanh", "--optimizer", "sgd", "--batch-size", "64",
            "--num-unrollings", "10"]
# (name, script, options): the configurations the README's Performance table reports
CONFIGS = [
    ("arch1 default (32x40, 100 nodes, concat relu, adadelta)", arch1_hidden, []),
    *[(f"arch1 add tanh sgd, 64x10, {n} nodes", arch1_hidden, ADD_TANH + ["--num-nodes", str(n)])
      for n in (64, 256, 1024)],
    ("arch2 default (64x20, 50 nodes, concat tanh, sgd)", arch2_output, []),
]


def synthetic_text(chars, seed=0):
    """About chars characters of random common words, text8 style."""
    rng = np.random.default_rng(seed)
    words = rng.choice(WORDS, size=chars // 4 + 10)
    return (" " + " ".join(words))[:chars]


def bare_step(module, argv):
    """(time_steps(n) -> seconds per step, chars per step): the bare Session.run training step of a
    configuration, fetching what the loop fetches, on pre-made mega-batches."""
    hp = training.defaults(module.HPARAMS)
    parsed = vars(training.build_parser(module.ARCHITECTURE, module.HPARAMS).parse_args(argv))
    hp.update({k: v for k, v in parsed.items() if k in hp})
    model = module.build_graph(hp)
    sess = training.tf.Session(graph=model.graph, config=training.session_config())
    sess.run(model.init)
    ids = np.random.default_rng(0).integers(0, 27, size=200_000).astype(np.uint8)
    gen = batches.BatchGenerator(ids, hp["batch_size"], hp["num_unrollings"])
    megabatches = [gen.next_ids() for _ in range(20)]
    step = training.make_step(sess, [model.train_op, model.loss, model.learning_rate, model.grad_norm],
                              [model.megabatch_ids])
    for m in megabatches:
        step(m)

    def time_steps(n):
        t0 = time.perf_counter()
        for i in range(n):
            step(megabatches[i % 20])
        return (time.perf_counter() - t0) / n

    return time_steps, hp["batch_size"] * hp["num_unrollings"]


def bench_training(corpus, out, module, argv, periods, period_seconds):
    """chars/s of the real loop, of the bare step, and the loop's overhead over the bare step, from a run of
    the given number of report periods, each about period_seconds long."""
    time_steps, chars_per_step = bare_step(module, argv)
    period = max(10, round(period_seconds / time_steps(20)))  # steps per report period
    steps = periods * period
    args = ["--data", str(corpus), "--out", str(out), "--num-steps", str(steps), "--summary-frequency",
            str(period), "--eval-frequency", str(steps // 2), *argv]
    # This machine's speed drifts over minutes, so the bare step is timed interleaved with the loop: one
    # bare period after each of the loop's report periods, outside the loop's timed periods. The first pair
    # holds TF's warm-up and is left out.
    pairs = []  # (seconds per step of a loop period, of the bare period timed right after it)
    bare_seconds = []  # wall time of those bare periods, inside the run but not the loop's own work

    def between_periods(speed):
        started = time.perf_counter()
        pairs.append((chars_per_step / speed, time_steps(period)))
        bare_seconds.append(time.perf_counter() - started)

    with contextlib.redirect_stdout(io.StringIO()):
        results = training.train(module.ARCHITECTURE, module.HPARAMS, module.build_graph, args, log=lambda s: None,
                                 between_periods=between_periods)
    loop_step, bare_step_seconds = np.median(pairs[1:], axis=0)
    # The loop's own work (batches, feeding, reporting) is measured inside the run, where drift cannot reach
    # it: the loop's wall time less its Session runs, its validation and the bare periods. The run validated
    # once, halfway; the default schedule validates every eval_frequency steps, so the measured cost of that
    # validation (with its samples and checkpoint) is spread over that many steps.
    own_per_step = (results["loop_seconds"] - results["loop_session_seconds"] - results["loop_eval_seconds"]
                    - sum(bare_seconds)) / steps
    validation_per_step = results["loop_eval_seconds"] / training.LOOP_OPTIONS["eval_frequency"][0]
    return {"chars_per_second": chars_per_step / loop_step,
            "bare_step_chars_per_second": chars_per_step / bare_step_seconds,
            "loop_overhead": (own_per_step + validation_per_step) / (loop_step + validation_per_step),
            "loop_own_us_per_step": own_per_step * 1e6,
            "validation_seconds": results["loop_eval_seconds"], "steps": steps}


def bench_eval_and_sampling(split_chars, sample_chars):
    """(eval chars/s over split_chars held-out characters, sampling chars/s) at Arch 1's default config."""
    hp = training.defaults(arch1_hidden.HPARAMS)
    model = arch1_hidden.build_graph(hp)
    sess = training.tf.Session(graph=model.graph, config=training.session_config())
    sess.run(model.init)
    ids = data.text_to_ids(synthetic_text(split_chars, seed=1))
    evaluator = training.Evaluator(sess, model)
    evaluator(ids[:300_000])  # warm-up
    t0 = time.perf_counter()
    evaluator(ids)
    eval_seconds = time.perf_counter() - t0
    sampler = training.Sampler(sess, model)
    rng = np.random.default_rng(0)
    sampler.generate(200, rng)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        sampler.generate(sample_chars, rng)
        times.append(time.perf_counter() - t0)
    sess.close()
    return split_chars / eval_seconds, eval_seconds, sample_chars / float(np.median(times))


def bench_memory(tmp, chars):
    """Peak resident memory (MB) of a default Arch 1 run of 300 steps on a synthetic corpus of chars characters."""
    corpus = Path(tmp) / "big.txt"
    with open(corpus, "w") as f:
        for i in range(0, chars, 10_000_000):
            f.write(synthetic_text(min(10_000_000, chars - i), seed=i))
    done = subprocess.run([sys.executable, str(ROOT / "arch1_hidden.py"), "--data", str(corpus), "--out",
                           str(Path(tmp) / "mem"), "--num-steps", "300", "--eval-frequency", "1000000"],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KB


def one(which, quick):
    """The figures of one configuration (an index into CONFIGS) or of "eval", measured in this process."""
    periods, period_seconds, split_chars, sample_chars = (3, 0.05, 20_000, 200) if quick else (12, 1.0, 5_000_000, 5000)
    if which == "eval":
        eval_speed, eval_seconds, sample_speed = bench_eval_and_sampling(split_chars, sample_chars)
        return {"eval_chars_per_second": eval_speed, "eval_seconds": eval_seconds, "eval_chars": split_chars,
                "sampling_chars_per_second": sample_speed}
    name, module, options = CONFIGS[int(which)]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(synthetic_text(2_000_000))
        return bench_training(corpus, Path(tmp) / "run", module, options, periods, period_seconds)


def in_subprocess(which, quick):
    """one(which) in a fresh Python, so that no configuration inherits another's memory, threads or warm-up."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", str(which)]
                          + (["--quick"] if quick else []), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"bench.py --one {which} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory of a default run on a 100M-character corpus (~2 min)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that the script runs")
    parser.add_argument("--one", metavar="WHICH", help=argparse.SUPPRESS)  # internal: one measurement, as JSON
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one(args.one, args.quick)))
        return 0
    indexes = [0, len(CONFIGS) - 1] if args.quick else range(len(CONFIGS))
    figures = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
               "training": {}}
    print(f"{'configuration':58} {'loop chars/s':>13} {'bare step':>11} {'overhead':>9}")
    for i in indexes:
        name = CONFIGS[i][0]
        result = figures["training"][name] = in_subprocess(i, args.quick)
        print(f"{name:58} {result['chars_per_second']:>13,.0f} {result['bare_step_chars_per_second']:>11,.0f} "
              f"{result['loop_overhead']:>9.1%}", flush=True)
    figures.update(in_subprocess("eval", args.quick))
    print(f"evaluation (arch1 default): {figures['eval_chars_per_second']:,.0f} chars/s, "
          f"{figures['eval_chars']:,} characters in {figures['eval_seconds']:.1f} s")
    print(f"sampling (arch1 default, batch 1): {figures['sampling_chars_per_second']:,.0f} chars/s")
    if args.memory:
        chars = 1_000_000 if args.quick else 100_000_000
        with tempfile.TemporaryDirectory() as tmp:
            figures["peak_memory_mb"] = bench_memory(tmp, chars)
        figures["memory_corpus_chars"] = chars
        print(f"peak memory of a default run on {chars:,} characters: {figures['peak_memory_mb']:,.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
