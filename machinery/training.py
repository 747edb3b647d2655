"""The machinery of a training run, which each script's Session loop drives through a few calls (Run):

    with training.Run(ARCHITECTURE, HPARAMS, argv) as run:   # the settings, the run folder, the data
        session = run.new_session(model, batches)            # or run.restore(...) for --resume
        for step in run.steps():                             # the steps left; Ctrl-C, kill or a time budget end them
            ...                                              # the script's step: feed, session.run, state back
            run.record(step, loss, learning_rate, grad_norm)  # a report line every summary_frequency steps
            if step % hp["eval_frequency"] == 0:
                run.validate(step, state)                    # validation, samples, a checkpoint
        return run.finish(state)                             # the last checkpoint, the full splits, results.json

Everything a user relies on lives here: the run folder and its lock, checkpoints (the latest few and the best
by validation), --resume, signals (the first Ctrl-C, SIGTERM or SIGHUP saves at the end of the step), the time
budget, the report lines and TensorBoard, a diverging loss that stops without saving, and the final scores.
"""
import contextlib
import math
import signal
import time

import numpy as np

import batches
import data
from data import UserError
from machinery import command, runs, sessions
from machinery.command import Stopped
from machinery.sessions import bpc, perplexity
from machinery.tf1 import tf


def clock(seconds):
    """Seconds as h:mm:ss (m:ss under an hour)."""
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02}:{s:02}" if hours else f"{m}:{s:02}"


class Report:
    """What the run prints and logs for TensorBoard: a report line every summary_frequency steps (the steps
    since the previous line), validations and samples. Time spent validating is left out of the speed."""

    def __init__(self, bar, writer, hp):
        self.bar, self.writer, self.hp = bar, writer, hp
        self.speeds = []  # chars/s of each report period
        self._new_period()

    def _new_period(self):
        self.loss = self.grad = self.grad_max = 0.0
        self.steps, self.started, self.paused = 0, time.time(), 0.0

    def add(self, loss, grad_norm):
        self.loss += loss
        self.grad += grad_norm
        self.grad_max = max(self.grad_max, grad_norm)
        self.steps += 1

    def line(self, step, loss, learning_rate, elapsed, left, budget_ends_first=False):
        """The report line of the period that ends at step (loss: the last step's); elapsed and left: seconds
        of training so far and the estimate of what is left; budget_ends_first: the time budget, not
        num_steps, will end the run (the line then leaves out the step total)."""
        hp, k = self.hp, self.steps
        mean_loss = self.loss / k
        seconds = max(1e-9, time.time() - self.started - self.paused)
        self.speeds.append(k * hp["batch_size"] * hp["num_unrollings"] / seconds)
        of = (f" of the {hp['time_budget']:g}-minute budget" if hp["time_budget"] > 0 else "")
        total = "" if budget_ends_first else f"/{hp['num_steps']:,}"
        self.bar.write(f"step {step:>{len(str(hp['num_steps']))},}{total}  loss {mean_loss:.3f}  "
                       f"ppl {perplexity(loss):6.2f}  bpc {bpc(mean_loss):.3f}  lr {learning_rate:.3g}  "
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
            self.bar.write(f"validation at step {step:,}: bpc {valid_bpc:.3f}, perplexity "
                           f"{perplexity(valid_bpc * math.log(2)):.2f} ({chars:,} characters)")
        self.scalars(step, {"valid/bpc": valid_bpc, "valid/perplexity": perplexity(valid_bpc * math.log(2)),
                            "valid/train_seconds": train_seconds})

    def scalars(self, step, values):
        """TensorBoard scalars {tag: value} at a step."""
        self.writer.add_summary(tf.Summary(value=[tf.Summary.Value(tag=k, simple_value=float(v))
                                                  for k, v in values.items()]), step)

    def chars_per_second(self):
        """The run's speed: the median of its periods (the first, which includes TF's warm-up, left out)."""
        return round(float(np.median(self.speeds[1:] or self.speeds or [0.0])))


class StopFlag:
    """Turns the first Ctrl-C (or SIGTERM: kill, timeout; SIGHUP: a closing terminal) into a request to save and stop
    at the end of the current step; a second one, or any once `immediate` is set, stops at once."""

    def __init__(self):
        self.signal, self.immediate = None, False

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in command.STOP_SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.signal or self.immediate:
            raise Stopped(self.signal or signum)
        self.signal = signum

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def save(sess, model, out, config, state, batch, step, seconds, valid_bpc=None):
    """Saves the latest checkpoint (the run keeps hp["keep"]), and in best/ when validation improved; returns
    the new config."""
    config = {**config, "step": step, "batch_position": batch.cursors.tolist(), "train_seconds": round(seconds, 1)}
    best = valid_bpc is not None and (config["best_valid_bpc"] is None or valid_bpc < config["best_valid_bpc"])
    if best:
        config.update(best_valid_bpc=valid_bpc, best_step=step)
    config = runs.save_checkpoint(sess, model, out, config, state, config["hparams"]["keep"])
    if best:  # best/ holds one checkpoint, with its own config.json
        (out / runs.BEST).mkdir(exist_ok=True)
        runs.save_checkpoint(sess, model, out / runs.BEST, {**config, "saved": config.get("best_saved", [])}, state, 1)
        config = runs.write_config(out, {**config, "best_saved": [step]})
    return config


def diverged(what, step, config, out):
    """The run stops without saving, so the last checkpoint stays the last good one."""
    kept = (f"the last good checkpoint (step {config['step']:,}) is kept in {out}" if config["checkpoint"]
            else "no checkpoint was saved yet")
    return UserError(f"{what} at step {step:,}; {kept}. Try a smaller --learning-rate or --clip-norm")


def final_score(evaluator, model, name, split_ids, log):
    """{NAME_bpc, NAME_perplexity, NAME_chars[, NAME_bpc_teacher_forced]} of a whole split, said as well."""
    t0 = time.time()
    nats = evaluator(split_ids)
    log(f"{name}: bpc {bpc(nats):.4f}, perplexity {perplexity(nats):.3f} over {len(split_ids) - 1:,} "
        f"characters ({time.time() - t0:.1f} s)")
    scores = {f"{name}_bpc": round(bpc(nats), 4), f"{name}_perplexity": round(perplexity(nats), 4),
              f"{name}_chars": len(split_ids) - 1}
    if model.evaluation.forced is not None:  # Arch 2 can also be scored feeding the true previous characters
        scores[f"{name}_bpc_teacher_forced"] = round(bpc(evaluator(split_ids, teacher_forced=True)), 4)
        log(f"{name}, feeding back the true previous characters instead: bpc "
            f"{scores[f'{name}_bpc_teacher_forced']:.4f}")
    return scores



def load_data(hp, data_path, config, log):
    """(source, ids, (train, valid, test) ids) of a run: --data, or a resumed run's own corpus (checked)."""
    if config is not None:
        data_path = runs.resumed_data(config, data_path)
    ids, source = data.load_corpus(data_path, log=log)
    if config is not None:
        runs.check_corpus(config, ids, source)
    splits = data.split(ids)
    batches.check_size(splits[0], hp["batch_size"], hp["num_unrollings"], name="train")
    for name, split_ids in zip(("valid", "test"), splits[1:]):
        if len(split_ids) < 2:
            raise data.DataError(f"the {name} split has {len(split_ids)} characters, too few to evaluate; "
                                 f"use a text of at least 40 characters")
    return source, ids, splits


def evaluate_splits(evaluator, model, splits, prefix, log):
    """The scores of the model as it stands on the whole validation and test splits, keys prefixed."""
    scores = {}
    for name, split_ids in zip(("valid", "test"), splits):
        scores.update(final_score(evaluator, model, prefix + name, split_ids, log))
    return scores


# ---------------------------------------------------------------------------------------------
# The run the scripts' loops drive.
# ---------------------------------------------------------------------------------------------
class Run:
    """One training run, from the command line to results.json (the module's docstring shows its use).

    hp: the run's settings (the script's HPARAMS, the command line, or the resumed run's config.json);
    splits: the (train, valid, test) ids of the corpus; resumed: whether --resume continues a run.
    """

    def __init__(self, architecture, hparams, argv, log=print):
        self.architecture, self.log = architecture, log
        self.hp, self.out, self._data_path, self.config = runs.configure(architecture, hparams, argv)
        self.resumed = self.config is not None
        self._exit = contextlib.ExitStack()

    def __enter__(self):
        with contextlib.ExitStack() as setup:
            self.out.mkdir(parents=True, exist_ok=True)
            runs.check_writable(self.out)  # a read-only folder or a full disk is found now, not at the first save
            setup.enter_context(runs.lock(self.out))
            self.source, ids, self.splits = load_data(self.hp, self._data_path, self.config, self.log)
            train_ids, valid_ids, test_ids = self.splits
            self.log(f"{self.architecture}: {self.source}, {len(ids):,} characters "
                     f"(train {len(train_ids):,}, valid {len(valid_ids):,}, test {len(test_ids):,})")
            self.log("config: " + ", ".join(f"{k}={v}" for k, v in self.hp.items())
                     + ("" if self.hp["graph"] == "fast" else "  (--graph fast trains the same model about 1.5 "
                                                              "times quicker)"))
            sessions.check_memory(self.hp)  # a model too large for this machine is one line, not an abort in TF
            self._ids = ids
            self._exit = setup.pop_all()
        return self

    def __exit__(self, *exc):
        self._exit.close()

    # --- Set up ---
    def new_session(self, model, batch):
        """A Session on the model's graph (with the settings of its graph, sessions.session_config), which the
        run also uses to validate, sample and save; the graph is finalised, so the loop cannot grow it."""
        model.graph.finalize()
        runs.check_free_space(self.out, model)  # a full disk is found now, not after hours of training
        self.model, self.batch = model, batch
        self.session = self._exit.enter_context(contextlib.closing(sessions.new_session(model)))
        self.evaluator = sessions.Evaluator(self.session, model)
        if self.config is None:
            self.config = {"architecture": self.architecture, "hparams": self.hp, "data": self.source,
                           **runs.corpus_id(self._ids), "step": 0, "checkpoint": None, "saved": [],
                           "batch_position": batch.cursors.tolist(), "train_seconds": 0.0, "budget_start": 0.0,
                           "best_valid_bpc": None}
        return self.session

    def restore(self):
        """--resume: loads the run's latest checkpoint into the session and the cursors into the batches;
        returns the state the run was carrying."""
        state = runs.restore(self.session, self.model, self.out, self.config, check_step=True)
        runs.restore_cursors(self.batch, self.config["batch_position"])
        self.config = {**self.config, "hparams": self.hp, "data": self.source, **runs.corpus_id(self._ids)}
        self.log(f"resumed {self.out} at step {self.config['step']:,}")
        return state

    # --- The steps ---
    def steps(self):
        """The steps left to train, numbered from 1: until num_steps, the time budget (checked at report lines)
        or a stop signal (the first Ctrl-C, SIGTERM or SIGHUP ends the loop after the current step)."""
        from tqdm import tqdm

        hp, config = self.hp, self.config
        self.stop = self._exit.enter_context(StopFlag())
        if hp["time_budget"] > 0:  # the bar counts the budget's seconds, so that its estimate follows the budget
            budget = hp["time_budget"] * 60
            spent = min(budget, config["train_seconds"] - config.get("budget_start", 0.0))
            bar = tqdm(total=round(budget), initial=round(spent), unit="s", disable=None, dynamic_ncols=True,
                       leave=False, bar_format="{l_bar}{bar}| {n:.0f}/{total} s of the budget [{elapsed}<{remaining}]")
        else:
            bar = tqdm(total=hp["num_steps"], initial=config["step"], unit="step", disable=None, dynamic_ncols=True,
                       leave=False)
        self.bar = self._exit.enter_context(contextlib.closing(bar))
        writer = tf.summary.FileWriter(str(self.out), graph=self.model.graph if config["step"] == 0 else None)
        self.report = Report(self.bar, self._exit.enter_context(contextlib.closing(writer)), hp)
        self.step = self.start_step = config["step"]
        self.started, self.prior_seconds = time.time(), config["train_seconds"]
        self._bar_at = self.started
        self.budget_ends = config.get("budget_start", 0.0) + hp["time_budget"] * 60  # in training seconds
        self.out_of_time = self.out_of_patience = False
        while self.step < hp["num_steps"] and not (self.stop.signal or self.out_of_time or self.out_of_patience):
            yield self.step + 1
            self.step += 1

    def train_seconds(self):
        return self.prior_seconds + time.time() - self.started

    def record(self, step, loss, learning_rate, grad_norm):
        """A step's numbers: a report line every summary_frequency steps (and the time budget checked); a loss
        or gradient that is no longer finite stops the run, keeping the last good checkpoint."""
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):  # the weights are not worth saving
            self.bar.close()
            raise diverged(f"the {'loss' if not math.isfinite(loss) else 'gradient norm'} became "
                           f"{loss if not math.isfinite(loss) else grad_norm}", step, self.config, self.out)
        self.report.add(loss, grad_norm)
        if self.hp["time_budget"] > 0:
            now = time.time()
            self.bar.update(now - self._bar_at)
            self._bar_at = now
        else:
            self.bar.update(1)
        if step % self.hp["summary_frequency"] == 0 or step == self.hp["num_steps"]:
            elapsed = self.train_seconds()
            per_step = (elapsed - self.prior_seconds) / (step - self.start_step)  # validations included
            left = (self.hp["num_steps"] - step) * per_step
            shown, budget_ends_first = elapsed, False
            if self.hp["time_budget"] > 0:  # the budget's own seconds: a resumed budget may have started later
                budget_left = max(0.0, self.budget_ends - elapsed)
                budget_ends_first, left = budget_left < left, min(left, budget_left)
                shown = elapsed - self.config.get("budget_start", 0.0)
            self.report.line(step, loss, learning_rate, shown, left, budget_ends_first)
            self.out_of_time = self.hp["time_budget"] > 0 and elapsed >= self.budget_ends
            if self.out_of_time:
                minutes = f"{self.hp['time_budget']:g} minute" + ("" if self.hp["time_budget"] == 1 else "s")
                self.bar.write(f"the time budget of {minutes} is spent: the run ends here")

    def validate(self, step, state):
        """Bits per character on the first valid_chars of the validation split, and a checkpoint of the
        weights and the carried state (the best by validation kept in best/)."""
        paused = time.time()
        valid_slice = self.splits[1][:self.hp["valid_chars"]]
        valid_bpc = bpc(self.evaluator(valid_slice))
        if not math.isfinite(valid_bpc):
            self.bar.close()
            raise diverged(f"the validation loss became {valid_bpc}", step, self.config, self.out)
        self.report.validation(step, valid_bpc, len(valid_slice), self.train_seconds())
        self.config = save(self.session, self.model, self.out, self.config, state, self.batch, step,
                           self.train_seconds(), valid_bpc)
        if self.hp["patience"] > 0:  # validations since the best one, from config.json: the same after --resume
            stale = (step - self.config.get("best_step", step)) // self.hp["eval_frequency"]
            self.out_of_patience = stale >= self.hp["patience"]
            if self.out_of_patience:
                self.bar.write(f"{stale} validations in a row have not beaten the best (step "
                               f"{self.config['best_step']:,}): the run ends here (--patience {self.hp['patience']})")
        self.report.paused += time.time() - paused

    def say(self, line):
        """Prints a line of the run's output (above the progress bar)."""
        self.bar.write(line)

    # --- The end ---
    def finish(self, state):
        """After the loop: a last validation and checkpoint (so that nothing trained is lost to what follows),
        then, unless a signal stopped the run, the scores of the whole validation and test splits with the last
        weights and with the best, in results.json; returns those results."""
        hp, step, out = self.hp, self.step, self.out
        self.bar.close()
        valid_ids, test_ids = self.splits[1:]
        if step > self.config["step"] or self.config["checkpoint"] is None:  # not saved at this step yet
            valid_bpc = None if self.stop.signal else bpc(self.evaluator(valid_ids[:hp["valid_chars"]]))
            if valid_bpc is not None:
                self.report.validation(step, valid_bpc, 0, self.train_seconds())
            self.config = save(self.session, self.model, out, self.config, state, self.batch, step,
                               self.train_seconds(), valid_bpc if valid_bpc is not None and math.isfinite(valid_bpc) else None)
        self.report.writer.flush()
        if self.stop.signal:
            self.log(f"interrupted: saved step {step:,} in {out}; continue with --resume --out {out}")
            raise Stopped(self.stop.signal)
        self.stop.immediate = True  # from here a signal stops at once: the checkpoint is safe

        self.log(f"trained {step - self.start_step:,} steps in {time.time() - self.started:,.0f} s; evaluating the "
                 f"full validation and test splits")
        results = {"steps": step, "train_seconds": self.config["train_seconds"], "data": self.source,
                   "graph": hp["graph"], "time_budget": hp["time_budget"], "stopped_by_time_budget": self.out_of_time,
                   "stopped_by_patience": self.out_of_patience,
                   "chars_per_second": self.report.chars_per_second(), "best_step": self.config.get("best_step", step)}
        try:
            results.update(evaluate_splits(self.evaluator, self.model, (valid_ids, test_ids), "", self.log))
            self.report.scalars(step, {"final/valid_bpc": results["valid_bpc"], "final/test_bpc": results["test_bpc"]})
            if results["best_step"] != step:  # best/ holds what early stopping would keep
                runs.restore(self.session, self.model, out / runs.BEST, runs.read_config(out / runs.BEST))
                self.log(f"the best checkpoint by validation, step {results['best_step']:,} (in {out / runs.BEST}):")
                results.update(evaluate_splits(self.evaluator, self.model, (valid_ids, test_ids), "best_", self.log))
            else:
                results.update({f"best_{k}": v for k, v in list(results.items()) if k.startswith(("valid_", "test_"))})
        except KeyboardInterrupt:
            self.log(f"interrupted during the final evaluation: step {step:,} is saved in {out}; "
                     f"--resume --out {out} evaluates it")
            raise
        runs.write_json(out / runs.RESULTS, results)
        self.log(f"results in {out / runs.RESULTS}; sample with: python sample.py --checkpoint {out}")
        return results


def main(architecture, train, argv=None):
    """train(argv) of an architecture's script as a command: user mistakes are one line and a non-zero exit,
    signals 128 + their number, and an output that goes away does not stop the run."""
    def train_command(argv):
        train(argv)
        return 0
    return command.run_command(f"{architecture}.py", train_command, argv, training=True)
