"""Starting or resuming a run from the command line: its settings, and its data checked and loaded.

What a run folder holds is only looked at under its lock (training.Run), so that a run that is saving is never
disturbed by a second one started into the same folder.
"""
from pathlib import Path

import batches
import data
from machinery import folder, settings
from machinery.command import UserError


def configure(architecture, hparams, argv):
    """(hp, out, data_path, config or None): a run's settings from the command line argv and, with --resume,
    from its folder's config.json. UserError for a --data that is not there, or a resume that would change the
    model."""
    args = vars(settings.build_parser(architecture, hparams).parse_args(argv))
    out = Path(args.pop("out", f"checkpoints/{architecture.split('_')[0]}"))
    resume = args.pop("resume", False)
    data_path = args.pop("data", None)
    if data_path is not None:
        data.check_path(data_path)  # a mistyped --data is said first, whatever the folder holds
    if str(out) in ("", "."):
        raise UserError("--out must name a run folder, not the current folder")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; pass another --out")
    given = {k: v for k, v in args.items() if k in hparams or k in settings.LOOP_OPTIONS}
    if not resume:
        return {**settings.defaults(hparams), **given}, out, data_path, None
    folder.check_not_in_use(out)  # a run that is saving may not have written config.json yet
    config = folder.read_config(out)
    if config["architecture"] != architecture:
        raise UserError(f"{out} holds a run of {config['architecture']}, not {architecture}")
    hp = folder.check_hparams(config, out, hparams)["hparams"]
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
    """UserError unless the corpus ids is the one a resumed run trained on (a config.json without the corpus's
    identity is trusted)."""
    if "data_sha1" in config and folder.corpus_id(ids) != {k: config[k] for k in ("data_chars", "data_sha1")}:
        raise UserError(f"{source} is not the text this run trained on ({config['data']}, "
                        f"{config['data_chars']:,} characters); pass that text with --data")


def load_data(hp, data_path, config, log):
    """(source, ids, (train, valid, test) ids) of a run: --data, or a resumed run's own corpus (checked), split
    90/5/5; UserError if a split is too short for hp's batches or for scoring."""
    if config is not None:
        data_path = resumed_data(config, data_path)
    ids, source = data.load_corpus(data_path, log=log)
    if config is not None:
        check_corpus(config, ids, source)
    splits = data.split(ids)
    batches.check_size(splits[0], hp["batch_size"], hp["num_unrollings"], name="train")
    for name, split_ids in zip(("valid", "test"), splits[1:]):
        if len(split_ids) < 2:
            raise data.DataError(f"the {name} split has {len(split_ids)} characters, too few to evaluate; "
                                 f"use a text of at least 40 characters")
    return source, ids, splits
