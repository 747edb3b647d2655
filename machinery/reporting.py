"""What a run reports: a line every summary_frequency steps (the steps since the previous line), validations and
samples, a progress bar, and TensorBoard's event file. Time spent validating, saving and sampling is left out
of the speed.
"""
import math
import time

import numpy as np

from machinery.sessions import bpc, perplexity
from machinery.tf1 import tf


def clock(seconds):
    """Seconds as h:mm:ss (m:ss under an hour)."""
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02}:{s:02}" if hours else f"{m}:{s:02}"


def figure(value, width=6):
    """A number for a report line: two decimals, or in powers of ten once it is too large to read (a perplexity
    while a run diverges)."""
    return f"{value:{width}.2f}" if abs(value) < 1e6 else f"{value:{width}.2e}"


def progress_bar(hp, config):
    """A tqdm bar over the steps, or over the budget's seconds when there is a time budget (so that its estimate
    follows the budget); none when the output is not a terminal."""
    from tqdm import tqdm

    if hp["time_budget"] > 0:
        budget = hp["time_budget"] * 60
        spent = min(budget, config["train_seconds"] - config.get("budget_start", 0.0))
        return tqdm(total=round(budget), initial=round(spent), unit="s", disable=None, dynamic_ncols=True,
                    leave=False, bar_format="{l_bar}{bar}| {n:.0f}/{total} s of the budget [{elapsed}<{remaining}]")
    return tqdm(total=hp["num_steps"], initial=config["step"], unit="step", disable=None, dynamic_ncols=True,
                leave=False)


class Report:
    """The run's output: report lines, validations and samples printed above the progress bar, and the same
    figures as TensorBoard scalars. A context manager: the bar and the event file close with it."""

    def __init__(self, hp, config):
        self.hp, self.speeds, self.writer, self._held_since = hp, [], None, None
        self.bar = progress_bar(hp, config)
        self._bar_at = time.time()
        self._new_period()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
        self._events(lambda writer: writer.close())

    def open_events(self, out, graph=None):
        """TensorBoard's event file in the run folder out, drawing graph (a resumed run's file has it already)."""
        self.writer = tf.summary.FileWriter(str(out), graph=graph)

    def _events(self, write):
        """write(writer), unless the event file is gone: a full disk or a closed folder ends the TensorBoard
        curves, said once, not the run (whatever TensorFlow's writer thread raises)."""
        if self.writer is None:
            return
        try:
            write(self.writer)
        except Exception as e:  # noqa: BLE001 -- the writer's thread re-raises whatever it met
            self.writer = None
            self.say(f"note: TensorBoard's event file can no longer be written ({e}); training goes on")

    def _new_period(self):
        self.loss = self.grad = self.grad_max = 0.0
        self.steps, self.started, self.paused = 0, time.time(), 0.0

    def step(self, loss, grad_norm):
        """One step's loss and gradient norm, counted in the period; the bar moves on."""
        if self._held_since is not None:
            self.paused += time.time() - self._held_since
            self._held_since = None
        self.loss += loss
        self.grad += grad_norm
        self.grad_max = max(self.grad_max, grad_norm)
        self.steps += 1
        if self.hp["time_budget"] > 0:
            now = time.time()
            self.bar.update(now - self._bar_at)
            self._bar_at = now
        else:
            self.bar.update(1)

    def line(self, step, loss, learning_rate, elapsed, left, budget_ends_first=False):
        """The report line of the period that ends at step (loss: the last step's); elapsed and left: seconds
        of training so far and the estimate of what is left; budget_ends_first: the time budget, not
        num_steps, will end the run (the line then leaves out the step total)."""
        hp, k = self.hp, self.steps
        mean_loss = self.loss / k
        seconds = max(1e-9, time.time() - self.started - self.paused)
        self.speeds.append(k * hp["batch_size"] * hp["num_unrollings"] / seconds)
        of = f" of the {hp['time_budget']:g}-minute budget" if hp["time_budget"] > 0 else ""
        total = "" if budget_ends_first else f"/{hp['num_steps']:,}"
        self.say(f"step {step:>{len(str(hp['num_steps']))},}{total}  loss {mean_loss:.3f}  "
                 f"ppl {figure(perplexity(loss))}  bpc {bpc(mean_loss):.3f}  lr {learning_rate:.3g}  "
                 f"grad {self.grad / k:.3f} (max {self.grad_max:.3f})  {self.speeds[-1] / 1000:,.0f}k chars/s  "
                 f"{clock(elapsed)} elapsed{of}, {clock(left)} left")
        self.scalars(step, {"train/loss": mean_loss, "train/perplexity": perplexity(loss), "train/bpc": bpc(mean_loss),
                            "learning_rate": learning_rate, "grad_norm/mean": self.grad / k,
                            "grad_norm/max": self.grad_max, "chars_per_second": self.speeds[-1]})
        self._new_period()

    def validation(self, step, valid_bpc, chars, train_seconds):
        """A validation's line (chars 0: logged only, as the end's); train_seconds: the training time at that
        step, logged beside it so that curves can be drawn against time as well as steps."""
        if chars:
            self.say(f"validation at step {step:,}: bpc {valid_bpc:.3f}, perplexity "
                     f"{figure(perplexity(valid_bpc * math.log(2)), 0)} ({chars:,} characters)")
        self.scalars(step, {"valid/bpc": valid_bpc, "valid/perplexity": perplexity(valid_bpc * math.log(2)),
                            "valid/train_seconds": train_seconds})

    def hold(self):
        """From now until the next step, time is left out of the speed: a validation, a checkpoint, samples."""
        if self._held_since is None:
            self._held_since = time.time()

    def say(self, line):
        """Prints a line of the run's output above the progress bar."""
        self.bar.write(line)

    def scalars(self, step, values):
        """TensorBoard scalars {tag: value} at a step."""
        summary = tf.Summary(value=[tf.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        self._events(lambda writer: writer.add_summary(summary, step))

    def flush(self):
        self._events(lambda writer: writer.flush())

    def chars_per_second(self):
        """The run's speed: the median of its periods (the first, which includes TF's warm-up, left out)."""
        return round(float(np.median(self.speeds[1:] or self.speeds or [0.0])))
