"""Throughput of the project's own training loop, evaluation and sampling, in characters per second.

    python bench.py [--json PATH] [--memory] [--quick]

Training is measured on the real loop: the script's session_loop() runs on a synthetic corpus, and every step's
end (its call of Run.record) is timed from outside. The run is cut into periods of equal step counts, each
about a second long; the figure is the median over the periods after the first (TF's warm-up). No validation
falls inside the timed steps. Both graphs (--graph post and fast) are measured for each architecture's
defaults, beside a baseline: the post's graph run the post's own way (getWindowBatch and the mega batches
built one character at a time in Python loops, as its listing does, float one-hot feeds, TensorFlow's default
Session), written from the description of the author's code. Each configuration runs in its own process.
"""
import machinery.startup  # noqa: F401 -- first: Ctrl-C while the libraries load exits quietly
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
from batches import Batch
from machinery import command, folder, sessions, settings, training
from machinery.tf1 import tf

try:  # peak memory from the OS: POSIX only (Windows has no resource module)
    import resource
except ImportError:
    resource = None

ROOT = Path(__file__).resolve().parent
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but an "
         "they one two three have had were their first also new time after its who zero five some more").split()

ADD_TANH = ["--combine", "add", "--activation", "tanh", "--optimizer", "sgd", "--batch-size", "64",
            "--num-unrollings", "10"]
# (name, script, options): the configurations docs/performance.md reports; "listing" is the baseline
DEFAULT1, DEFAULT2 = "arch1 default (32x40, 100 nodes, concat relu, adadelta)", "arch2 default (64x20, 50 nodes, concat tanh, sgd)"
CONFIGS = [
    (f"{DEFAULT1}, the post's way", arch1_hidden, "listing"),
    (f"{DEFAULT1}, post graph", arch1_hidden, ["--graph", "post"]),
    (f"{DEFAULT1}, fast graph", arch1_hidden, ["--graph", "fast"]),
    *[(f"arch1 add tanh sgd, 64x10, {n} nodes, fast graph", arch1_hidden, ADD_TANH + ["--num-nodes", str(n), "--graph", "fast"])
      for n in (64, 256, 1024)],
    (f"{DEFAULT2}, the post's way", arch2_output, "listing"),
    (f"{DEFAULT2}, post graph", arch2_output, ["--graph", "post"]),
    (f"{DEFAULT2}, fast graph", arch2_output, ["--graph", "fast"]),
]
QUICK = [0, 1, 2, 8]  # the configurations --quick runs


def synthetic_text(chars, seed=0):
    """About chars characters of random common words, text8 style."""
    rng = np.random.default_rng(seed)
    words = rng.choice(WORDS, size=chars // 4 + 10)
    return (" " + " ".join(words))[:chars]


class StepClock:
    """Times the real loop from outside: the moment each step ends (Run.record, which both loops call)."""

    def __enter__(self):
        self.ends, self._record = [], training.Run.record

        def record(run, *args):
            self._record(run, *args)
            self.ends.append(time.perf_counter())
        training.Run.record = record
        return self

    def __exit__(self, *exc):
        training.Run.record = self._record


def median_speed(ends, period, chars_per_step):
    """chars/s: the median over the periods of `period` steps after the first (TF's warm-up)."""
    marks = np.array(ends[::period])
    return chars_per_step * period / float(np.median(np.diff(marks)[1:]))


def bench_training(corpus, out, module, argv, periods, period_seconds):
    """chars/s of the script's real loop, from a run of the given number of periods, each about
    period_seconds long."""
    hp = {**settings.defaults(module.HPARAMS),
          **vars(settings.build_parser(module.ARCHITECTURE, module.HPARAMS).parse_args(argv))}
    chars_per_step = hp["batch_size"] * hp["num_unrollings"]
    quiet = ["--data", str(corpus), "--eval-frequency", "1000000000", "--summary-frequency", "1000000000"]
    with StepClock() as probe:  # sizes the periods
        train(module, quiet + ["--out", str(out / "probe"), "--num-steps", "30", *argv])
    period = max(10, round(period_seconds / float(np.median(np.diff(probe.ends[10:])))))
    steps = (periods + 1) * period
    with StepClock() as clock:
        train(module, quiet + ["--out", str(out / "run"), "--num-steps", str(steps), *argv])
    return {"chars_per_second": median_speed(clock.ends, period, chars_per_step), "steps": steps}


def train(module, argv):
    """The script's session_loop() of a configuration, quietly."""
    with contextlib.redirect_stdout(io.StringIO()):
        module.session_loop(argv)


def listing_window(b, num_unrollings):
    """getWindowBatch as the post's listing writes it: a Python loop over the unrollings and the cursors, one
    character at a time (the same inputs and labels as batches.getWindowBatch)."""
    batch_x, batch_y = [], []
    for i in range(num_unrollings):
        batch_x.append([b.text[(cursor + i) % len(b.text)] for cursor in b.cursors])
        batch_y.append([b.text[(cursor + i + 1) % len(b.text)] for cursor in b.cursors])
    b.cursors = [(cursor + num_unrollings) % len(b.text) for cursor in b.cursors]
    return batch_x, batch_y


def char2vec(char_id):
    """The listing's char2vec: one character's one-hot vector."""
    vector = np.zeros(data.alphabet_size, dtype=np.float32)
    vector[char_id] = 1.0
    return vector


def listing_mega_batch(batch):
    """A mega batch built as the post's listing builds it, "by indexing through the unrollings and batch
    size": num_unrollings arrays [batch_size, 27], one char2vec per character."""
    mega_batch = []
    for row in batch:
        mega_batch.append(np.array([char2vec(char_id) for char_id in row]))
    return mega_batch


def bench_listing_way(corpus, module, periods, period_seconds):
    """chars/s of the script's post graph run the post's own way: Batch with getWindowBatch and the mega
    batches built one character at a time (listing_window, listing_mega_batch), the feed dict built by iterating
    the lists, tf.Session() with TensorFlow's default settings."""
    hp = {**settings.defaults(module.HPARAMS), "graph": "post"}
    num_unrollings = hp["num_unrollings"]
    model = module.build_graph(hp)
    batch = Batch(data.text_to_ids(corpus.read_text()), hp["batch_size"])
    fetches = [model.train_op, model.loss, model.learning_rate, model.grad_norm, model.final_state]
    with tf.Session(graph=model.graph) as session:
        session.run(model.init)
        state = np.zeros([hp["batch_size"], model.state_size], np.float32)
        ends = []

        def steps(count):
            nonlocal state
            for _ in range(count):
                batch_x, batch_y = listing_window(batch, num_unrollings)
                mega_batch_x, mega_batch_y = listing_mega_batch(batch_x), listing_mega_batch(batch_y)
                feed_dict = {model.initial_state: state}
                for i in range(num_unrollings):
                    feed_dict[model.train[i]] = mega_batch_x[i]
                    feed_dict[model.labels[i]] = mega_batch_y[i]
                _, loss, learning_rate, grad_norm, state = session.run(fetches, feed_dict=feed_dict)
                ends.append(time.perf_counter())
        steps(30)
        period = max(10, round(period_seconds / float(np.median(np.diff(ends[10:])))))
        ends.clear()
        steps((periods + 1) * period)
    return {"chars_per_second": median_speed(ends, period, hp["batch_size"] * num_unrollings),
            "steps": len(ends)}


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
    rng = np.random.default_rng(0)
    arch1_hidden.sample(sess, model, 200, rng)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        arch1_hidden.sample(sess, model, sample_chars, rng)
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
    periods, period_seconds, split_chars, sample_chars = (3, 0.05, 20_000, 200) if quick else (12, 1.0, 5_000_000, 5000)
    if which == "eval":
        eval_speed, eval_seconds, sample_speed = bench_eval_and_sampling(split_chars, sample_chars)
        return {"eval_chars_per_second": eval_speed, "eval_seconds": eval_seconds, "eval_chars": split_chars,
                "sampling_chars_per_second": sample_speed}
    name, module, options = CONFIGS[int(which)]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text(synthetic_text(2_000_000))
        if options == "listing":
            return bench_listing_way(corpus, module, periods, period_seconds)
        return bench_training(corpus, Path(tmp), module, options, periods, period_seconds)


def in_subprocess(which, quick):
    """one(which) in a fresh Python, so that no configuration inherits another's memory, threads or warm-up."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", str(which)]
                          + (["--quick"] if quick else []), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"bench.py --one {which} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = settings.OneLineParser(prog="bench.py", description=settings.description(__doc__))
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
    figures = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {settings.cores()} cores",
               "training": {}}
    print(f"{'configuration':90} {'chars/s':>9}")
    for i in QUICK if args.quick else range(len(CONFIGS)):
        name = CONFIGS[i][0]
        result = figures["training"][name] = in_subprocess(i, args.quick)
        print(f"{name:90} {result['chars_per_second']:>9,.0f}", flush=True)
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
        folder.write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(command.run_command("bench.py", main))
