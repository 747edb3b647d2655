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
to stop (stopping), what is reported (reporting), the Session (sessions), and the end (ending).
"""
import contextlib

from machinery import checkpoints, command, ending, folder, reporting, sessions, starting
from machinery.sessions import bpc
from machinery.stopping import StopFlag, Stopping, check_finite


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
        """Claims the run folder (folder.claim), loads the data, and from then on turns stop signals into a save
        and a stop. A start that fails leaves nothing behind that it made."""
        with contextlib.ExitStack() as setup:
            setup.enter_context(folder.claim(self.out))
            if not self.resumed:
                folder.check_new_run(self.out)
            self.source, self._ids, self.splits = starting.load_data(self.hp, self._data_path, self.config, self.log)
            self.log(f"{self.architecture}: {self.source}, {len(self._ids):,} characters (train "
                     f"{len(self.splits[0]):,}, valid {len(self.splits[1]):,}, test {len(self.splits[2]):,})")
            self.log("config: " + ", ".join(f"{k}={v}" for k, v in self.hp.items()) + (
                "" if self.hp["graph"] == "fast" else "  (--graph fast trains the same model 1.4 to 2 times quicker)"))
            sessions.check_memory(self.hp)  # a model too large for this machine is one line, not an abort in TF
            self.stop = setup.enter_context(StopFlag())
            self.stopping = Stopping(self.hp, self.config or {})
            self.report = setup.enter_context(
                reporting.Report(self.hp, self.config or {"step": 0, "train_seconds": 0.0}))
            self._exit = setup.pop_all()
        return self

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
            self.config = folder.new_config(self.architecture, self.hp, self.source, self._ids, batch.cursors.tolist())
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
        self.stopping.start(self.step, self.config["train_seconds"])
        clock_set = -float("inf")  # when train_minutes was last set
        while not (self.stop.signal or self.stopping.should_stop(self.step, self.train_seconds())):
            if self.model.train_minutes is not None and self.train_seconds() - clock_set >= 1:  # --decay-minutes
                clock_set = self.train_seconds()
                self.model.train_minutes.load(clock_set / 60, self.session)  # the schedule's clock, once a second
            yield self.step + 1
            self.step += 1
            if self._validated_at == self.step:  # --patience looks at every validation's outcome
                self.stopping.validated(self.step, folder.read_best(self.out)[0])
        if self.stopping.why(self.step):
            self.say(self.stopping.why(self.step))

    def train_seconds(self):
        return self.stopping.train_seconds()

    def _last_saved(self):
        return self.config["step"] if self.config["checkpoint"] else None

    def record(self, step, loss, learning_rate, grad_norm):
        """A step's numbers: a report line every summary_frequency steps and at the last; a loss or gradient that
        is no longer finite stops the run, keeping the last good checkpoint."""
        for what, value in (("loss", loss), ("gradient norm", grad_norm)):
            check_finite(what, value, step, self._last_saved(), self.out)
        self.report.step(loss, grad_norm)
        elapsed = self.train_seconds()
        if step % self.hp["summary_frequency"] == 0 or step == self.hp["num_steps"] or self.stopping.time_is_up(elapsed):
            shown = elapsed - self.stopping.budget_start if self.hp["time_budget"] else elapsed  # the budget's time
            self.report.line(step, loss, learning_rate, shown, *self.stopping.time_left(step, elapsed))

    def validate(self, step):
        """Bits per character on the first valid_chars of the validation split, reported; a validation loss that
        is no longer finite stops the run, keeping the last good checkpoint."""
        self.report.hold()  # the validation, the checkpoint and the samples that follow it are not training
        valid_slice = self.splits[1][:self.hp["valid_chars"]]
        valid_bpc = bpc(self.evaluator(valid_slice))
        check_finite("validation loss", valid_bpc, step, self._last_saved(), self.out)
        self.report.validation(step, valid_bpc, len(valid_slice), self.train_seconds())
        self._validated_at = step
        return valid_bpc

    def save(self, step, state, valid_bpc=None):
        """A checkpoint of the weights, the carried state and the cursors at step (the best by validation kept in
        best/); a stop signal meanwhile waits for it to finish."""
        self.report.hold()
        with self.stop.holding():
            config = {**self.config, "step": step, "batch_position": self.batch.cursors.tolist(),
                      "train_seconds": round(self.train_seconds(), 1)}
            self.config = checkpoints.save(self.session, self.model, self.out, config, state, valid_bpc)

    def say(self, line):
        """Prints a line of the run's output above the progress bar (samples, notes)."""
        self.report.say(line)

    # --- The end ---
    def finish(self, state):
        """After the loop: the last checkpoint, and the final scores in results.json (ending.finish); returns
        them."""
        return ending.finish(self, state)


def main(architecture, session_loop, argv=None):
    """session_loop(argv) of an architecture's script as a command: user mistakes are one line and a non-zero
    exit, signals 128 + their number, and an output that goes away does not stop the run."""
    def train_command(argv):
        session_loop(argv)
        return 0
    return command.run_command(f"{architecture}.py", train_command, argv, training=True)
