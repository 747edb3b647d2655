"""Bits per character and perplexity of any text under a trained run of either architecture, or of a
corpus's validation and test splits under a Kneser-Ney character n-gram trained on its training split.

    python evaluate.py --checkpoint checkpoints/arch1 --data PATH [--teacher-forced] [--json]
    python evaluate.py --ngram N --data PATH [--json]

The whole text is scored (cleaned with the text8 rules first if it needs it), each character predicted from
the ones before it, in the parallel streams of the run's evaluation branch. --teacher-forced (Arch 2 only)
feeds back the true previous characters instead of the model's own outputs. --ngram N is the yardstick the
experiments' tables carry: the splits are the training scripts' (90/5/5), so its figures compare with a
run's valid_bpc and test_bpc.
"""
import machinery.startup  # noqa: F401 -- first: Ctrl-C while the libraries load exits quietly
import json
import sys
import time

import data
import arch1_hidden
import arch2_output
from machinery import checkpoints, command, ngram, sessions, settings
from machinery.command import UserError


def build_parser():
    parser = settings.OneLineParser(prog="evaluate.py", description=settings.description(__doc__))
    parser.add_argument("--checkpoint", metavar="DIR", default="checkpoints/arch1",
                        help="run folder; its config.json names the checkpoint used (DIR/best holds the best by "
                             "validation) (default checkpoints/arch1)")
    parser.add_argument("--data", metavar="PATH", required=True, help="the text to score: a text file or a zip")
    parser.add_argument("--teacher-forced", action="store_true",
                        help="Arch 2: feed back the true previous characters instead of the model's own outputs")
    parser.add_argument("--ngram", type=settings.checked_number(int, 1, ngram.MAX_ORDER), metavar="N",
                        help="instead of a run: a Kneser-Ney character N-gram trained on the training split of "
                             "--data, scored on its validation and test splits (N from 1 to 12; 5 and 6 are the usual "
                             "yardsticks)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return parser


def evaluate_ngram(order, path, log=print):
    """{ngram, data, train_chars, valid_bpc, test_bpc, valid_chars, test_chars, seconds} of an order-N
    Kneser-Ney model trained on the training split of the corpus at path."""
    ids, _ = data.load_corpus(path, log=log)
    train, valid, test = data.split(ids)
    started = time.time()
    model = ngram.KneserNey(train, order)
    return {"ngram": order, "data": str(path), "train_chars": len(train), "valid_bpc": round(model.bpc(valid), 4),
            "test_bpc": round(model.bpc(test), 4), "valid_chars": len(valid) - 1, "test_chars": len(test) - 1,
            "seconds": round(time.time() - started, 1)}


def evaluate(folder, path, teacher_forced=False, log=print):
    """{checkpoint, architecture, step, data, chars, bpc, perplexity, teacher_forced} of the text at path."""
    ids = data.text_to_ids(data.load_text(path, log=log))  # at least two different characters
    config, model, sess = checkpoints.load_run(folder, [arch1_hidden, arch2_output])
    if teacher_forced and model.evaluation.forced is None:
        raise UserError(f"--teacher-forced is for Arch 2; {folder} holds a run of {config['architecture']}")
    nats = sessions.Evaluator(sess, model)(ids, teacher_forced=teacher_forced)
    sess.close()
    return {"checkpoint": str(folder), "architecture": config["architecture"], "step": config["step"],
            "data": str(path), "chars": len(ids) - 1, "bpc": round(sessions.bpc(nats), 4),
            "perplexity": round(sessions.perplexity(nats), 4), "teacher_forced": teacher_forced}


def main(argv=None):
    """Scores a text (or a corpus's splits under an n-gram) from the command line; returns the exit status."""
    return command.run_command("evaluate.py", _main, argv)


def _main(argv):
    args = build_parser().parse_args(argv)
    if args.ngram is not None:
        scores = evaluate_ngram(args.ngram, args.data, log=lambda s: print(s, file=sys.stderr))
        print(json.dumps(scores) if args.json else
              f"{scores['data']}: {scores['ngram']}-gram (Kneser-Ney, trained on {scores['train_chars']:,} characters): "
              f"valid {scores['valid_bpc']:.4f} bits/char, test {scores['test_bpc']:.4f} ({scores['seconds']:.0f} s)")
        return 0
    scores = evaluate(args.checkpoint, args.data, args.teacher_forced, log=lambda s: print(s, file=sys.stderr))
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"{scores['data']}: {scores['bpc']:.4f} bits/char, perplexity {scores['perplexity']:.3f} over "
              f"{scores['chars']:,} characters ({scores['architecture']} at step {scores['step']:,} from "
              f"{scores['checkpoint']}{', teacher-forced' if args.teacher_forced else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
