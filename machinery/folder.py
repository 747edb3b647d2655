"""The run folder: config.json beside the TF checkpoints, written atomically and checked when read; the lock that
keeps two trainings out of one folder; what an earlier run or a save that died left in it.

A run only ever deletes what it wrote: config.json lists the checkpoints it saved ("saved"), pruning removes
exactly those, and the scratch files of a save that died are the Saver's own.
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

from machinery import settings
from machinery.command import UserError

CONFIG = "config.json"
RESULTS = "results.json"
LOCK = ".lock"
PREFIX = "model.ckpt"
BEST = "best"

try:  # the lock: fcntl on POSIX systems, msvcrt on Windows
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
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror}); free some space, or pass another --out") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def remove(paths):
    """Deletes files and folders, those already gone included."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()


def check_writable(folder):
    """UserError unless a file can be created in folder (found out before training, not at the first save)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError(f"cannot write in {folder} ({e.strerror}); pass another --out") from None


def _size(size):
    """Bytes as a person reads them: MB, or KB below ten megabytes (so that two sizes that differ look apart)."""
    return f"{size / 2 ** 20:,.1f} MB" if size >= 10 * 2 ** 20 else f"{size / 2 ** 10:,.0f} KB"


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
        raise UserError(f"{folder} has {_size(free)} free and a run of this model needs about {_size(needed)} to "
                        f"save its checkpoints; free some space or pass another --out")


def checkpoint_files(folder, step):
    """The files the Saver writes for a step in folder, its scratch files included."""
    return list(Path(folder).glob(f"{PREFIX}-{step}[._]*"))


def remove_dead_saves(folder):
    """Deletes what saves that died (kill -9, a power cut) left in folder and in its best/: the Saver's scratch
    files, and the files of a step later than the one config.json records that it neither lists nor names
    (written, never recorded). Only called under the folder's lock, so no live save is running."""
    for where in (Path(folder), Path(folder) / BEST):
        remove(p for pattern in (f"{PREFIX}-*_temp*", f"{PREFIX}-*.tempstate*") for p in list(where.glob(pattern)))
        try:
            config = json.loads((where / CONFIG).read_text())
            recorded, kept = int(config["step"]), {*config.get("saved", []), config.get("checkpoint")}
        except (ValueError, OSError, KeyError, TypeError, AttributeError):
            continue  # no config.json, or a damaged one (said when it is read): nothing is deleted
        steps = {p.name[len(PREFIX) + 1:].split(".")[0] for p in where.glob(f"{PREFIX}-*")}
        remove(p for s in steps if s.isdigit() and int(s) > recorded and int(s) not in kept
               and f"{PREFIX}-{s}" not in kept for p in checkpoint_files(where, s) if p.is_file())


def earlier_run_files(folder):
    """The name of a file in folder that an earlier run left (config, results, a checkpoint), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for pattern in (PREFIX + "*", f"{BEST}/{PREFIX}*", "checkpoint", CONFIG, RESULTS):
        for path in sorted(folder.glob(pattern)):
            if pattern != "checkpoint" or path.is_file():
                return str(path.relative_to(folder))
    return None


def check_new_run(out):
    """UserError unless out can take a new run: no earlier run's files in it."""
    earlier = earlier_run_files(out)
    if earlier and not (out / CONFIG).exists() and not (out / RESULTS).exists():
        leftovers = sorted(str(p.relative_to(out)) for p in list(out.glob(PREFIX + "*")) + list(out.glob("checkpoint")))
        raise UserError(f"{out} holds checkpoint files but no {CONFIG}, so no run that can be continued (a first "
                        f"save that was killed?): delete {', '.join(leftovers) or earlier}, or pass another --out")
    if earlier:
        raise UserError(f"{out} already holds a run ({earlier}); pass --resume to continue it, "
                        f"or --out DIR for a new one")


def corpus_id(ids):
    """What identifies a corpus, wherever it lies: its length and the SHA-1 of its character ids."""
    return {"data_chars": len(ids), "data_sha1": hashlib.sha1(np.ascontiguousarray(ids).tobytes()).hexdigest()}


# ---------------------------------------------------------------------------------------------
# The lock.
# ---------------------------------------------------------------------------------------------
def _lock_file(handle):
    """Takes the lock of an open .lock file without waiting; OSError if another process holds it."""
    if fcntl:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)


def _in_use(folder, handle):
    """The UserError of a folder whose lock another process holds, naming the holder."""
    try:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
    except OSError:  # Windows does not let others read a locked byte
        holder = "another process"
    return UserError(f"{folder} is in use by another training run ({holder}); wait for it to end, or pass "
                     f"another --out")


def check_not_in_use(folder):
    """UserError if another process holds folder's lock (said before its files are read)."""
    path = Path(folder) / LOCK
    if not path.is_file():
        return
    with open(path, "r") as handle:
        try:
            _lock_file(handle)
        except OSError:
            raise _in_use(folder, handle) from None


@contextlib.contextmanager
def lock(folder):
    """Holds folder's lock for the block; UserError naming the holder if another process holds it.

    The operating system releases the lock when its process ends, however it ends (kill -9 included).
    """
    path = Path(folder) / LOCK
    if path.exists() and not path.is_file():
        raise UserError(f"{path} is not a file (a training run's lock is); delete it, or pass another --out")
    handle = open(path, "a+")
    try:
        try:
            _lock_file(handle)
        except OSError:
            raise _in_use(folder, handle) from None
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


@contextlib.contextmanager
def claim(out):
    """The run folder out for the length of a run: made if need be, checked writable, locked (lock()), and
    cleared of what saves that died left in it. A run that fails leaves no lock file it made behind, and a run
    that fails before writing anything there leaves not even the folders made for it."""
    made = [p for p in (out, *out.parents) if not p.exists()]  # innermost first
    lock_made = not (out / LOCK).exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        check_writable(out)  # a read-only folder or a full disk is found now, not at the first save
        with lock(out):
            try:
                remove_dead_saves(out)  # under the lock: no live save is running
                yield
            except BaseException:
                if lock_made:
                    remove([out / LOCK])
                raise
    except BaseException:
        for path in made:
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty
        raise


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


def new_config(architecture, hp, source, ids, cursors):
    """The config.json of a new run, before its first checkpoint: the architecture, its settings hp, the corpus
    (where it lies, and what identifies it) and the cursors of its batch."""
    return {"architecture": architecture, "hparams": hp, "data": source, **corpus_id(ids), "step": 0,
            "checkpoint": None, "saved": [], "batch_position": cursors, "train_seconds": 0.0, "budget_start": 0.0,
            "best_valid_bpc": None}


def damaged(path, what):
    return UserError(f"{path} is damaged: {what}; restore it, or train again with another --out")


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
            raise damaged(path, f"{key} is {'missing' if value is None else repr(value)}")
    if not 0 <= config["step"] <= settings.RANGES["num_steps"][1]:
        raise damaged(path, f"step {config['step']:,} is outside 0..{settings.RANGES['num_steps'][1]:,}")
    if not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in config["batch_position"]):
        raise damaged(path, "batch_position must be a list of whole numbers from 0 up")
    for key in ("train_seconds", "budget_start"):
        if key in config and not (math.isfinite(config[key]) and config[key] >= 0):
            raise damaged(path, f"{key} is {config[key]!r}, not a number of seconds from 0 up")
    for key in ("saved", "best_saved"):
        config[key] = [s for s in config.get(key, []) if isinstance(s, int)]
    return config


def check_hparams(config, folder, hparams):
    """Checks config["hparams"] with the command line's rules for an architecture's hparams; settings that
    later versions added take their defaults. UserError naming the first bad one."""
    try:
        merged = {**settings.defaults({}), **settings.optional_settings(hparams), **config["hparams"]}
        order = list(settings.defaults(hparams))  # the script's order, as a new run's
        merged = {**{k: merged[k] for k in order if k in merged}, **merged}
        config["hparams"] = settings.check_settings(merged, hparams)
    except UserError as e:
        raise damaged(Path(folder) / CONFIG, e) from None
    return config


def read_best(folder):
    """(step, valid_bpc) of the best checkpoint by validation that best/ holds, or (None, None). best/config.json
    is written after its checkpoint, so it names a checkpoint that is all there, whenever the run was killed."""
    best = Path(folder) / BEST
    if not (best / CONFIG).exists():
        return None, None
    config = read_config(best)
    return config["step"], config["best_valid_bpc"]
