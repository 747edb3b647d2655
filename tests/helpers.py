"""Helpers the tests share: hyperparameters, feeds and weights for the graph tests, a small corpus, and the one
way to start a child process (child)."""
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

import data
from batches import Batch, getWindowBatch
from machinery import checkpoints, sessions, settings
from machinery.tf1 import tf


def load_run(folder, **options):
    """checkpoints.load_run of a folder of either script, as the tools call it."""
    import arch1_hidden
    import arch2_output
    return checkpoints.load_run(folder, [arch1_hidden, arch2_output], **options)


def hparams(module, **overrides):
    """A module's default hyperparameters (and loop options) with overrides."""
    hp = settings.defaults(module.HPARAMS)
    unknown = set(overrides) - set(hp)
    assert not unknown, unknown
    hp.update(overrides)
    return hp


def session(model):
    sess = sessions.new_session(model)
    sess.run(model.init)
    return sess


def variables(model):
    """The model's variables by name (U, W, b, V, c, saved_h, ...)."""
    return {v.op.name: v for v in model.graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)}


def random_weights(sess, model, rng, scale=0.5):
    """Loads random float32 weights into U, W, b, V, c and returns them as float64 arrays."""
    w = {}
    for name in ("U", "W", "b", "V", "c"):
        var = variables(model)[name]
        value = (scale * rng.standard_normal(var.shape.as_list())).astype(np.float32)
        var.load(value, sess)
        w[name] = value.astype(np.float64)
    return w


def one_hot_text(rng, steps, batch):
    """A random mega-batch: [steps, batch, 27] one-hot float32."""
    return np.eye(27, dtype=np.float32)[rng.integers(0, 27, size=(steps, batch))]


def zero_state(model):
    return np.zeros(model.initial_state.shape, np.float32)


def feed(model, megabatch, state=None):
    """The feed dict of a training step of either graph: a mega-batch [num_unrollings + 1, batch, 27] one-hot
    (inputs megabatch[:-1], labels megabatch[1:]: through the post's lists train and labels, or as the ids
    batch_x and batch_y for fast.py's graph) and the carried state (zeros by default)."""
    state = zero_state(model) if state is None else state
    if model.batch_x is not None:
        ids = megabatch.argmax(-1).astype(np.uint8)
        return {model.batch_x: ids[:-1], model.batch_y: ids[1:], model.initial_state: state}
    return {model.initial_state: state, **dict(zip(model.train, megabatch[:-1])),
            **dict(zip(model.labels, megabatch[1:]))}


def megabatches(ids, batch_size, num_unrollings):
    """Mega-batches for feed(), from the post's Batch and getWindowBatch: each window's inputs followed by its
    last label, one-hot, [num_unrollings + 1, batch_size, 27]."""
    b = Batch(ids, batch_size)
    while True:
        batch_x, batch_y = getWindowBatch(b, num_unrollings)
        yield data.one_hot(np.concatenate([batch_x, batch_y[-1:]]))


def sample_probs(sess, model, text, state=None):
    """The sampling branch's val_probs after each character of text, fed one at a time from the zero state
    (or state), the state carried as the scripts' sample() carries it: [len(text), 27]."""
    state = np.zeros([1, model.state_size], np.float32) if state is None else state
    out = []
    for char in text:
        probs, state = sess.run([model.val_probs, model.val_state_after],
                                {model.val_input: np.eye(27, dtype=np.float32)[[char]], model.val_state: state})
        out.append(probs[0])
    return np.array(out)


WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but "
         "an they one two three have had were their first also new time after its who".split())


def write_corpus(path, words=4000, seed=0):
    """A small text8-style corpus of common words, deterministic; returns its path."""
    rng = np.random.default_rng(seed)
    path.write_text(" " + " ".join(rng.choice(WORDS, size=words)))
    return path


TINY = ["--batch-size", "4", "--num-nodes", "8", "--num-unrollings", "5", "--summary-frequency", "10",
        "--eval-frequency", "20"]


# ---------------------------------------------------------------------------------------------
# Children: the one way the tests start a process.
# ---------------------------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 300  # seconds: the most any wait on a child may take before the test fails (markers come sooner)


class Child:
    """A started process whose stdout and stderr (when piped) are read line by line as they come, by threads, so
    that a wait never blocks on a pipe: wait_for a marker, send a signal, finish."""

    def __init__(self, proc):
        self.proc, self._changed = proc, threading.Condition()
        self.lines = {name: [] for name in ("stdout", "stderr") if getattr(proc, name) is not None}
        self._seen, self._ended = {name: 0 for name in self.lines}, set()
        self._readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.lines]
        for reader in self._readers:
            reader.start()

    def _read(self, name):
        try:
            for line in getattr(self.proc, name):
                with self._changed:
                    self.lines[name].append(line)
                    self._changed.notify_all()
        except (ValueError, OSError):  # the test closed the pipe
            pass
        finally:
            with self._changed:
                self._ended.add(name)
                self._changed.notify_all()

    def text(self, name):
        with self._changed:
            return "".join(self.lines[name])

    @property
    def stdout(self):
        return self.text("stdout")

    @property
    def stderr(self):
        return self.text("stderr")

    def wait_for(self, marker, stream="stdout", timeout=DEADLINE):
        """The next line of stream that contains marker (a string) or satisfies it (a function of the line);
        AssertionError, with what came instead, if the stream ends first or the deadline passes."""
        matches = marker if callable(marker) else (lambda line: marker in line)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for i in range(self._seen[stream], len(self.lines[stream])):
                    if matches(self.lines[stream][i]):
                        self._seen[stream] = i + 1
                        return self.lines[stream][i]
                self._seen[stream] = len(self.lines[stream])
                left = deadline - time.monotonic()
                if stream in self._ended or left <= 0:
                    why = "its " + stream + " ended" if stream in self._ended else f"{timeout} s passed"
                    raise AssertionError(f"{marker!r} never came ({why}); stdout:\n{''.join(self.lines.get('stdout', []))[-3000:]}"
                                         f"\nstderr:\n{''.join(self.lines.get('stderr', []))[-3000:]}")
                self._changed.wait(left)

    def send(self, signum):
        self.proc.send_signal(signum)

    def close_stdout(self):
        """Closes the reading end of stdout, as `| head` does once it has its lines."""
        self.proc.stdout.close()

    def finish(self, timeout=DEADLINE):
        """Waits for the child to end and for its output to be read; its exit status."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the child did not end within {timeout} s; stderr:\n{self.stderr[-3000:]}") from None
        for reader in self._readers:
            reader.join(timeout)
        return self.proc.returncode

    @property
    def returncode(self):
        return self.proc.returncode


def _child_setup(ignore, before):
    """In the child, before Python starts: every stop signal at its default, but those in ignore, then before().
    A suite run as a background job (`pytest &`) ignores SIGINT, children inherit that, and Python then makes no
    KeyboardInterrupt of it: Ctrl-C tests would wait for nothing."""
    def setup():
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN if s in ignore else signal.SIG_DFL)
        if before is not None:
            before()
    return setup


@contextlib.contextmanager
def child(args, *, shell=False, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
          ignore=(), before=None, cwd=ROOT, **popen):
    """Starts `python -u ARGS...` (or, with shell, the shell command ARGS) in its own process group, in the
    repository; yields a Child; kills the whole group (the shell's pipeline, a tool's own children) in a
    finally, whatever the test did. ignore: stop signals the child starts ignoring (nohup ignores SIGHUP);
    before: a function the child runs before Python starts (closing a descriptor, say)."""
    command = args if shell else [sys.executable, "-u", *map(str, args)]
    proc = subprocess.Popen(command, shell=shell, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr, text=True,
                            start_new_session=True, preexec_fn=_child_setup(ignore, before), **popen)
    started = Child(proc)
    try:
        yield started
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()


def run_child(args, **options):
    """Runs a child to its end (child(), the same options); returns it, its output read."""
    with child(args, **options) as started:
        started.finish()
    return started


def wait_until(condition, timeout=DEADLINE, what="the condition"):
    """Waits for condition() to be true (a marker in a file, a lock that frees), looking every 50 ms; fails the
    test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come within {timeout} s")
        time.sleep(0.05)
