"""The end of a run: the last validation and checkpoint (so that nothing trained is lost to what follows), then,
unless a signal stopped it, the whole validation and test splits scored with the last weights and with the best
by validation, in results.json.
"""
import math
import time

from machinery import checkpoints, folder
from machinery.command import Stopped
from machinery.folder import BEST, RESULTS
from machinery.sessions import bpc, perplexity


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


def scores_at_the_end(session, model, evaluator, held_out, out, step, log):
    """The whole validation and test splits (held_out) scored with the weights as they stand at step, and with
    the best checkpoint by validation (best/) as best_...; best_step names it."""
    best_step = folder.read_best(out)[0] or step
    scores = {"best_step": best_step, **final_scores(evaluator, model, held_out, "", log)}
    if best_step == step:
        return {**scores, **{f"best_{k}": v for k, v in scores.items() if k.startswith(("valid_", "test_"))}}
    checkpoints.restore(session, model, out / BEST, folder.read_config(out / BEST))
    log(f"the best checkpoint by validation, step {best_step:,} (in {out / BEST}):")
    return {**scores, **final_scores(evaluator, model, held_out, "best_", log)}


def finish(run, state):
    """After the loop: a last validation and checkpoint unless this step has one (so that nothing trained is
    lost to what follows), then, unless a signal stopped the run, the scores of the whole validation and test
    splits with the last weights and with the best, in results.json; returns those results."""
    if run.step > run.config["step"] or run.config["checkpoint"] is None:
        valid_bpc = None if run.stop.signal else bpc(run.evaluator(run.splits[1][:run.hp["valid_chars"]]))
        if valid_bpc is not None:
            run.report.validation(run.step, valid_bpc, 0, run.train_seconds())
        run.save(run.step, state, valid_bpc if valid_bpc is not None and math.isfinite(valid_bpc) else None)
    run.report.flush()
    if run.stop.signal:
        run.log(f"interrupted: saved step {run.step:,} in {run.out}; continue with --resume --out {run.out}")
        raise Stopped(run.stop.signal)
    run.stop.immediate = True  # from here a signal stops at once: the checkpoint is safe
    run.report.bar.close()
    run.log(f"trained {run.step - run.stopping.start_step:,} steps in "
            f"{time.time() - run.stopping.started:,.0f} s; evaluating the full validation and test splits")
    results = {"steps": run.step, "train_seconds": run.config["train_seconds"], "data": run.source,
               "graph": run.hp["graph"], "time_budget": run.hp["time_budget"],
               "stopped_by_time_budget": run.stopping.out_of_time,
               "stopped_by_patience": run.stopping.out_of_patience,
               "chars_per_second": run.report.chars_per_second()}
    try:
        results.update(scores_at_the_end(run.session, run.model, run.evaluator, run.splits[1:], run.out,
                                         run.step, run.log))
    except KeyboardInterrupt:
        run.log(f"interrupted during the final evaluation: step {run.step:,} is saved in {run.out}; "
                f"--resume --out {run.out} evaluates it")
        raise
    run.report.scalars(run.step, {"final/valid_bpc": results["valid_bpc"], "final/test_bpc": results["test_bpc"]})
    run.report.flush()
    folder.write_json(run.out / RESULTS, results)
    run.log(f"results in {run.out / RESULTS}; sample with: python sample.py --checkpoint {run.out}")
    return results
