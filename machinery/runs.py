"""Run folders: config.json beside the TF checkpoints; starting or resuming a run from the command line;
saving, pruning and restoring checkpoints; the lock that keeps two trainings out of one folder; load_run.

A run only ever deletes what it wrote: config.json lists the checkpoints it saved ("saved"), and pruning
removes exactly those files. Every JSON file is written atomically.
"""
import contextlib
import hashlib
import json
import math
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from data import UserError
from machinery import architectures, sessions, settings
from machinery.tf1 import tf

CONFIG = "config.json"
RESULTS = "results.json"
LOCK = ".lock"
PREFIX = "model.ckpt"
BEST = "best"
READ_ATTEMPTS = 20  # load_run: tries at a checkpoint that a live run keeps replacing

try:  # the run-folder lock: fcntl on POSIX systems, msvcrt on Windows
    import fcntl
except ImportError:
    fcntl = None
    import msvcrt


# ---------------------------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------------------------
def write_json(path, obj):
    """Writes JSON atomically: a crash or a full disk leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def check_writable(folder):
    """UserError unless a file can be created in folder (found out before training, not at the first save)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError(f"cannot write in {folder} ({e.strerror}); pass another --out") from None


def check_free_space(folder, model):
    """UserError unless folder's disk has room for the saves ahead: a new checkpoint is written before the
    oldest is pruned, and best/ gets its own, so two checkpoints' worth and a megabyte for the rest (config,
    TensorBoard events). An empty file can still be made on a full disk, so this asks for the space itself."""
    checkpoint_bytes = sum(4 * int(np.prod(v.shape.as_list())) for v in model.saved_variables)
    needed = 2 * checkpoint_bytes + (1 << 20)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:  # the platform cannot tell: the first save will
        return
    if free < needed:
        raise UserError(f"{folder} has {free / 2 ** 20:,.1f} MB free and a run of this model needs about "
                        f"{needed / 2 ** 20:,.1f} MB to save its checkpoints; free some space or pass another --out")


def remove_dead_save(folder):
    """Deletes the temporary files of a save that died before it finished (kill -9, a crash) in a folder with
    no config.json: the Saver's *_temp* and *.tempstate* files are only ever its own scratch files."""
    folder = Path(folder)
    if folder.is_dir() and not (folder / CONFIG).exists():
        _remove(p for pattern in (f"{PREFIX}-*_temp*", f"{PREFIX}-*.tempstate*", f"{BEST}/{PREFIX}-*_temp*",
                                  f"{BEST}/{PREFIX}-*.tempstate*") for p in list(folder.glob(pattern)))


def earlier_run_files(folder):
    """The name of a file in folder that an earlier run left (config, results, a checkpoint), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for pattern in (PREFIX + "*", f"{BEST}/{PREFIX}*", "checkpoint", CONFIG, RESULTS):
        for path in sorted(folder.glob(pattern)):
            return str(path.relative_to(folder))
    return None


def corpus_id(ids):
    """What identifies a corpus, wherever it lies: its length and the SHA-1 of its character ids."""
    return {"data_chars": len(ids), "data_sha1": hashlib.sha1(np.ascontiguousarray(ids).tobytes()).hexdigest()}


@contextlib.contextmanager
def lock(folder):
    """Holds folder's lock for the block; UserError naming the holder if another process holds it.

    The operating system releases the lock when its process ends, however it ends (kill -9 included).
    """
    path = Path(folder) / LOCK
    handle = open(path, "a+")
    try:
        try:
            if fcntl:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            try:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
            except OSError:  # Windows does not let others read a locked byte
                holder = "another process"
            raise UserError(f"{folder} is in use by another training run ({holder}); wait for it to end, "
                            f"or pass another --out") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
            handle.flush()
        except OSError as e:  # a full disk: the lock is held, but its note of who holds it cannot be written
            raise UserError(f"cannot write in {folder} ({e.strerror}); free some space or pass another --out") from None
        yield
    finally:
        handle.close()


# ---------------------------------------------------------------------------------------------
# config.json.
# ---------------------------------------------------------------------------------------------
_CONFIG_TYPES = {"architecture": str, "hparams": dict, "data": str, "step": int, "checkpoint": str,
                 "batch_position": list, "train_seconds": (int, float), "best_valid_bpc": (int, float, type(None))}
_OPTIONAL_TYPES = {"saved": list, "best_saved": list, "best_step": int, "budget_start": (int, float),
                   "data_chars": int, "data_sha1": str}  # keys that older run folders lack


def write_config(folder, config):
    """Writes config.json of a run folder; returns config."""
    write_json(Path(folder) / CONFIG, config)
    return config


def read_config(folder):
    """The config.json of a run folder, its structure checked; UserError if there is none or it is damaged.
    Its hyperparameters are checked by check_hparams, once the architecture is known."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such run folder")
    path = folder / CONFIG
    if not path.exists():
        raise UserError(f"{folder} holds no {CONFIG}, so no checkpoint of a training run")
    try:
        config = json.loads(path.read_text())
    except (ValueError, OSError):
        config = None
    if not isinstance(config, dict):
        raise UserError(f"{path} is damaged (not a run's JSON config); restore it, or train again with another --out")
    for key, kind in {**_CONFIG_TYPES, **{k: v for k, v in _OPTIONAL_TYPES.items() if k in config}}.items():
        value = config.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(f"{path} is damaged: {key} is {'missing' if value is None else repr(value)}; "
                            f"restore it, or train again with another --out")
    if not 0 <= config["step"] <= settings.RANGES["num_steps"][1]:
        raise UserError(f"{path} is damaged: step {config['step']:,} is outside 0..{settings.RANGES['num_steps'][1]:,}; "
                        f"restore it, or train again with another --out")
    if not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in config["batch_position"]):
        raise UserError(f"{path} is damaged: batch_position must be a list of whole numbers from 0 up; restore it, "
                        f"or train again with another --out")
    for key in ("train_seconds", "budget_start"):
        if key in config and not (math.isfinite(config[key]) and config[key] >= 0):
            raise UserError(f"{path} is damaged: {key} is {config[key]!r}, not a number of seconds from 0 up; "
                            f"restore it, or train again with another --out")
    for key in ("saved", "best_saved"):
        config[key] = [s for s in config.get(key, []) if isinstance(s, int)]
    return config


def check_hparams(config, folder, hparams):
    """Checks config["hparams"] with the command line's rules for an architecture's hparams; settings that
    later versions added take their defaults. UserError naming the first bad one."""
    try:
        config["hparams"] = settings.check_settings(
            {**settings.defaults({}), **settings.introduced_later(hparams), **config["hparams"]}, hparams)
    except UserError as e:
        raise UserError(f"{Path(folder) / CONFIG} is damaged: {e}; restore it, or train again with another --out") \
            from None
    return config


# ---------------------------------------------------------------------------------------------
# Starting or resuming a run from the command line.
# ---------------------------------------------------------------------------------------------
def configure(architecture, hparams, argv):
    """(hp, out, data_path, config or None): a run's settings from the command line argv and, with --resume,
    from its folder. UserError for a folder that a new run must not use, or a resume that would change the model."""
    args = vars(settings.build_parser(architecture, hparams).parse_args(argv))
    out = Path(args.pop("out", f"checkpoints/{architecture.split('_')[0]}"))
    resume = args.pop("resume", False)
    data_path = args.pop("data", None)
    if str(out) in ("", "."):
        raise UserError("--out must name a run folder, not the current folder")
    given = {k: v for k, v in args.items() if k in hparams or k in settings.LOOP_OPTIONS}
    if not resume:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file, not a folder; pass another --out")
        remove_dead_save(out)
        earlier = earlier_run_files(out)
        if earlier and not (out / CONFIG).exists() and not (out / RESULTS).exists():
            leftovers = sorted(str(p.relative_to(out)) for p in out.glob(PREFIX + "*"))
            raise UserError(f"{out} holds checkpoint files but no {CONFIG}, so no run that can be continued (a "
                            f"first save that was killed?): delete {', '.join(leftovers)}, or pass another --out")
        if earlier:
            raise UserError(f"{out} already holds a run ({earlier}); pass --resume to continue it, "
                            f"or --out DIR for a new one")
        return {**settings.defaults(hparams), **given}, out, data_path, None
    config = read_config(out)
    if config["architecture"] != architecture:
        raise UserError(f"{out} holds a run of {config['architecture']}, not {architecture}")
    hp = check_hparams(config, out, hparams)["hparams"]
    changed = [k for k, v in given.items() if k in hparams and k != "num_steps" and hp[k] != v]
    if changed:
        flag = "--" + changed[0].replace("_", "-")
        raise UserError(f"--resume continues {out} with its saved {flag} {hp[changed[0]]}; "
                        f"drop {flag} or start a new run with another --out")
    hp = {**hp, **{k: v for k, v in given.items() if k in settings.LOOP_OPTIONS or k == "num_steps"}}
    if "time_budget" in given:  # a new budget counts from now
        config["budget_start"] = config["train_seconds"]
    spent = (config["train_seconds"] - config.get("budget_start", 0.0)) / 60
    if hp["time_budget"] and spent >= hp["time_budget"] and config["step"] < hp["num_steps"]:
        raise UserError(f"{out} has spent its time budget ({hp['time_budget']:g} minutes); pass --time-budget "
                        f"MINUTES for more, or --time-budget 0 for none")
    return hp, out, data_path, config


def resumed_data(config, data_path):
    """The --data a resumed run loads: the path given, else the one its config.json names (None: text8).
    UserError if that file is gone."""
    if data_path is not None or config["data"] == "text8":
        return data_path
    if not Path(config["data"]).exists():
        raise UserError(f"the run's corpus {config['data']} is gone; pass --data with where it is now")
    return config["data"]


def check_corpus(config, ids, source):
    """UserError unless the corpus ids is the one a resumed run trained on (runs before this check was made
    record nothing, and are trusted)."""
    if "data_sha1" in config and corpus_id(ids) != {k: config[k] for k in ("data_chars", "data_sha1")}:
        raise UserError(f"{source} is not the text this run trained on ({config['data']}, "
                        f"{config['data_chars']:,} characters); pass that text with --data")


# ---------------------------------------------------------------------------------------------
# Checkpoints.
# ---------------------------------------------------------------------------------------------
def _checkpoint_files(folder, step):
    """The files the Saver writes for a step (and its temporary ones)."""
    return list(Path(folder).glob(f"{PREFIX}-{step}.*")) + list(Path(folder).glob(f"{PREFIX}-{step}_temp*"))


def _remove(paths):
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()


def _reason(error):
    """The operating system's words in a TensorFlow error ("No space left on device"), or its kind."""
    for line in error.message.splitlines():
        if "; " in line and not line.startswith((" ", "\t")):
            return line.rsplit("; ", 1)[1].strip()
    return type(error).__name__


def save_checkpoint(sess, model, folder, config, state, keep):
    """Saves the variables and the carried state as model.ckpt-STEP in folder, then config.json naming it,
    then deletes the checkpoints this run saved before the last keep. Returns the new config.

    UserError if it cannot be saved (a full disk): the files of that step are removed, and config.json
    still names the last good checkpoint.
    """
    folder, step = Path(folder), config["step"]
    before = set(_checkpoint_files(folder, step))  # what is there already is not this save's to clean up
    try:
        model.saved_state.load(state, sess)
        prefix = model.saver.save(sess, str(folder / PREFIX), global_step=step, write_meta_graph=False,
                                  write_state=False)
        saved = [s for s in config["saved"] if s != step] + [step]
        new = write_config(folder, {**config, "checkpoint": Path(prefix).name, "saved": saved[-keep:]})
    except (tf.errors.OpError, OSError) as e:
        _remove(set(_checkpoint_files(folder, step)) - before)
        reason = e.strerror if isinstance(e, OSError) else _reason(e)
        last = (f"the last good checkpoint is {config['checkpoint']} in {folder}" if config.get("checkpoint")
                else "no checkpoint was saved before")
        raise UserError(f"could not save step {step:,} in {folder} ({reason}); {last}") from None
    for old in saved[:-keep]:
        _remove(_checkpoint_files(folder, old))
    return new


def restore(sess, model, folder, config, check_step=False):
    """Loads the checkpoint config.json names; returns the carried state. UserError if its files are missing,
    damaged, or do not fit the graph, and with check_step (a resumed run) if its step is not config.json's."""
    prefix = Path(folder) / config["checkpoint"]
    if not Path(str(prefix) + ".index").exists():
        raise UserError(f"{folder}: the checkpoint {config['checkpoint']} that {CONFIG} names is missing")
    try:
        shapes = tf.train.NewCheckpointReader(str(prefix)).get_variable_to_shape_map()
        for variable in model.saved_variables:  # restoring does not check the shapes of resource variables
            name, shape = variable.op.name, variable.shape.as_list()
            if shapes.get(name, shape) != shape:
                raise UserError(f"{prefix} does not fit the model {CONFIG} describes: {name} is {shapes[name]} "
                                f"in the checkpoint, {shape} in the model")
        model.saver.restore(sess, str(prefix))
        saved_step = int(sess.run(model.global_step))
        if check_step and saved_step != config["step"]:  # a hand-edited step would misplace the schedule and the budget
            raise UserError(f"{Path(folder) / CONFIG} says step {config['step']:,} but its checkpoint "
                            f"{config['checkpoint']} holds step {saved_step:,}; restore config.json, or set its "
                            f"step to {saved_step}")
        return sess.run(model.saved_state)
    except tf.errors.NotFoundError:
        raise UserError(f"{prefix}: its files are missing or do not hold this model's variables; the run "
                        f"folder is damaged") from None
    except tf.errors.OpError:
        raise UserError(f"{prefix} is damaged or does not fit the model {CONFIG} describes") from None


def restore_cursors(batch, position):
    """Puts a Batch's cursors back where a checkpoint's config.json says they stood; UserError if they do not fit
    the text and the batch size."""
    if len(position) != batch.batch_size or not all(0 <= p < len(batch.text) for p in position):  # Python ints: any size
        raise UserError(f"the saved batch position does not fit this text and batch_size {batch.batch_size}")
    batch.cursors = np.array(position, dtype=np.int64)


def load_run(folder, graph=None, finalize=True, restore_weights=True):
    """(config, model, session) of the checkpoint a run folder's config.json names; UserError if unusable.

    graph: "post" or "fast" (default: the run's own). finalize=False leaves the graph open for more ops;
    restore_weights=False initialises it afresh instead.
    """
    config = read_config(folder)
    if config["architecture"] not in architectures.NAMES:
        raise UserError(f"{Path(folder) / CONFIG} names the architecture {config['architecture']!r}; "
                        f"known ones are {', '.join(architectures.NAMES)}")
    module = architectures.script(config["architecture"])
    hp = check_hparams(config, folder, module.HPARAMS)["hparams"]
    model = module.GRAPHS[graph or hp["graph"]](hp)
    if finalize:
        model.graph.finalize()
    sess = sessions.new_session(model)
    if not restore_weights:
        sess.run(model.init)
        return config, model, sess
    # A run that is training saves and prunes as it goes: the checkpoint config.json named may be gone by the
    # time it is read. The graph is built once (that is the slow part) and the newest checkpoint read again,
    # as often as the run moves on under us; a checkpoint that stays named and broken is an error.
    for attempt in range(READ_ATTEMPTS):
        try:
            restore(sess, model, folder, config)
            return config, model, sess
        except UserError:
            newer = read_config(folder)
            if attempt == READ_ATTEMPTS - 1 or newer["checkpoint"] == config["checkpoint"]:
                sess.close()
                raise
            config = check_hparams(newer, folder, module.HPARAMS)
