"""Generate text from a trained run of either architecture: python sample.py --checkpoint checkpoints/arch1.

The run folder's config.json names the architecture, its hyperparameters and the checkpoint to load.
"""
import sys

import numpy as np

import data
import training


def build_parser():
    parser = training.OneLineParser(
        prog="sample.py", description="Generate text from a checkpoint of arch1_hidden.py or arch2_output.py.")
    parser.add_argument("--checkpoint", metavar="DIR", default="checkpoints/arch1",
                        help="run folder; its config.json names the latest checkpoint, which is used "
                             "(DIR/best holds the best by validation) (default checkpoints/arch1)")
    parser.add_argument("--length", type=training.checked_number(int, low=0), default=500, metavar="N",
                        help="characters to generate after the prime (default 500)")
    parser.add_argument("--prime", default="", metavar="TEXT",
                        help="text run through the model first to set its state; it is printed before the "
                             "generated text, cleaned with the text8 rules (default: none, the first "
                             "character is drawn from a random distribution, as in the post)")
    parser.add_argument("--temperature", type=training.checked_number(float, above=0), default=1.0, metavar="T",
                        help="divides the logits: below 1 is more conservative, above 1 more random (default 1)")
    parser.add_argument("--seed", type=training.checked_number(int, low=0), default=None, metavar="N",
                        help="random seed; the same seed gives the same text (default: a fresh one each run)")
    parser.add_argument("--num-samples", type=training.checked_number(int, low=0), default=1, metavar="K",
                        help="independent samples, one per line (default 1)")
    parser.add_argument("--argmax", action="store_true",
                        help="always take the most likely character (greedy decoding) instead of sampling")
    return parser


def clean_prime(prime, log):
    """The prime as alphabet text: cleaned with the text8 rules when needed (and said so); UserError if empty."""
    cleaned = data.clean_text(prime)
    if prime and not cleaned.strip():
        raise training.UserError("--prime holds no letters after cleaning with the text8 rules; give some "
                                 "text, or leave --prime out")
    if cleaned != prime:
        log(f"sample.py: --prime cleaned with the text8 rules to {cleaned!r}")
    return cleaned


def main(argv=None):
    """Prints samples from a run folder; returns the exit status."""
    args = build_parser().parse_args(argv)
    log = lambda message: print(message, file=sys.stderr)
    try:
        prime = clean_prime(args.prime, log)
        config, model, sess = training.load_run(args.checkpoint)
    except training.UserError as e:
        print(f"sample.py: error: {e}", file=sys.stderr)
        return 1
    log(f"sample.py: {config['architecture']} at step {config['step']:,} from {args.checkpoint}")
    rng = np.random.default_rng(args.seed)
    sampler = training.Sampler(sess, model)
    for _ in range(args.num_samples):
        text = sampler.generate(args.length, rng, prime=prime, temperature=args.temperature, argmax=args.argmax)
        print(prime + text)
    sess.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C while generating: stop quietly
        sys.exit(130)
