"""Running a built graph: the Session's threads, fast Session callables, and the Evaluator that scores
held-out text with a model's evaluation branch.
"""
import math
import sys

import numpy as np

import data
from machinery import graphs, memory, settings
from machinery.command import UserError
from machinery.tf1 import tf

MISSING = object()
CallableOptions = MISSING  # TensorFlow's internal protobuf (None if it has moved), looked up at the first callable


def callable_options():
    """TensorFlow's CallableOptions message, or None where its internal path has moved (make_callable then
    falls back to the public API)."""
    global CallableOptions
    if CallableOptions is MISSING:
        try:
            from tensorflow.core.protobuf.config_pb2 import CallableOptions
        except ImportError:
            CallableOptions = None
    return CallableOptions

EVAL_MIN_SPAN = 2000  # characters a stream covers at least, so that few predictions start without context


def session_config(hp, graph):
    """The Session's settings for a run of hp on graph ("post" or "fast"). Both run one thread per op and as many ops at a time as there are
    threads (measured faster than TensorFlow's default pools for these small ops: docs/performance.md).
    For the fast graph Grappler's arithmetic optimizer is off: it folds the transposed W that the fast
    recurrence's backward pass makes once back into every matmul (transpose_b=True), a form oneDNN runs at
    half speed. The post's graph keeps Grappler's defaults, which help it.

    These pools are the CPU's; on a GPU, TensorFlow places the ops itself.
    """
    config = tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=settings.threads(hp))
    if graph == "fast":
        rewrite = config.graph_options.rewrite_options
        rewrite.arithmetic_optimization = rewrite.OFF
    return config


def new_session(model):
    """A Session on a model's graph with the run's settings (session_config), whose run() takes the fast path of
    CallableSession."""
    graph = "fast" if model.batch_x is not None else "post"  # the graph built, whatever hp["graph"] says
    return callable_session_class()(graph=model.graph, config=session_config(model.hp, graph))


_callable_session = []


def callable_session_class():
    """CallableSession (below), made once, when TensorFlow is loaded: it is a tf.Session."""
    if not _callable_session:
        _callable_session.append(_make_callable_session())
    return _callable_session[0]


def __getattr__(name):
    """sessions.CallableSession, made at the first use of the name."""
    if name == "CallableSession":
        return callable_session_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_callable_session():
    class CallableSession(tf.Session):
        """tf.Session, with the same run(fetches, feed_dict=...) answering faster when it is called again and
        again with the same list of fetches and the same placeholders: the post's training step, 81 fed arrays.

        Session.run spends about 19 us of Python on every fed array (1.7 ms of a 5 ms step for the post's
        graph, measured: docs/performance.md). Here each distinct (fetches, placeholders) pair gets a Session
        callable (make_callable) the first time, and later calls go through it: the same graph, the same feeds
        and the same results, an operation's fetch still None; a single tensor fetched alone takes the same
        path. Anything else (a dict of fetches, names as strings, options, arrays of another dtype than their
        placeholder's) goes to Session.run unchanged, and so does everything where TensorFlow's private
        callable path is missing (make_callable's public fallback calls run itself).
        """

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._callables = {}

        def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
            if isinstance(fetches, tf.Tensor) and feed_dict and options is None and run_metadata is None:
                return self.run([fetches], feed_dict=feed_dict)[0]  # one tensor: the same fast path
            private_path = callable_options() is not None and hasattr(self, "_make_callable_from_options")
            if (private_path and options is None and run_metadata is None
                    and isinstance(fetches, list) and feed_dict
                    and all(isinstance(f, (tf.Tensor, tf.Operation)) for f in fetches)
                    and all(isinstance(k, tf.Tensor) and isinstance(v, np.ndarray)
                            and v.dtype == k.dtype.as_numpy_dtype for k, v in feed_dict.items())):
                key = (tuple(fetches), tuple(feed_dict))
                run = [f for f in fetches if f not in feed_dict]  # a fed tensor that is also fetched (Arch 2's last
                if run and key not in self._callables:            # label) is the fed value
                    self._callables[key] = make_callable(self, run, list(feed_dict))
                values = iter(self._callables[key](*feed_dict.values()) if run else ())
                return [None if isinstance(f, tf.Operation) else feed_dict[f] if f in feed_dict else next(values)
                        for f in fetches]
            return super().run(fetches, feed_dict=feed_dict, options=options, run_metadata=run_metadata)

    return CallableSession


# ---------------------------------------------------------------------------------------------
# Memory: refused in one line before the graph is built, rather than an abort inside TensorFlow.
# ---------------------------------------------------------------------------------------------
def training_memory(hp):
    """Bytes a run of hp needs, roughly and from above: every unrolled step keeps about eight hidden-wide
    tensors and four logit-wide ones per stream for the backward pass (training batch, and the evaluation
    branch's streams), and the weights are held four times (values, gradients, an optimizer's two slots)."""
    n = hp["num_nodes"]
    hidden = 2 * n if hp["combine"] == "concat" else n
    per_step_and_row = 8 * hidden + 4 * data.alphabet_size
    activations = (hp["num_unrollings"] * hp["batch_size"] + graphs.EVAL_UNROLLINGS * graphs.EVAL_STREAMS) \
        * per_step_and_row
    weights = data.alphabet_size * n + hidden * max(n, data.alphabet_size) + hidden * (data.alphabet_size + 1)
    return 4 * (activations + 4 * weights)


def check_memory(hp):
    """UserError if a run of hp will not fit in the memory this process may use."""
    needed, available = training_memory(hp), memory.available()
    if available is not None and needed > available:
        raise UserError(f"this model needs about {needed / 2 ** 30:,.1f} GB to train and {available / 2 ** 30:,.1f} "
                        f"GB is available; use a smaller --num-nodes, --batch-size or --num-unrollings")


# ---------------------------------------------------------------------------------------------
# Session callables.
# ---------------------------------------------------------------------------------------------
_said_fallback = []


def make_callable(sess, fetches, feeds):
    """A function that runs fetches (tensors, or ops to run) with the feeds given positionally; it returns
    the fetched tensors' values. Feed arrays must have the placeholders' exact dtype.

    Session.make_callable with a feed list falls back to Session.run, whose Python side costs ~300 us a
    call; TF's CallableOptions path (the one Keras 2 used) runs the same step for ~75 us: it matters once per
    training step and once per sampled character. That path is private API: where it is missing, this falls
    back to the public Session.make_callable, says so once, and works, slower.
    """
    tensors = [f for f in fetches if isinstance(f, tf.Tensor)]
    ops = [f for f in fetches if isinstance(f, tf.Operation)]
    make_from_options = getattr(sess, "_make_callable_from_options", None)
    if callable_options() is not None and make_from_options is not None:
        options = callable_options()()
        options.feed.extend(t.name for t in feeds)
        options.fetch.extend(t.name for t in tensors)
        options.target.extend(op.name for op in ops)
        return make_from_options(options)
    if not _said_fallback:
        print("note: TensorFlow's fast Session callables are missing from this version; using "
              "Session.make_callable (slower)", file=sys.stderr)
        _said_fallback.append(True)
    run = sess.make_callable(tensors + ops, feed_list=feeds)
    return lambda *values: run(*values)[:len(tensors)]


# ---------------------------------------------------------------------------------------------
# Evaluation and sampling.
# ---------------------------------------------------------------------------------------------
def bpc(nats):
    """Bits per character of a loss in nats."""
    return nats / math.log(2)


def perplexity(nats):
    """exp(nats), infinite rather than an overflow for a diverging loss."""
    return math.exp(nats) if nats < 700 else math.inf


class Evaluator:
    """Scores held-out text with a model's evaluation branch. Made once per session and reused: creating the
    Session callables of the 100-step evaluation graph takes ~0.2 s each, as long as evaluating 100,000
    characters, so the training loop makes them before its first step rather than at every validation."""

    def __init__(self, sess, model):
        feeds = [model.eval_inputs, model.eval_labels, model.eval_weights, model.eval_state]
        self._runs = {forced: make_callable(sess, fetches, feeds)
                      for forced, fetches in ((False, model.evaluation.free), (True, model.evaluation.forced))
                      if fetches is not None}
        self._state_size = model.state_size

    def __call__(self, ids, teacher_forced=False):
        """Mean cross-entropy in nats per character of the text ids, predicting each character from the ones
        before.

        teacher_forced (Arch 2 only): feed back the true previous characters instead of the model's own outputs.

        The text is cut into up to EVAL_STREAMS contiguous streams of at least EVAL_MIN_SPAN characters, run
        side by side; each stream starts from the zero state, and the padding that fills the last run is masked.
        """
        ids = np.asarray(ids, dtype=np.int32)
        n = len(ids) - 1  # predictions: ids[1:] from ids[:-1]
        if n < 1:
            raise data.DataError(f"a held-out split of {len(ids)} characters is too short to evaluate")
        streams_, unrollings = graphs.EVAL_STREAMS, graphs.EVAL_UNROLLINGS
        used = min(streams_, -(-n // EVAL_MIN_SPAN))  # streams that carry text; the others are all padding
        span = -(-n // used)  # characters per stream
        runs = -(-span // unrollings)  # each stream is padded at its end to a whole number of runs

        def streams(values, dtype):
            flat = np.zeros(used * span, dtype)
            flat[:n] = values
            padded = np.zeros((streams_, runs * unrollings), dtype)
            padded[:used, :span] = flat.reshape(used, span)
            return padded.T  # [time, stream]

        inputs, labels, weights = streams(ids[:-1], np.int32), streams(ids[1:], np.int32), streams(1.0, np.float32)
        run = self._runs[teacher_forced]
        state = np.zeros([streams_, self._state_size], np.float32)
        total = 0.0
        for t in range(0, runs * unrollings, unrollings):
            chunk = slice(t, t + unrollings)
            nats, state = run(inputs[chunk], labels[chunk], weights[chunk], state)
            total += float(nats)
        return total / n
