"""The settings of a run and their rules: every hyperparameter and option of the training scripts, checked
the same way on the command line and in a run folder's config.json.
"""
import argparse
import difflib
import math
import os
import re

from machinery.command import UserError
from machinery import graphs


LOOP_OPTIONS = dict(  # options of the run rather than the model; none of them changes what is learnt
    graph=("post", "post: the post's graph, as the script writes it; fast: the same model rewritten for "
                   "speed (machinery/fast.py, 1.4 to 2 times quicker), proven equal by the tests"),
    summary_frequency=(1000, "steps between report lines"),
    eval_frequency=(10_000, "steps between validations, samples and checkpoints"),
    valid_chars=(100_000, "validation characters used by the periodic validation (the end uses all)"),
    keep=(3, "latest checkpoints kept (the best by validation is kept as well, in best/)"),
    seed=(1, "random seed of the weights and the samples; the same seed repeats a CPU run"),
    threads=(0, "CPU threads, each running one op at a time (0: one per core this process may use)"),
    time_budget=(0.0, "minutes of training after which the run ends, as if it had reached --num-steps (the "
                      "learning rate keeps its schedule: --decay-minutes makes it follow the clock); 0: none"),
    patience=(0, "early stopping: the run ends when this many validations in a row have not beaten the best "
                 "(its checkpoint is in best/); 0: never"),
)
# Settings a run folder's config.json may lack, and the value a run without them trained with.
OPTIONAL_SETTINGS = {"init": "default", "patience": 0, "recurrent_init": "default", "decay_minutes": 0.0,
                     "warmup_steps": 0, "dropout": 0.0}
CHOICES = {"activation": tuple(graphs.ACTIVATIONS), "combine": tuple(graphs.COMBINES),
           "optimizer": tuple(graphs.OPTIMIZERS), "graph": ("post", "fast"), "init": graphs.INITS,
           "recurrent_init": graphs.RECURRENT_INITS}
# The range of every number, wide enough for any sensible run and narrow enough that the graph can be built
# and float32 holds the value: (low, high), or (None, high) for "above 0".
RANGES = {
    "batch_size": (1, 4096), "num_nodes": (1, 4096), "num_unrollings": (1, 1000), "num_steps": (1, 10 ** 9),
    "decay_steps": (1, 10 ** 9), "summary_frequency": (1, 10 ** 9), "eval_frequency": (1, 10 ** 9),
    "valid_chars": (2, 10 ** 10), "keep": (1, 1000), "seed": (0, 2 ** 31 - 1), "threads": (0, 1024),
    "learning_rate": (1e-8, 1e4), "decay_rate": (1e-6, 1.0), "clip_norm": (1e-6, 1e6), "time_budget": (0, 1e6), "patience": (0, 10 ** 6),
    "decay_minutes": (0, 1e6), "warmup_steps": (0, 10 ** 9), "dropout": (0, 0.95),
}


def optional_settings(hparams):
    """The OPTIONAL_SETTINGS an architecture (hparams) or the loop takes."""
    return {name: value for name, value in OPTIONAL_SETTINGS.items() if name in hparams or name in LOOP_OPTIONS}


def cores():
    """The CPU cores this process may use (its affinity, where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads(hp):
    """The CPU threads a run uses: hp["threads"], or every core this process may use when it is 0."""
    return hp.get("threads") or cores()


def defaults(hparams):
    """The default settings of a run: an architecture's hyperparameters and the loop's options."""
    return {name: default for name, (default, _) in {**hparams, **LOOP_OPTIONS}.items()}


def _number(value):
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def out_of_range(value, low=None, high=None, above=None):
    """None when value is inside the range (bounds included), else the range: "it must be at least ..."."""
    if (math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
            and (above is None or value > above)):
        return None
    bounds = [f"above {_number(above)}" if above is not None else None,
              f"at least {_number(low)}" if low is not None else None,
              f"at most {_number(high)}" if high is not None else None]
    return f"it must be {' and '.join(b for b in bounds if b)}"


def checked_number(kind, low=None, high=None, above=None):
    """An argparse type: kind (int or float), at least low, at most high, and greater than above."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        problem = out_of_range(value, low, high, above)
        if problem:
            raise argparse.ArgumentTypeError(f"{text} is out of range: {problem}")
        return value
    return convert


def check_setting(name, value, default):
    """value if it is a valid value of the setting name (whose default is default); else UserError."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif name in CHOICES:
        ok = value in CHOICES[name]
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool) and not out_of_range(value, *RANGES[name])
    else:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and not out_of_range(value, *RANGES[name]))
    if not ok:
        expected = ("true or false" if isinstance(default, bool) else f"one of {', '.join(CHOICES[name])}"
                    if name in CHOICES else f"{'an integer' if isinstance(default, int) else 'a number'} "
                    f"from {_number(RANGES[name][0])} to {_number(RANGES[name][1])}")
        raise UserError(f"{name} is {value!r}; it must be {expected}")
    return value


def check_settings(hp, hparams):
    """hp, with every setting an architecture (hparams) and the loop take checked; UserError naming the
    first missing, unknown or invalid one."""
    known = defaults(hparams)
    missing, unknown = sorted(set(hparams) - set(hp)), sorted(set(hp) - set(known))
    if missing or unknown:
        raise UserError(f"{'it lacks ' + ', '.join(missing) if missing else 'unknown setting ' + ', '.join(unknown)}")
    for name, value in hp.items():
        check_setting(name, value, known[name])
    return hp


# ---------------------------------------------------------------------------------------------
# The command line: every setting as --name-with-dashes.
# ---------------------------------------------------------------------------------------------
def description(docstring):
    """A tool's --help description: the first paragraph of its module's docstring, on one line."""
    return " ".join(docstring.split("\n\n")[0].split())


class OneLineParser(argparse.ArgumentParser):
    """The tools' parser: an error is one line; an option must be spelt out (--num-step is not --num-steps)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)
        # -inf, -nan and -1e5 are values, not options, so that they get the range check's words (argparse's own
        # pattern knows only -5 and -0.5, and calls --learning-rate -inf a missing argument)
        self._negative_number_matcher = re.compile(r"^-(\d+|\d*\.\d+|\d+\.?\d*e[-+]?\d+|inf|infinity|nan)$",
                                                   re.IGNORECASE)

    def error(self, message):
        """One line, no usage dump: what is wrong, the option meant when one was mistyped, and where to look."""
        if message.startswith("unrecognized arguments: "):
            known = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            for word in message.split(": ", 1)[1].split():
                meant = difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.75)
                if word.startswith("--") and meant:
                    message = f"unrecognized argument {word}: did you mean {meant[0]}?"
                    break
        if message.startswith("the following arguments are required: "):
            named = message.split(": ", 1)[1].split(", ")
            choices = [a for a in self._actions if a.required and a.choices and a.dest in named]
            if choices:  # experiments.py without a set: name them
                message = f"name the {choices[0].dest} to run: {', '.join(choices[0].choices)}"
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _value_type(name, default):
    """How a numeric setting is read from the command line."""
    return checked_number(int if isinstance(default, int) else float, *RANGES[name])


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
                               metavar="MINUTES" if name == "time_budget" else "N" if isinstance(default, int) else "X")
    return parser
