"""When a run stops: at num_steps; when its time budget is spent (checked at every step); when --patience
validations in a row have not beaten the best; at a stop signal (the first Ctrl-C, SIGTERM or SIGHUP ends
the run after the current step, saved); or, without saving, when its loss is no longer finite.
"""
import contextlib
import math
import signal
import time

from machinery import command
from machinery.command import Stopped, UserError


class StopFlag:
    """Turns the first Ctrl-C (or SIGTERM: kill, timeout; SIGHUP: a closing terminal) into a request to save and
    stop at the end of the current step; a second one stops at once, and so does any once `immediate` is set.
    A signal that the run was started ignoring (nohup ignores SIGHUP, a background job SIGINT) stays ignored.
    While `holding()`, signals wait: a save is never cut in half by a second Ctrl-C."""

    def __init__(self):
        self.signal, self.immediate, self._holding, self._waiting = None, False, False, None

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in command.STOP_SIGNALS
                          if signal.getsignal(s) is not signal.SIG_IGN}
        return self

    def _handle(self, signum, frame):
        if self.signal or self.immediate:  # a second signal, or any once the checkpoint is safe
            if self._holding:
                self._waiting = self.signal or signum
                return
            raise Stopped(self.signal or signum)
        self.signal = signum

    @contextlib.contextmanager
    def holding(self):
        """Signals during the block are remembered, not acted on; a second one raises Stopped after it."""
        self._holding, self._waiting = True, None
        try:
            yield
        finally:
            self._holding = False
        if self._waiting:
            raise Stopped(self._waiting)

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


class Stopping:
    """The run's limits, from its settings hp and its config.json: num_steps, the time budget (in training
    seconds: a resumed budget may have started later), and patience; and the clock of its training time."""

    def __init__(self, hp, config):
        self.hp, self.num_steps, self.patience = hp, hp["num_steps"], hp["patience"]
        self.budget = hp["time_budget"] * 60  # seconds; 0: none
        self.budget_start = config.get("budget_start", 0.0)
        self.out_of_patience = self.out_of_time = False
        self.stale, self.best_step = 0, None  # validations since the best, at best_step

    def start(self, step, train_seconds):
        """The steps begin at step, after train_seconds of training in earlier sessions of the run."""
        self.start_step, self.prior_seconds, self.started = step, train_seconds, time.time()

    def train_seconds(self):
        """Seconds of training of the run so far, earlier sessions of a resumed run included."""
        return self.prior_seconds + time.time() - self.started

    def time_left(self, step, train_seconds):
        """(estimated seconds left, whether the budget rather than num_steps ends the run) at step."""
        left = (self.num_steps - step) * (train_seconds - self.prior_seconds) / max(1, step - self.start_step)
        budget_left = max(0.0, self.budget_left(train_seconds))
        return min(left, budget_left), budget_left < left

    def budget_left(self, train_seconds):
        """Seconds of the budget left at train_seconds (inf without a budget)."""
        return self.budget_start + self.budget - train_seconds if self.budget else math.inf

    def time_is_up(self, train_seconds):
        """True once the budget is spent (and from then on)."""
        self.out_of_time = self.out_of_time or self.budget_left(train_seconds) <= 0
        return self.out_of_time

    def should_stop(self, step, train_seconds):
        """True once step is num_steps, the budget is spent or patience ran out."""
        return step >= self.num_steps or self.time_is_up(train_seconds) or self.out_of_patience

    def validated(self, step, best_step):
        """After a validation at step: patience runs out when patience validations in a row have not beaten the
        best, at best_step (stale: how many have not)."""
        self.stale = (step - best_step) // self.hp["eval_frequency"] if best_step is not None else 0
        self.best_step = best_step
        self.out_of_patience = self.patience > 0 and self.stale >= self.patience

    def why(self, step):
        """What ended the steps at step, said, when it was the time budget or patience (else None)."""
        if self.out_of_patience:
            return (f"{self.stale} validations in a row have not beaten the best (step {self.best_step:,}): the run "
                    f"ends here (--patience {self.patience})")
        if self.out_of_time and step < self.num_steps:
            minutes = self.hp["time_budget"]
            return f"the time budget of {minutes:g} minute{'' if minutes == 1 else 's'} is spent: the run ends here"
        return None


def diverged(what, step, checkpoint_step, out):
    """The UserError of a run whose loss or gradient is no longer finite: it stops without saving, so the last
    checkpoint (at checkpoint_step, or none) stays the last good one."""
    kept = (f"the last good checkpoint (step {checkpoint_step:,}) is kept in {out}" if checkpoint_step is not None
            else "no checkpoint was saved yet")
    return UserError(f"{what} at step {step:,}; {kept}. Try a smaller --learning-rate or --clip-norm")


def check_finite(what, value, step, checkpoint_step, out):
    """UserError (diverged) unless value is finite."""
    if not math.isfinite(value):
        raise diverged(f"the {what} became {value}", step, checkpoint_step, out)
