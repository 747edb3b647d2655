"""Checkpoints in a run folder: the latest few and the best by validation saved, pruned and restored, and
load_run, which gives the tools a run folder's model.

A save writes the Saver's files first and config.json naming them last, so config.json always names a
checkpoint that is all there; best/ has its own config.json, the record of the best checkpoint.
"""
from pathlib import Path

import numpy as np

from machinery import folder, sessions
from machinery.command import UserError
from machinery.folder import BEST, CONFIG, PREFIX
from machinery.tf1 import tf

READ_ATTEMPTS = 20  # load_run: tries at a checkpoint that a live run keeps replacing


def _reason(error):
    """The operating system's words in a TensorFlow error ("No space left on device"), or its kind."""
    for line in error.message.splitlines():
        if "; " in line and not line.startswith((" ", "\t")):
            return line.rsplit("; ", 1)[1].strip()
    return type(error).__name__


def save_checkpoint(sess, model, where, config, state, keep):
    """Saves the variables and the carried state as model.ckpt-STEP in where, then config.json naming it,
    then deletes the checkpoints this run saved there before the last keep. Returns the new config.

    UserError if it cannot be saved (a full disk): the files of that step are removed, and config.json
    still names the last good checkpoint, if there is one.
    """
    where, step = Path(where), config["step"]
    before = set(folder.checkpoint_files(where, step))  # what is there already is not this save's to clean up
    try:
        model.saved_state.load(state, sess)
        prefix = model.saver.save(sess, str(where / PREFIX), global_step=step, write_meta_graph=False,
                                  write_state=False)
        saved = [s for s in config["saved"] if s != step] + [step]
        new = folder.write_config(where, {**config, "checkpoint": Path(prefix).name, "saved": saved[-keep:]})
    except (tf.errors.OpError, OSError, UserError) as e:
        folder.remove(set(folder.checkpoint_files(where, step)) - before)
        reason = e.strerror if isinstance(e, OSError) else _reason(e) if isinstance(e, tf.errors.OpError) else e
        last = (f"the last good checkpoint is {config['checkpoint']} in {where}" if config.get("checkpoint")
                else "no checkpoint was saved there before")
        raise UserError(f"could not save step {step:,} in {where} ({reason}); {last}") from None
    for old in saved[:-keep]:
        folder.remove(folder.checkpoint_files(where, old))
    return new


def save(sess, model, out, config, state, valid_bpc=None):
    """Saves config's step as the latest checkpoint of the run folder out (the run keeps hp["keep"] of them)
    and, when valid_bpc beats the best so far, in best/ as well; returns the new config.

    best/config.json is the record of the best checkpoint, written after its files; out's config.json repeats
    it (best_step, best_valid_bpc) once best/ is saved."""
    config = save_checkpoint(sess, model, out, config, state, config["hparams"]["keep"])
    best_step, best_bpc = folder.read_best(out)
    if valid_bpc is None or (best_bpc is not None and valid_bpc >= best_bpc):
        return config
    best = Path(out) / BEST
    best.mkdir(exist_ok=True)
    previous = folder.read_config(best) if best_step is not None else {"checkpoint": None, "saved": []}
    record = {**config, "best_valid_bpc": valid_bpc, "best_step": config["step"]}
    save_checkpoint(sess, model, best, {**record, "checkpoint": previous["checkpoint"], "saved": previous["saved"]},
                    state, 1)
    return folder.write_config(out, {**record, "best_saved": [config["step"]]})


def restore_cursors(batch, position):
    """Puts a Batch's cursors back where a checkpoint's config.json says they stood; UserError if they do not fit
    the text and the batch size."""
    if len(position) != batch.batch_size or not all(0 <= p < len(batch.text) for p in position):  # Python ints: any size
        raise UserError(f"the saved batch position does not fit this text and batch_size {batch.batch_size}")
    batch.cursors = np.array(position, dtype=np.int64)


def restore(sess, model, where, config, check_step=False):
    """Loads the checkpoint config.json names; returns the carried state. UserError if its files are missing,
    damaged, or do not fit the graph, and with check_step (a resumed run) if its step is not config.json's."""
    prefix = Path(where) / config["checkpoint"]
    if not Path(str(prefix) + ".index").exists():
        raise UserError(f"{where}: the checkpoint {config['checkpoint']} that {CONFIG} names is missing")
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
            raise UserError(f"{Path(where) / CONFIG} says step {config['step']:,} but its checkpoint "
                            f"{config['checkpoint']} holds step {saved_step:,}; restore config.json, or set its "
                            f"step to {saved_step}")
        return sess.run(model.saved_state)
    except tf.errors.NotFoundError:
        raise UserError(f"{prefix}: its files are missing or do not hold this model's variables; the run "
                        f"folder is damaged") from None
    except tf.errors.OpError:
        raise UserError(f"{prefix} is damaged or does not fit the model {CONFIG} describes") from None


def load_run(where, scripts, *, graph=None, finalize=True, restore_weights=True):
    """(config, model, session) of the checkpoint a run folder's config.json names; UserError if unusable.

    scripts: the architectures' script modules (their ARCHITECTURE, HPARAMS and GRAPHS), of which config.json
    names one. graph: "post" or "fast" (default: the run's own). finalize=False leaves the graph open for more
    ops; restore_weights=False initialises it afresh instead.
    """
    config = folder.read_config(where)
    known = {script.ARCHITECTURE: script for script in scripts}
    if config["architecture"] not in known:
        raise UserError(f"{Path(where) / CONFIG} names the architecture {config['architecture']!r}; "
                        f"known ones are {', '.join(known)}")
    script = known[config["architecture"]]
    hp = folder.check_hparams(config, where, script.HPARAMS)["hparams"]
    model = script.GRAPHS[graph or hp["graph"]](hp)
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
            restore(sess, model, where, config)
            return config, model, sess
        except UserError:
            newer = folder.read_config(where)
            if attempt == READ_ATTEMPTS - 1 or newer["checkpoint"] == config["checkpoint"]:
                sess.close()
                raise
            config = folder.check_hparams(newer, where, script.HPARAMS)
