"""The Session loop both architectures share, in the order of the post's "Training" section: set up the data,
the batches, the graph and the session; run the steps, reporting as they go; validate, sample and save now
and then; at the end, score the whole validation and test splits.

The command line, the run folder and the Session callables are machinery kept out of the way, in
settings.py, runs.py and sessions.py.
"""
import contextlib
import math
import os
import signal
import sys
import time

import numpy as np

import data
import runs
import sessions
import settings
from batches import BatchGenerator
from graphs import tf
from settings import Stopped, UserError


def bpc(nats):
    """Bits per character of a loss in nats."""
    return nats / math.log(2)


def perplexity(nats):
    """exp(nats), infinite rather than an overflow for a diverging loss."""
    return math.exp(nats) if nats < 700 else math.inf


# ---------------------------------------------------------------------------------------------
# The training step, in each graph's way.
# ---------------------------------------------------------------------------------------------
def post_step(sess, model):
    """The post's training step: the mega-batch's one-hot arrays fed by iterating the lists of placeholders,
    the carried state fed in, and Session.run; returns (loss, learning rate, gradient norm, last state)."""
    fetches = [model.train_op, model.loss, model.learning_rate, model.grad_norm, model.final_state]

    def step(megabatch_ids, state):
        megabatch = data.one_hot(megabatch_ids)  # num_unrollings + 1 arrays [batch_size, 27], as batches.next()
        feed_dict = {model.initial_state: state}
        for i in range(len(model.train_inputs)):
            feed_dict[model.train_inputs[i]] = megabatch[i]  # the characters of unrolling i
            feed_dict[model.train_labels[i]] = megabatch[i + 1]  # and their targets, the next characters
        _, loss, learning_rate, grad_norm, state = sess.run(fetches, feed_dict=feed_dict)
        return loss, learning_rate, grad_norm, state
    return step


def fast_step(sess, model):
    """fast.py's training step: the mega-batch's ids and the carried state through one Session callable."""
    return sessions.make_callable(
        sess, [model.train_op, model.loss, model.learning_rate, model.grad_norm, model.final_state],
        [model.megabatch_ids, model.initial_state])


TRAIN_STEPS = {"post": post_step, "fast": fast_step}


# ---------------------------------------------------------------------------------------------
# Pieces of the loop.
# ---------------------------------------------------------------------------------------------
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
        self.bar.update(1)

    def line(self, step, loss, learning_rate):
        """The report line of the period that ends at step (loss: the last step's)."""
        hp, k = self.hp, self.steps
        mean_loss = self.loss / k
        seconds = max(1e-9, time.time() - self.started - self.paused)
        self.speeds.append(k * hp["batch_size"] * hp["num_unrollings"] / seconds)
        self.bar.write(f"step {step:>{len(str(hp['num_steps']))},}/{hp['num_steps']:,}  loss {mean_loss:.3f}  "
                       f"ppl {perplexity(loss):6.2f}  bpc {bpc(mean_loss):.3f}  lr {learning_rate:.3g}  "
                       f"grad {self.grad / k:.3f} (max {self.grad_max:.3f})  {self.speeds[-1] / 1000:,.0f}k chars/s")
        self.scalars(step, {"train/loss": mean_loss, "train/perplexity": perplexity(loss), "train/bpc": bpc(mean_loss),
                            "learning_rate": learning_rate, "grad_norm/mean": self.grad / k,
                            "grad_norm/max": self.grad_max, "chars_per_second": self.speeds[-1]})
        self._new_period()

    def validation(self, step, valid_bpc, chars, samples=()):
        self.bar.write(f"validation at step {step:,}: bpc {valid_bpc:.3f}, perplexity "
                       f"{perplexity(valid_bpc * math.log(2)):.2f} ({chars:,} characters)")
        for sample in samples:
            self.bar.write("  sample: " + sample)
        self.scalars(step, {"valid/bpc": valid_bpc, "valid/perplexity": perplexity(valid_bpc * math.log(2))})

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
        self._previous = {s: signal.signal(s, self._handle) for s in settings.STOP_SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.signal or self.immediate:
            raise Stopped(self.signal or signum)
        self.signal = signum

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)




def save(sess, model, out, config, state, batches, step, seconds, valid_bpc=None):
    """Saves the latest checkpoint (the run keeps hp["keep"]), and in best/ when validation improved; returns
    the new config."""
    config = {**config, "step": step, "batch_position": batches.position(), "train_seconds": round(seconds, 1)}
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
    if True in model.eval_fetches:  # Arch 2 can also be scored feeding the true previous characters
        scores[f"{name}_bpc_teacher_forced"] = round(bpc(evaluator(split_ids, teacher_forced=True)), 4)
        log(f"{name}, feeding back the true previous characters instead: bpc "
            f"{scores[f'{name}_bpc_teacher_forced']:.4f}")
    return scores


# ---------------------------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------------------------
def train(architecture, hparams, graphs_by_name, argv, log=print):
    """Trains an architecture (hparams, and its graph builders {"post": ..., "fast": ...}) from the command
    line argv; returns the results dictionary."""
    hp, out, data_path, config = runs.configure(architecture, hparams, argv)
    out.mkdir(parents=True, exist_ok=True)
    runs.check_writable(out)  # a read-only folder or a full disk is found now, not at the first save
    with runs.lock(out):
        return run(architecture, graphs_by_name[hp["graph"]], hp, out, data_path, config, log)


def load_data(hp, data_path, config, log):
    """(source, ids, (train, valid, test) ids) of a run: --data, or a resumed run's own corpus (checked)."""
    if config is not None:
        data_path = runs.resumed_data(config, data_path)
    ids, source = data.load_corpus(data_path, log=log)
    if config is not None:
        runs.check_corpus(config, ids, source)
    splits = data.split(ids)
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


def run(architecture, build_graph, hp, out, data_path, config, log):
    """The training loop of one run folder; config is None for a new run."""
    from tqdm import tqdm

    # --- Set up: the data, the batches, the graph and its session (fresh, or what --resume continues) ---
    source, ids, (train_ids, valid_ids, test_ids) = load_data(hp, data_path, config, log)
    batches = BatchGenerator(train_ids, hp["batch_size"], hp["num_unrollings"], name="train")
    log(f"{architecture}: {source}, {len(ids):,} characters "
        f"(train {len(train_ids):,}, valid {len(valid_ids):,}, test {len(test_ids):,})")
    log("config: " + ", ".join(f"{k}={v}" for k, v in hp.items()))
    sessions.check_memory(hp)  # a model too large for this machine is one line now, not an abort in TensorFlow
    model = build_graph(hp)
    model.graph.finalize()  # the loop adds no ops, so a slip cannot grow the graph step after step
    runs.check_free_space(out, model)  # a full disk is found now, not after hours of training
    sess = sessions.new_session(model)
    if config is None:
        sess.run(model.init)
        state = np.zeros(model.initial_state.shape, np.float32)  # the post: "a vector of all zeros"
        config = {"architecture": architecture, "hparams": hp, "data": source, **runs.corpus_id(ids), "step": 0,
                  "checkpoint": None, "saved": [], "batch_position": batches.position(), "train_seconds": 0.0,
                  "budget_start": 0.0, "best_valid_bpc": None}
    else:
        state = runs.restore(sess, model, out, config, check_step=True)
        batches.restore(config["batch_position"])
        config = {**config, "hparams": hp, "data": source, **runs.corpus_id(ids)}
        log(f"resumed {out} at step {config['step']:,}")
    train_step = TRAIN_STEPS[hp["graph"]](sess, model)
    sampler, evaluator = sessions.Sampler(sess, model), sessions.Evaluator(sess, model)
    rng = np.random.default_rng(hp["seed"])
    valid_slice = valid_ids[:hp["valid_chars"]]
    bar = tqdm(total=hp["num_steps"], initial=config["step"], unit="step", disable=None, dynamic_ncols=True,
               leave=False)
    report = Report(bar, tf.summary.FileWriter(str(out), graph=model.graph if config["step"] == 0 else None), hp)
    step = start_step = config["step"]
    started, prior_seconds = time.time(), config["train_seconds"]
    budget_ends = config.get("budget_start", 0.0) + hp["time_budget"] * 60  # in training seconds
    out_of_time = False

    with StopFlag() as stop:
        # --- The steps: feed a mega-batch and the carried state, run, fetch the state for the next step ---
        while step < hp["num_steps"] and not stop.signal and not out_of_time:
            loss, learning_rate, grad_norm, state = train_step(batches.next_ids(), state)
            step += 1
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):  # the weights are not worth saving
                bar.close()
                raise diverged(f"the {'loss' if not math.isfinite(loss) else 'gradient norm'} became "
                               f"{loss if not math.isfinite(loss) else grad_norm}", step, config, out)
            report.add(loss, grad_norm)

            # --- Every summary_frequency steps, a report line ---
            if step % hp["summary_frequency"] == 0 or step == hp["num_steps"]:
                report.line(step, loss, learning_rate)
                out_of_time = hp["time_budget"] > 0 and prior_seconds + time.time() - started >= budget_ends
                if out_of_time:
                    bar.write(f"the time budget of {hp['time_budget']:g} minutes is spent: the run ends here")

            # --- Every eval_frequency steps, validation, samples and a checkpoint ---
            if step % hp["eval_frequency"] == 0 and step < hp["num_steps"] and not out_of_time:
                paused = time.time()
                valid_bpc = bpc(evaluator(valid_slice))
                if not math.isfinite(valid_bpc):
                    bar.close()
                    raise diverged(f"the validation loss became {valid_bpc}", step, config, out)
                report.validation(step, valid_bpc, len(valid_slice), [sampler.generate(80, rng) for _ in range(3)])
                config = save(sess, model, out, config, state, batches, step, prior_seconds + time.time() - started,
                              valid_bpc)
                report.paused += time.time() - paused
        bar.close()

        # --- The end: a last validation and checkpoint first, so that nothing trained is lost to what follows ---
        if step > start_step or config["checkpoint"] is None:
            valid_bpc = None if stop.signal else bpc(evaluator(valid_slice))
            if valid_bpc is not None:
                report.scalars(step, {"valid/bpc": valid_bpc})
            config = save(sess, model, out, config, state, batches, step, prior_seconds + time.time() - started,
                          valid_bpc if valid_bpc is not None and math.isfinite(valid_bpc) else None)
        report.writer.flush()
        if stop.signal:
            log(f"interrupted: saved step {step:,} in {out}; continue with --resume --out {out}")
            raise Stopped(stop.signal)
        stop.immediate = True  # from here a signal stops at once: the checkpoint is safe

        # --- Then the whole validation and test splits, with the last weights and with the best ones ---
        log(f"trained {step - start_step:,} steps in {time.time() - started:,.0f} s; evaluating the full "
            f"validation and test splits")
        results = {"steps": step, "train_seconds": config["train_seconds"], "data": source, "graph": hp["graph"],
                   "time_budget": hp["time_budget"], "stopped_by_time_budget": out_of_time,
                   "chars_per_second": report.chars_per_second(), "best_step": config.get("best_step", step)}
        try:
            results.update(evaluate_splits(evaluator, model, (valid_ids, test_ids), "", log))
            report.scalars(step, {"final/valid_bpc": results["valid_bpc"], "final/test_bpc": results["test_bpc"]})
            if results["best_step"] != step:  # best/ holds what early stopping would keep
                runs.restore(sess, model, out / runs.BEST, runs.read_config(out / runs.BEST))
                log(f"the best checkpoint by validation, step {results['best_step']:,} (in {out / runs.BEST}):")
                results.update(evaluate_splits(evaluator, model, (valid_ids, test_ids), "best_", log))
            else:
                results.update({f"best_{k}": v for k, v in list(results.items()) if k.startswith(("valid_", "test_"))})
        except KeyboardInterrupt:
            log(f"interrupted during the final evaluation: step {step:,} is saved in {out}; "
                f"--resume --out {out} evaluates it")
            raise
    runs.write_json(out / runs.RESULTS, results)
    report.writer.close()
    sess.close()
    log(f"results in {out / runs.RESULTS}; sample with: python sample.py --checkpoint {out}")
    return results


class OutputThatMayGoAway:
    """A stand-in for sys.stdout for the length of a run: when the output goes away (a closed pipe, as in
    `| head`; a terminal that closed; a log file on a full disk), it says so once on stderr and drops what
    follows, so that training goes on and saves as usual instead of dying at its next report line."""

    def __init__(self, stream):
        self._stream, self.lost = stream, stream is None  # None: started with stdout closed (>&-)

    def write(self, text):
        if not self.lost:
            try:
                return self._stream.write(text)
            except OSError as e:
                self._lose(e)
        return len(text)

    def flush(self):
        if not self.lost:
            try:
                self._stream.flush()
            except OSError as e:
                self._lose(e)

    def _lose(self, error):
        self.lost = True
        try:  # what is still buffered goes nowhere, rather than failing again when Python exits
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        if sys.stderr is not None:
            with contextlib.suppress(OSError):
                print(f"note: the output went away ({error.strerror or error}); training goes on, saving as "
                      f"usual, and says nothing more", file=sys.stderr, flush=True)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(architecture, hparams, graphs_by_name, argv=None):
    """Runs train() for an architecture's script; user mistakes become one line and a non-zero exit."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # each report line reaches a log file as it is printed
    stdout, sys.stdout = sys.stdout, OutputThatMayGoAway(sys.stdout)
    try:
        return _main(architecture, hparams, graphs_by_name, argv)
    finally:
        sys.stdout = stdout


def _main(architecture, hparams, graphs_by_name, argv):
    try:
        train(architecture, hparams, graphs_by_name, argv)
    except (UserError, data.DataError) as e:
        print(f"{architecture}.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. a folder that cannot be made
        print(f"{architecture}.py: error: {e.filename or 'the run folder'}: {e.strerror}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        return 128 + getattr(e, "signum", signal.SIGINT)
    return 0
