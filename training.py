"""The machinery both architectures share: optimizer, evaluation and sampling branches, the Session loop,
checkpoints and the command line. Each architecture's script keeps its own graph; this file runs it.
"""
import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

import data
from batches import BatchGenerator


@contextlib.contextmanager
def _quiet_stderr():
    """Silences file descriptor 2 (where TensorFlow's C++ start-up banner goes) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# TensorFlow is imported here, once, without its import-time log lines (oneDNN stays on: it is faster).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
with _quiet_stderr():
    import tensorflow.compat.v1 as tf
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
tf.disable_eager_execution()
tf.logging.set_verbosity(tf.logging.ERROR)

alphabet_size = data.alphabet_size
ACTIVATIONS = {"relu": tf.nn.relu, "tanh": tf.tanh}
COMBINES = {"concat": lambda xU, hW: tf.concat([xU, hW], axis=1), "add": tf.add, "multiply": tf.multiply}
OPTIMIZERS = {"sgd": tf.train.GradientDescentOptimizer, "adadelta": tf.train.AdadeltaOptimizer,
              "adam": tf.train.AdamOptimizer}
PARALLEL_OPS = 2  # ops TF runs at a time (session_config): one per core
EVAL_STREAMS = 128  # parallel streams of the evaluation branch
EVAL_UNROLLINGS = 100  # time steps per evaluation Session.run
EVAL_MIN_SPAN = 2000  # characters a stream covers at least, so that few predictions start without context


class UserError(Exception):
    """A mistake the user can fix (bad option, unusable run folder); the message says how, in one line."""


# ---------------------------------------------------------------------------------------------
# Graph pieces shared by both architectures.
# ---------------------------------------------------------------------------------------------
def weight(shape, name):
    """A weight matrix initialised from a truncated normal with variance 1 / fan_in."""
    return tf.Variable(tf.truncated_normal(shape, mean=0.0, stddev=1.0 / math.sqrt(shape[0])), name=name)


def unrolled_placeholders(num_unrollings, batch_size):
    """The post's list of placeholders, one one-hot [batch_size, 27] batch per unrolling (+1 for the labels).

    Each defaults to its row of the one-hot encoded "megabatch_ids" placeholder [num_unrollings + 1,
    batch_size] of character ids. Feeding the list one by one, as the post does, works; the training loop
    feeds the ids of the whole mega-batch instead, because every fed tensor costs Session.run ~19 us
    (41 feeds: ~0.8 ms a step) and 27 floats a character cost more to ship than one byte.
    """
    megabatch_ids = tf.placeholder(tf.uint8, [num_unrollings + 1, batch_size], name="megabatch_ids")
    one_hot = tf.one_hot(megabatch_ids, alphabet_size)  # [num_unrollings + 1, batch_size, 27]
    return [tf.placeholder_with_default(row, [batch_size, alphabet_size], name=f"train_data_{i}")
            for i, row in enumerate(tf.unstack(one_hot))]


def optimize(loss, hp):
    """(train_op, learning_rate, grad_norm): exponential decay, gradients clipped by global norm.

    grad_norm is the global norm before clipping, reported so exploding gradients can be seen.
    """
    global_step = tf.train.get_or_create_global_step()
    learning_rate = tf.train.exponential_decay(
        hp["learning_rate"], global_step, hp["decay_steps"], hp["decay_rate"], staircase=hp["staircase"])
    optimizer = OPTIMIZERS[hp["optimizer"]](learning_rate)
    gradients, params = zip(*optimizer.compute_gradients(loss))
    clipped, grad_norm = tf.clip_by_global_norm(gradients, hp["clip_norm"])
    train_op = optimizer.apply_gradients(zip(clipped, params), global_step=global_step)
    return train_op, learning_rate, grad_norm


class Model:
    """A built graph: the architecture's training branch plus evaluation and sampling branches.

    unroll(inputs, state) -> (logits [steps * batch, 27], last state) is the architecture's cell run over
    a list of one-hot inputs; the two extra branches call it with their own batch sizes, sharing weights.
    With teacher_forced_eval, unroll also takes targets=... (Arch 2) and evaluation can feed them.
    """

    def __init__(self, graph, hp, unroll, state_size, train_data, logits, loss, train_op, learning_rate,
                 grad_norm, reset_state, teacher_forced_eval=False):
        self.graph, self.hp, self.unroll, self.state_size = graph, hp, unroll, state_size
        self.train_data, self.logits, self.loss, self.train_op = train_data, logits, loss, train_op
        self.learning_rate, self.grad_norm, self.reset_state = learning_rate, grad_norm, reset_state
        with graph.as_default():
            self.global_step = tf.train.get_global_step()
            self.megabatch_ids = graph.get_tensor_by_name("megabatch_ids:0")  # made by unrolled_placeholders()

            # Evaluation: EVAL_STREAMS streams of held-out text, EVAL_UNROLLINGS steps per run, ids
            # one-hot encoded in the graph; the state goes in and out through the feed, weights mask padding.
            self.eval_inputs = tf.placeholder(tf.int32, [EVAL_UNROLLINGS, EVAL_STREAMS], name="eval_inputs")
            self.eval_labels = tf.placeholder(tf.int32, [EVAL_UNROLLINGS, EVAL_STREAMS], name="eval_labels")
            self.eval_weights = tf.placeholder(tf.float32, [EVAL_UNROLLINGS, EVAL_STREAMS], name="eval_weights")
            self.eval_state = tf.placeholder(tf.float32, [EVAL_STREAMS, state_size], name="eval_state")

            def evaluation(**targets):
                """(summed nats, next state) of one evaluation run."""
                logits, next_state = unroll(
                    tf.unstack(tf.one_hot(self.eval_inputs, alphabet_size), axis=0), self.eval_state, **targets)
                nats = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=tf.reshape(self.eval_labels, [-1]), logits=logits)
                return tf.reduce_sum(nats * tf.reshape(self.eval_weights, [-1])), next_state

            self.eval_fetches = {False: evaluation()}
            if teacher_forced_eval:  # Arch 2 can also be evaluated feeding the true previous characters
                self.eval_fetches[True] = evaluation(
                    targets=tf.unstack(tf.one_hot(self.eval_labels, alphabet_size), axis=0))

            # Sampling: batch 1, one character per run, with its own saved state and reset op.
            self.sample_input = tf.placeholder(tf.float32, [1, alphabet_size], name="sample_input")
            self.temperature = tf.placeholder_with_default(1.0, [], name="temperature")
            saved_sample_state = tf.Variable(tf.zeros([1, state_size]), trainable=False, name="saved_sample_state")
            self.reset_sample_state = saved_sample_state.assign(tf.zeros_like(saved_sample_state))
            sample_logits, sample_state = unroll([self.sample_input], saved_sample_state)
            with tf.control_dependencies([saved_sample_state.assign(sample_state)]):
                self.sample_logits = tf.identity(sample_logits)
                self.sample_prediction = tf.nn.softmax(sample_logits / self.temperature)

            # Checkpoints hold the weights, the optimizer's slots, the step and the training state; the
            # sampling state is scratch space.
            saved = [v for v in tf.global_variables() if v is not saved_sample_state]
            self.saver = tf.train.Saver(var_list=saved, max_to_keep=None)
            self.init_unsaved = saved_sample_state.initializer
            self.init = tf.global_variables_initializer()


def make_step(sess, fetches, feeds):
    """A callable that runs fetches (tensors, or ops to run) with the feeds given positionally; it returns
    the fetched tensors' values.

    Session.make_callable with a feed list falls back to Session.run, whose Python side costs ~300 us a call;
    TF's CallableOptions path (the one Keras 2 used) runs the same step for ~75 us: it matters once per
    training step and once per sampled character. Feed arrays must have the placeholders' exact dtype.
    """
    options = config_pb2.CallableOptions()
    options.feed.extend(t.name for t in feeds)
    options.fetch.extend(f.name for f in fetches if isinstance(f, tf.Tensor))
    options.target.extend(f.name for f in fetches if isinstance(f, tf.Operation))
    return sess._make_callable_from_options(options)


def session_config():
    """Thread settings measured fastest on 2 cores: PARALLEL_OPS ops at a time, each on one thread.

    Small models are bound by per-op overhead, not arithmetic, and wide ones (up to 1024 nodes measured) are
    faster too when the recurrence's independent chains each get a core than when every matmul shares two.
    Grappler's arithmetic optimizer is off: it folds the transposed W that the recurrence's backward pass
    makes once back into every matmul (transpose_b=True), a form oneDNN runs at half speed.
    """
    config = tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=PARALLEL_OPS)
    config.graph_options.rewrite_options.arithmetic_optimization = rewriter_config_pb2.RewriterConfig.OFF
    return config


class Evaluator:
    """Scores held-out text with a model's evaluation branch. Made once per session and reused: creating the
    Session callables of the 100-step evaluation graph takes ~0.2 s each, as long as evaluating 100,000
    characters, so the training loop makes them before its first step rather than at every validation."""

    def __init__(self, sess, model):
        feeds = [model.eval_inputs, model.eval_labels, model.eval_weights, model.eval_state]
        self._runs = {forced: make_step(sess, fetches, feeds) for forced, fetches in model.eval_fetches.items()}
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
        used = min(EVAL_STREAMS, -(-n // EVAL_MIN_SPAN))  # streams that carry text; the others are all padding
        span = -(-n // used)  # characters per stream
        runs = -(-span // EVAL_UNROLLINGS)  # each stream is padded at its end to a whole number of runs

        def streams(values, dtype):
            flat = np.zeros(used * span, dtype)
            flat[:n] = values
            padded = np.zeros((EVAL_STREAMS, runs * EVAL_UNROLLINGS), dtype)
            padded[:used, :span] = flat.reshape(used, span)
            return padded.T  # [time, stream]

        inputs, labels, weights = streams(ids[:-1], np.int32), streams(ids[1:], np.int32), streams(1.0, np.float32)
        run = self._runs[teacher_forced]
        state = np.zeros([EVAL_STREAMS, self._state_size], np.float32)
        total = 0.0
        for t in range(0, runs * EVAL_UNROLLINGS, EVAL_UNROLLINGS):
            chunk = slice(t, t + EVAL_UNROLLINGS)
            nats, state = run(inputs[chunk], labels[chunk], weights[chunk], state)
            total += float(nats)
        return total / n


class Sampler:
    """Generates text with a model's batch-1 sampling branch, one Session run per character."""

    def __init__(self, sess, model):
        self._sess, self._reset = sess, model.reset_sample_state
        self._run = make_step(sess, [model.sample_prediction, model.sample_logits],
                              [model.sample_input, model.temperature])

    def generate(self, length, rng, prime="", temperature=1.0, argmax=False):
        """length characters drawn from the model after feeding it prime (the prime is not part of the result).

        Without a prime the first character is drawn from a random distribution over the alphabet, as the
        post does, and counts towards length.
        """
        temperature = np.float32(temperature)

        def step(char_id):  # feeds one character; returns the next one's distribution and logits
            return self._run(data.vec2mat(data.one_hot(char_id)), temperature)

        self._sess.run(self._reset)
        out = []
        if prime:
            for char in prime:
                prediction, logits = step(data.char2id(char))
        elif length:
            first = data.sample_distribution(data.random_distribution(rng), rng)
            out.append(first)
            if length > 1:
                prediction, logits = step(first)
        while len(out) < length:
            char_id = int(np.argmax(logits)) if argmax else data.sample_distribution(prediction, rng)
            out.append(char_id)
            if len(out) < length:
                prediction, logits = step(char_id)
        return data.ids_to_text(out)


# ---------------------------------------------------------------------------------------------
# The command line: every hyperparameter as --name-with-dashes, plus the loop's own options.
# ---------------------------------------------------------------------------------------------
CHOICES = {"activation": tuple(ACTIVATIONS), "combine": tuple(COMBINES), "optimizer": tuple(OPTIMIZERS)}
LOOP_OPTIONS = dict(  # options of the run rather than the model; none of them changes the graph
    summary_frequency=(1000, "steps between report lines"),
    eval_frequency=(10_000, "steps between validations, samples and checkpoints"),
    valid_chars=(100_000, "validation characters used by the periodic validation (the end uses all)"),
    keep=(3, "latest checkpoints kept (the best by validation is kept as well, in best/)"),
    seed=(1, "random seed of the weights and the samples; the same seed repeats a CPU run"),
)


def checked_number(kind, low=None, high=None, above=None):
    """An argparse type: kind (int or float), at least low, at most high, and greater than above."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        if (not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high)
                or (above is not None and value <= above)):
            bounds = [f"above {above}" if above is not None else None, f"at least {low}" if low is not None else None,
                      f"at most {high}" if high is not None else None]
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be "
                                             f"{' and '.join(b for b in bounds if b)}")
        return value
    return convert


def _value_type(name, default):
    """How a hyperparameter's value is checked on the command line."""
    if name == "decay_rate":
        return checked_number(float, above=0, high=1)
    if name == "seed":
        return checked_number(int, low=0)
    if isinstance(default, int):
        return checked_number(int, low=1)
    return checked_number(float, above=0)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        """One line, no usage dump: what is wrong, and where to look."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(architecture, hparams):
    """The command line of an architecture's script; values not given stay absent (SUPPRESS)."""
    parser = OneLineParser(prog=f"{architecture}.py", argument_default=argparse.SUPPRESS,
                     description=f"Train {architecture} on text8 (or --data PATH).")
    parser.add_argument("--data", metavar="PATH", help="train on this text file or text8 zip instead of "
                        "downloading text8 into data/")
    parser.add_argument("--out", metavar="DIR", help=f"run folder (default checkpoints/{architecture.split('_')[0]})")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    model_group = parser.add_argument_group("hyperparameters (defaults: the post's)")
    loop_group = parser.add_argument_group("the run")
    for name, (default, help_text) in {**hparams, **LOOP_OPTIONS}.items():
        flag = "--" + name.replace("_", "-")
        group = loop_group if name in LOOP_OPTIONS else model_group
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=f"{help_text} (default {default})")
        elif name in CHOICES:
            group.add_argument(flag, choices=CHOICES[name], help=f"{help_text} (default {default})")
        else:
            group.add_argument(flag, type=_value_type(name, default), help=f"{help_text} (default {default})",
                               metavar="N" if isinstance(default, int) else "X")
    return parser


# ---------------------------------------------------------------------------------------------
# Run folders: config.json beside the TF checkpoints.
# ---------------------------------------------------------------------------------------------
CONFIG = "config.json"
RESULTS = "results.json"


def write_json(path, obj):
    """Writes JSON atomically: a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def read_config(folder):
    """The config.json of a run folder; UserError if there is none or it is unreadable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such run folder")
    path = folder / CONFIG
    if not path.exists():
        raise UserError(f"{folder} holds no {CONFIG}, so no checkpoint of a training run")
    try:
        config = json.loads(path.read_text())
        config["architecture"], config["hparams"], config["checkpoint"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is damaged or not a run's config; train again to make a new one") from None
    return config


def save_checkpoint(sess, model, folder, config):
    """Saves the variables as model.ckpt-STEP in folder, then config.json naming that checkpoint."""
    step = config["step"]
    prefix = model.saver.save(sess, str(Path(folder) / "model.ckpt"), global_step=step, write_meta_graph=False)
    write_json(Path(folder) / CONFIG, {**config, "checkpoint": Path(prefix).name})


def prune_checkpoints(folder, keep):
    """Deletes all but the newest keep model.ckpt-STEP files of folder."""
    steps = sorted({int(p.name.split("-")[1].split(".")[0]) for p in Path(folder).glob("model.ckpt-*")})
    for step in steps[:max(0, len(steps) - keep)]:
        for p in Path(folder).glob(f"model.ckpt-{step}.*"):
            p.unlink()


def restore(sess, model, folder, config):
    """Loads the checkpoint config.json names; UserError if its files are missing or do not fit the graph."""
    prefix = Path(folder) / config["checkpoint"]
    if not Path(str(prefix) + ".index").exists():
        raise UserError(f"{folder}: the checkpoint {config['checkpoint']} that {CONFIG} names is missing")
    try:
        model.saver.restore(sess, str(prefix))
        sess.run(model.init_unsaved)
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError, tf.errors.DataLossError):
        raise UserError(f"{prefix} does not fit the graph {CONFIG} describes; the run folder is damaged") from None


ARCHITECTURES = ("arch1_hidden", "arch2_output")  # the scripts whose runs sample.py and gradients.py load


def load_run(folder, finalize=True, restore_weights=True):
    """(config, model, session) of the checkpoint a run folder's config.json names; UserError if unusable.

    finalize=False leaves the graph open for more ops; restore_weights=False initialises it afresh instead.
    """
    import importlib
    config = read_config(folder)
    if config["architecture"] not in ARCHITECTURES:
        raise UserError(f"{Path(folder) / CONFIG} names the architecture {config['architecture']!r}; "
                        f"known ones are {', '.join(ARCHITECTURES)}")
    module = importlib.import_module(config["architecture"])
    missing = set(module.HPARAMS) - set(config["hparams"])
    if missing or "seed" not in config["hparams"]:
        raise UserError(f"{Path(folder) / CONFIG} lacks hyperparameters ({', '.join(sorted(missing)) or 'seed'}); "
                        f"the file is damaged")
    model = module.build_graph(config["hparams"])
    if finalize:
        model.graph.finalize()
    sess = tf.Session(graph=model.graph, config=session_config())
    if restore_weights:
        restore(sess, model, folder, config)
    else:
        sess.run(model.init)
    return config, model, sess


# ---------------------------------------------------------------------------------------------
# The Session loop.
# ---------------------------------------------------------------------------------------------
def _bpc(nats):
    return nats / math.log(2)


class _StopFlag:
    """Turns the first Ctrl-C into a request to save and stop at the end of the current step."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)


def defaults(hparams):
    """The default settings of a run: an architecture's hyperparameters and the loop's options."""
    return {name: default for name, (default, _) in {**hparams, **LOOP_OPTIONS}.items()}


def _configure(architecture, hparams, argv):
    """(hp, options, config or None): the run's settings from the command line and, with --resume, its folder."""
    args = vars(build_parser(architecture, hparams).parse_args(argv))
    out = Path(args.pop("out", f"checkpoints/{architecture.split('_')[0]}"))
    resume = args.pop("resume", False)
    data_path = args.pop("data", None)
    given = {k: v for k, v in args.items() if k in hparams or k in LOOP_OPTIONS}
    if resume:
        config = read_config(out)
        if config["architecture"] != architecture:
            raise UserError(f"{out} holds a run of {config['architecture']}, not {architecture}")
        hp = dict(config["hparams"])
        fixed = {k: v for k, v in given.items() if k in hparams and k != "num_steps" and hp[k] != v}
        if fixed:
            name = next(iter(fixed))
            raise UserError(f"--resume continues {out} with its saved --{name.replace('_', '-')} {hp[name]}; "
                            f"drop --{name.replace('_', '-')} or start a new run with another --out")
        hp.update({k: v for k, v in given.items() if k in LOOP_OPTIONS or k == "num_steps"})
        if data_path is not None and str(Path(data_path).resolve()) != config["data"]:
            raise UserError(f"--resume continues {out} on its own data ({config['data']}); drop --data")
        data_path = None if config["data"] == "text8" else config["data"]
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file, not a folder; pass another --out")
        if (out / CONFIG).exists():
            raise UserError(f"{out} already holds a run; pass --resume to continue it, "
                            f"or --out DIR for a new one")
        config = None
        hp = {**defaults(hparams), **given}
    return hp, {"out": out, "data": data_path}, config


def train(architecture, hparams, build_graph, argv, log=print, between_periods=None):
    """Trains an architecture from the command line argv; returns the results dictionary.

    between_periods(chars_per_second), if given, is called after each report line with the period's speed,
    outside the timed report periods: bench.py times the bare training step there, so that the two are
    measured interleaved.
    """
    from tqdm import tqdm

    hp, options, config = _configure(architecture, hparams, argv)
    out = options["out"]
    ids, source = data.load_corpus(options["data"], log=log)
    train_ids, valid_ids, test_ids = data.split(ids)
    for name, split_ids in (("valid", valid_ids), ("test", test_ids)):
        if len(split_ids) < 2:
            raise data.DataError(f"the {name} split has {len(split_ids)} characters, too few to evaluate; "
                                 f"use a text of at least 40 characters")
    batches = BatchGenerator(train_ids, hp["batch_size"], hp["num_unrollings"], name="train")
    log(f"{architecture}: {source}, {len(ids):,} characters "
        f"(train {len(train_ids):,}, valid {len(valid_ids):,}, test {len(test_ids):,})")
    log("config: " + ", ".join(f"{k}={v}" for k, v in hp.items()))

    model = build_graph(hp)
    model.graph.finalize()  # the loop adds no ops, so a slip cannot grow the graph step after step
    out.mkdir(parents=True, exist_ok=True)
    sess = tf.Session(graph=model.graph, config=session_config())
    if config is None:
        sess.run(model.init)
        config = {"architecture": architecture, "hparams": hp, "data": source, "step": 0, "checkpoint": None,
                  "batch_position": batches.position(), "train_seconds": 0.0, "best_valid_bpc": None}
        (out / "best").mkdir(exist_ok=True)
    else:
        restore(sess, model, out, config)
        batches.restore(config["batch_position"])
        config["hparams"] = hp
        log(f"resumed {out} at step {config['step']:,}")
    writer = tf.summary.FileWriter(str(out), graph=model.graph if config["step"] == 0 else None)
    rng = np.random.default_rng(hp["seed"])
    sampler, evaluator = Sampler(sess, model), Evaluator(sess, model)
    valid_slice = valid_ids[:hp["valid_chars"]]

    def scalars(step, **values):
        writer.add_summary(tf.Summary(value=[tf.Summary.Value(tag=k, simple_value=float(v))
                                             for k, v in values.items()]), step)

    def checkpoint(step, valid_bpc=None):
        """Saves the latest checkpoint (keeping hp["keep"]), and in best/ when validation improved."""
        config.update(step=step, batch_position=batches.position(), train_seconds=train_seconds())
        best = valid_bpc is not None and (config["best_valid_bpc"] is None or valid_bpc < config["best_valid_bpc"])
        if best:
            config["best_valid_bpc"] = valid_bpc
        save_checkpoint(sess, model, out, config)
        prune_checkpoints(out, hp["keep"])
        if best:
            save_checkpoint(sess, model, out / "best", config)
            prune_checkpoints(out / "best", 1)

    step_fn = make_step(sess, [model.train_op, model.loss, model.learning_rate, model.grad_norm],
                        [model.megabatch_ids])
    chars_per_step = hp["batch_size"] * hp["num_unrollings"]
    step = int(sess.run(model.global_step))
    start_step, started = step, time.time()
    prior_seconds = config["train_seconds"]

    def train_seconds():
        return prior_seconds + time.time() - started

    def diverged(what):
        """Stops the run without saving, so the last checkpoint stays the last good one."""
        bar.close()
        kept = (f"the last good checkpoint (step {config['step']:,}) is kept in {out}" if config["step"]
                else "no checkpoint was saved yet")
        raise UserError(f"{what} at step {step:,}; {kept}. Try a smaller --learning-rate or --clip-norm")

    def new_period():
        return {"loss": 0.0, "grad": 0.0, "grad_max": 0.0, "steps": 0, "time": time.time(), "paused": 0.0}

    period, speeds = new_period(), []  # speeds: chars/s of each report period, evaluation time excluded
    eval_seconds = 0.0  # spent in the loop's periodic validations, samples and checkpoints
    session_seconds = 0.0  # spent inside the training steps' Session runs: the rest is the loop's own work
    bar = tqdm(total=hp["num_steps"], initial=step, unit="step", disable=None, dynamic_ncols=True, leave=False)
    with _StopFlag() as stop:
        while step < hp["num_steps"] and not stop.requested:
            megabatch = batches.next_ids()
            run_started = time.perf_counter()
            fetched = step_fn(megabatch)
            session_seconds += time.perf_counter() - run_started
            loss, lr, grad_norm = map(float, fetched)
            step += 1
            if not math.isfinite(loss):
                diverged(f"the loss became {loss}")
            period["loss"] += loss
            period["grad"] += grad_norm
            period["grad_max"] = max(period["grad_max"], grad_norm)
            period["steps"] += 1
            bar.update(1)
            if step % hp["summary_frequency"] == 0 or step == hp["num_steps"]:
                k = period["steps"]
                mean_loss = period["loss"] / k
                speed = k * chars_per_step / (time.time() - period["time"] - period["paused"])
                speeds.append(speed)
                bar.write(f"step {step:>{len(str(hp['num_steps']))},}/{hp['num_steps']:,}  "
                          f"loss {mean_loss:.3f}  ppl {math.exp(loss):6.2f}  bpc {_bpc(mean_loss):.3f}  "
                          f"lr {lr:.3g}  grad {period['grad'] / k:.3f} (max {period['grad_max']:.3f})  "
                          f"{speed / 1000:,.0f}k chars/s")
                scalars(step, **{"train/loss": mean_loss, "train/perplexity": math.exp(loss),
                                 "train/bpc": _bpc(mean_loss), "learning_rate": lr,
                                 "grad_norm/mean": period["grad"] / k, "grad_norm/max": period["grad_max"],
                                 "chars_per_second": speed})
                if between_periods:
                    between_periods(speed)
                period = new_period()
            if step % hp["eval_frequency"] == 0 and step < hp["num_steps"]:
                paused = time.time()
                valid_bpc = _bpc(evaluator(valid_slice))
                if not math.isfinite(valid_bpc):
                    diverged(f"the validation loss became {valid_bpc}")
                bar.write(f"validation at step {step:,}: bpc {valid_bpc:.3f}, "
                          f"perplexity {2 ** valid_bpc:.2f} ({len(valid_slice):,} characters)")
                for _ in range(3):
                    bar.write("  sample: " + sampler.generate(80, rng))
                scalars(step, **{"valid/bpc": valid_bpc, "valid/perplexity": 2 ** valid_bpc})
                checkpoint(step, valid_bpc)
                period["paused"] += time.time() - paused
                eval_seconds += time.time() - paused
    loop_seconds = time.time() - started
    bar.close()
    interrupted = stop.requested
    valid_bpc = None if interrupted else _bpc(evaluator(valid_slice))
    if valid_bpc is not None:
        scalars(step, **{"valid/bpc": valid_bpc, "valid/perplexity": 2 ** valid_bpc})
    checkpoint(step, valid_bpc)
    writer.flush()
    if interrupted:
        log(f"interrupted: saved step {step:,} in {out}; continue with --resume --out {out}")
        raise KeyboardInterrupt

    log(f"trained {step - start_step:,} steps in {time.time() - started:,.0f} s; evaluating the full "
        f"validation and test splits")
    results = {"steps": step, "train_seconds": round(train_seconds(), 1), "data": source,
               "loop_seconds": round(loop_seconds, 3), "loop_steps": step - start_step,
               "loop_eval_seconds": round(eval_seconds, 3), "loop_session_seconds": round(session_seconds, 3),
               # the first report period includes TF's warm-up: leave it out when there are others
               "chars_per_second": round(float(np.median(speeds[1:] or speeds or [0.0])))}
    for name, split_ids in (("valid", valid_ids), ("test", test_ids)):
        t0 = time.time()
        nats = evaluator(split_ids)
        results.update({f"{name}_bpc": round(_bpc(nats), 4), f"{name}_perplexity": round(math.exp(nats), 4),
                        f"{name}_chars": len(split_ids) - 1})
        log(f"{name}: bpc {_bpc(nats):.4f}, perplexity {math.exp(nats):.3f} over {len(split_ids) - 1:,} "
            f"characters ({time.time() - t0:.1f} s)")
        scalars(step, **{f"final/{name}_bpc": _bpc(nats)})
        if True in model.eval_fetches:
            forced = _bpc(evaluator(split_ids, teacher_forced=True))
            results[f"{name}_bpc_teacher_forced"] = round(forced, 4)
            log(f"{name}, feeding back the true previous characters instead: bpc {forced:.4f}")
    write_json(out / RESULTS, results)
    writer.close()
    sess.close()
    log(f"results in {out / RESULTS}; sample with: python sample.py --checkpoint {out}")
    return results


def main(architecture, hparams, build_graph, argv=None):
    """Runs train() for an architecture's script; user mistakes become one line and a non-zero exit."""
    try:
        train(architecture, hparams, build_graph, argv)
    except (UserError, data.DataError) as e:
        print(f"{architecture}.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. --out names a file, or a folder that cannot be written
        print(f"{architecture}.py: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
