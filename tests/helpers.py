"""Small helpers the graph tests share."""
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
