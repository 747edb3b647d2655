"""Bits per character and perplexity of any text under a trained run of either architecture.

    python evaluate.py --checkpoint checkpoints/arch1 --data PATH [--teacher-forced] [--json]

The whole text is scored (cleaned with the text8 rules first if it needs it), each character predicted from
the ones before it, in the parallel streams of the run's evaluation branch. --teacher-forced (Arch 2 only)
feeds back the true previous characters instead of the model's own outputs.
"""
import json
import sys

import data
from machinery import command, runs, sessions, settings



def build_parser():
    parser = settings.OneLineParser(prog="evaluate.py", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", metavar="DIR", default="checkpoints/arch1",
                        help="run folder; its config.json names the checkpoint used (DIR/best holds the best by "
                             "validation) (default checkpoints/arch1)")
    parser.add_argument("--data", metavar="PATH", required=True, help="the text to score: a text file or a zip")
    parser.add_argument("--teacher-forced", action="store_true",
                        help="Arch 2: feed back the true previous characters instead of the model's own outputs")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return parser


def evaluate(folder, path, teacher_forced=False, log=print):
    """{checkpoint, architecture, step, data, chars, bpc, perplexity, teacher_forced} of the text at path."""
    ids = data.text_to_ids(data.load_text(path, log=log))  # at least two different characters
    config, model, sess = runs.load_run(folder)
    if teacher_forced and True not in model.eval_fetches:
        raise data.UserError(f"--teacher-forced is for Arch 2; {folder} holds a run of {config['architecture']}")
    nats = sessions.Evaluator(sess, model)(ids, teacher_forced=teacher_forced)
    sess.close()
    return {"checkpoint": str(folder), "architecture": config["architecture"], "step": config["step"],
            "data": str(path), "chars": len(ids) - 1, "bpc": round(sessions.bpc(nats), 4),
            "perplexity": round(sessions.perplexity(nats), 4), "teacher_forced": teacher_forced}


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        scores = evaluate(args.checkpoint, args.data, args.teacher_forced, log=lambda s: print(s, file=sys.stderr))
    except (data.UserError, data.DataError) as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"{scores['data']}: {scores['bpc']:.4f} bits/char, perplexity {scores['perplexity']:.3f} over "
              f"{scores['chars']:,} characters ({scores['architecture']} at step {scores['step']:,} from "
              f"{scores['checkpoint']}{', teacher-forced' if args.teacher_forced else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(command.run_command("evaluate.py", main))
