"""The machinery of a training run, which each script's Session loop drives through a few calls (Run):

    with training.Run(ARCHITECTURE, HPARAMS, argv) as run:   # the settings, the run folder (locked), the data
        session = run.new_session(model, batch)              # then run.restore() for --resume
        for step in run.steps():                             # until num_steps, the time budget, --patience or a signal
            ...                                              # the script's step: feed, session.run, state back
            run.record(step, loss, learning_rate, grad_norm)  # a report line every summary_frequency steps
            if step % hp["eval_frequency"] == 0:
                valid_bpc = run.validate(step)               # bits/char on the validation text
                run.save(step, state, valid_bpc)             # a checkpoint (the best by validation in best/)
                run.say(...)                                 # samples
        return run.finish(state)                             # the last checkpoint, the full splits, results.json

Its parts: the run folder and its checkpoints (folder, checkpoints), the settings and the data (starting), when
to stop (stopping), what is reported (reporting), and the Session (sessions).
"""
import contextlib
import math
import time

from machinery import checkpoints, command, folder, reporting, sessions, starting
from machinery.command import Stopped
from machinery.folder import BEST, RESULTS
from machinery.sessions import bpc, perplexity
from machinery.stopping import StopFlag, Stopping, check_finite


def final_scores(evaluator, model, splits, prefix, log):
    """{PREFIXvalid_bpc, ..._perplexity, ..._chars[, ..._bpc_teacher_forced], and the same for test} of the
    model as it stands on the whole validation and test splits, said as well."""
    scores = {}
    for name, split_ids in zip((prefix + "valid", prefix + "test"), splits):
        started, nats = time.time(), evaluator(split_ids)
        log(f"{name}: bpc {bpc(nats):.4f}, perplexity {perplexity(nats):.3f} over {len(split_ids) - 1:,} "
            f"characters ({time.time() - started:.1f} s)")
        scores.update({f"{name}_bpc": round(bpc(nats), 4), f"{name}_perplexity": round(perplexity(nats), 4),
                       f"{name}_chars": len(split_ids) - 1})
        if model.evaluation.forced is not None:  # Arch 2 can also be scored feeding the true previous characters
            scores[f"{name}_bpc_teacher_forced"] = round(bpc(evaluator(split_ids, teacher_forced=True)), 4)
            log(f"{name}, feeding back the true previous characters instead: bpc "
                f"{scores[f'{name}_bpc_teacher_forced']:.4f}")
    return scores


class Run:
    """One training run, from the command line to results.json (the module's docstring shows its use).

    hp: the run's settings (the script's HPARAMS, the command line, or the resumed run's config.json);
    splits: the (train, valid, test) ids of the corpus; resumed: whether --resume continues a run.
    """

    def __init__(self, architecture, hparams, argv, log=print):
        self.architecture, self.log = architecture, log
        self.hp, self.out, self._data_path, self.config = starting.configure(architecture, hparams, argv)
        self.resumed = self.config is not None
        self.step = self.config["step"] if self.resumed else 0
        self._validated_at = None
        self._exit = contextlib.ExitStack()

    def __enter__(self):
        """Locks the run folder (made if need be), loads the data, and from then on turns stop signals into a save
        and a stop. A start that fails leaves nothing behind that it made."""
        made = [p for p in (self.out, *self.out.parents) if not p.exists()]
        lock_made = not (self.out / folder.LOCK).exists()
        try:
            self._start()
        except BaseException:
            self._exit.close()
            if lock_made:
                folder.remove([self.out / folder.LOCK])
            for path in made:  # innermost first, each only if empty
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise
        return self

    def _start(self):
        self.out.mkdir(parents=True, exist_ok=True)
        folder.check_writable(self.out)  # a read-only folder or a full disk is found now, not at the first save
        self._exit.enter_context(folder.lock(self.out))
        folder.remove_dead_saves(self.out)  # under the lock: no live save is running
        if not self.resumed:
            folder.check_new_run(self.out)
        self.source, self._ids, self.splits = starting.load_data(self.hp, self._data_path, self.config, self.log)
        train_ids, valid_ids, test_ids = self.splits
        self.log(f"{self.architecture}: {self.source}, {len(self._ids):,} characters "
                 f"(train {len(train_ids):,}, valid {len(valid_ids):,}, test {len(test_ids):,})")
        self.log("config: " + ", ".join(f"{k}={v}" for k, v in self.hp.items())
                 + ("" if self.hp["graph"] == "fast" else "  (--graph fast trains the same model about 1.5 "
                                                          "times quicker)"))
        sessions.check_memory(self.hp)  # a model too large for this machine is one line, not an abort in TF
        self.stop = self._exit.enter_context(StopFlag())
        self.stopping = Stopping(self.hp, self.config or {})
        self.report = self._exit.enter_context(
            reporting.Report(self.hp, self.config or {"step": 0, "train_seconds": 0.0}))

    def __exit__(self, *exc):
        self._exit.close()

    # --- The session ---
    def new_session(self, model, batch):
        """A Session on the model's graph (sessions.new_session), which the run also uses to validate and save
        the model and the cursors of batch; the graph is finalised, so the loop cannot grow it. TensorBoard's
        event file opens here, drawing the graph for a new run."""
        model.graph.finalize()
        folder.check_free_space(self.out, model)  # a full disk is found now, not after hours of training
        self.model, self.batch = model, batch
        self.session = self._exit.enter_context(contextlib.closing(sessions.new_session(model)))
        self.evaluator = sessions.Evaluator(self.session, model)
        self.report.open_events(self.out, model.graph if self.step == 0 else None)
        if self.config is None:
            self.config = {"architecture": self.architecture, "hparams": self.hp, "data": self.source,
                           **folder.corpus_id(self._ids), "step": 0, "checkpoint": None, "saved": [],
                           "batch_position": batch.cursors.tolist(), "train_seconds": 0.0, "budget_start": 0.0,
                           "best_valid_bpc": None}
        return self.session

    def restore(self):
        """--resume: loads the run's latest checkpoint into the session and the cursors into the batch; returns
        the state the run was carrying."""
        state = checkpoints.restore(self.session, self.model, self.out, self.config, check_step=True)
        checkpoints.restore_cursors(self.batch, self.config["batch_position"])
        self.config = {**self.config, "hparams": self.hp, "data": self.source, **folder.corpus_id(self._ids)}
        self.log(f"resumed {self.out} at step {self.config['step']:,}")
        return state

    # --- The steps ---
    def steps(self):
        """The steps left to train, numbered from 1, until stopping.Stopping or a stop signal ends them."""
        self._started, self._prior_seconds, self._start_step = time.time(), self.config["train_seconds"], self.step
        while not (self.stop.signal or self.stopping.should_stop(self.step, self.train_seconds())):
            yield self.step + 1
            self.step += 1
            if self._validated_at == self.step:  # --patience looks at every validation's outcome
                self.stopping.validated(self.step, folder.read_best(self.out)[0])
        if self.stopping.out_of_time and self.step < self.hp["num_steps"]:
            minutes = f"{self.hp['time_budget']:g} minute" + ("" if self.hp["time_budget"] == 1 else "s")
            self.say(f"the time budget of {minutes} is spent: the run ends here")
        if self.stopping.out_of_patience:
            self.say(f"{self.stopping.stale} validations in a row have not beaten the best (step "
                     f"{folder.read_best(self.out)[0]:,}): the run ends here (--patience {self.hp['patience']})")

    def train_seconds(self):
        """Seconds of training of the run so far, earlier sessions of a resumed run included."""
        return self._prior_seconds + time.time() - self._started

    def record(self, step, loss, learning_rate, grad_norm):
        """A step's numbers: a report line every summary_frequency steps and at the last; a loss or gradient that
        is no longer finite stops the run, keeping the last good checkpoint."""
        for what, value in (("loss", loss), ("gradient norm", grad_norm)):
            check_finite(what, value, step, self.config["step"] if self.config["checkpoint"] else None, self.out)
        self.report.step(loss, grad_norm)
        elapsed = self.train_seconds()
        if step % self.hp["summary_frequency"] == 0 or step == self.hp["num_steps"] or self.stopping.time_is_up(elapsed):
            left = (self.hp["num_steps"] - step) * (elapsed - self._prior_seconds) / (step - self._start_step)
            budget_left = max(0.0, self.stopping.budget_left(elapsed))
            self.report.line(step, loss, learning_rate, elapsed - self.stopping.budget_start if self.hp["time_budget"]
                             else elapsed, min(left, budget_left), budget_ends_first=budget_left < left)

    def validate(self, step):
        """Bits per character on the first valid_chars of the validation split, reported; a validation loss that
        is no longer finite stops the run, keeping the last good checkpoint."""
        with self.report.pause():
            valid_slice = self.splits[1][:self.hp["valid_chars"]]
            valid_bpc = bpc(self.evaluator(valid_slice))
            check_finite("validation loss", valid_bpc, step, self.config["step"] if self.config["checkpoint"] else None,
                         self.out)
            self.report.validation(step, valid_bpc, len(valid_slice), self.train_seconds())
        self._validated_at = step
        return valid_bpc

    def save(self, step, state, valid_bpc=None):
        """A checkpoint of the weights, the carried state and the cursors at step (the best by validation kept in
        best/); a stop signal meanwhile waits for it to finish."""
        with self.report.pause(), self.stop.holding():
            config = {**self.config, "step": step, "batch_position": self.batch.cursors.tolist(),
                      "train_seconds": round(self.train_seconds(), 1)}
            self.config = checkpoints.save(self.session, self.model, self.out, config, state, valid_bpc)

    def say(self, line):
        """Prints a line of the run's output above the progress bar (samples, notes)."""
        self.report.say(line)

    # --- The end ---
    def finish(self, state):
        """After the loop: a last validation and checkpoint unless this step has one (so that nothing trained is
        lost to what follows), then, unless a signal stopped the run, the scores of the whole validation and test
        splits with the last weights and with the best, in results.json; returns those results."""
        if self.step > self.config["step"] or self.config["checkpoint"] is None:
            valid_bpc = None if self.stop.signal else bpc(self.evaluator(self.splits[1][:self.hp["valid_chars"]]))
            if valid_bpc is not None:
                self.report.validation(self.step, valid_bpc, 0, self.train_seconds())
            self.save(self.step, state, valid_bpc if valid_bpc is not None and math.isfinite(valid_bpc) else None)
        self.report.flush()
        if self.stop.signal:
            self.log(f"interrupted: saved step {self.step:,} in {self.out}; continue with --resume --out {self.out}")
            raise Stopped(self.stop.signal)
        self.stop.immediate = True  # from here a signal stops at once: the checkpoint is safe
        self.report.bar.close()
        self.log(f"trained {self.step - self._start_step:,} steps in {time.time() - self._started:,.0f} s; "
                 f"evaluating the full validation and test splits")
        try:
            results = self._results()
        except KeyboardInterrupt:
            self.log(f"interrupted during the final evaluation: step {self.step:,} is saved in {self.out}; "
                     f"--resume --out {self.out} evaluates it")
            raise
        folder.write_json(self.out / RESULTS, results)
        self.log(f"results in {self.out / RESULTS}; sample with: python sample.py --checkpoint {self.out}")
        return results

    def _results(self):
        """The run's results: how it ended, and the final scores with the last weights and with the best."""
        best_step, _ = folder.read_best(self.out)
        results = {"steps": self.step, "train_seconds": self.config["train_seconds"], "data": self.source,
                   "graph": self.hp["graph"], "time_budget": self.hp["time_budget"],
                   "stopped_by_time_budget": self.stopping.out_of_time,
                   "stopped_by_patience": self.stopping.out_of_patience,
                   "chars_per_second": self.report.chars_per_second(), "best_step": best_step or self.step}
        splits = self.splits[1:]
        results.update(final_scores(self.evaluator, self.model, splits, "", self.log))
        self.report.scalars(self.step, {"final/valid_bpc": results["valid_bpc"], "final/test_bpc": results["test_bpc"]})
        self.report.flush()
        if results["best_step"] == self.step:
            return {**results, **{f"best_{k}": v for k, v in results.items() if k.startswith(("valid_", "test_"))}}
        checkpoints.restore(self.session, self.model, self.out / BEST, folder.read_config(self.out / BEST))
        self.log(f"the best checkpoint by validation, step {results['best_step']:,} (in {self.out / BEST}):")
        return {**results, **final_scores(self.evaluator, self.model, splits, "best_", self.log)}


def main(architecture, session_loop, argv=None):
    """session_loop(argv) of an architecture's script as a command: user mistakes are one line and a non-zero
    exit, signals 128 + their number, and an output that goes away does not stop the run."""
    def train_command(argv):
        session_loop(argv)
        return 0
    return command.run_command(f"{architecture}.py", train_command, argv, training=True)
