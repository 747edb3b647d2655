"""Generate text from a trained run of either architecture: python sample.py --checkpoint checkpoints/arch1.

The run folder's config.json names the architecture, its hyperparameters and the checkpoint to load.
"""
import machinery.startup  # noqa: F401 -- first: Ctrl-C while the libraries load exits quietly
import signal
import sys

import numpy as np

import data
import arch1_hidden
import arch2_output
from machinery import checkpoints, command, sessions, settings
from machinery.command import UserError


def build_parser():
    number = settings.checked_number
    parser = settings.OneLineParser(
        prog="sample.py", description="Generate text from a checkpoint of arch1_hidden.py or arch2_output.py.")
    parser.add_argument("--checkpoint", metavar="DIR", default="checkpoints/arch1",
                        help="run folder; its config.json names the latest checkpoint, which is used "
                             "(DIR/best holds the best by validation) (default checkpoints/arch1)")
    parser.add_argument("--length", type=number(int, low=0, high=10 ** 9), default=500, metavar="N",
                        help="characters to generate after the prime (default 500)")
    parser.add_argument("--prime", default="", metavar="TEXT",
                        help="text run through the model first to set its state; it is printed before the "
                             "generated text, cleaned with the text8 rules (default: none, the first "
                             "character is drawn from a random distribution, as in the post)")
    parser.add_argument("--temperature", type=number(float, low=1e-6, high=1e6), default=1.0, metavar="T",
                        help="divides the logits: below 1 is more conservative, above 1 more random; near 0 it is "
                             "--argmax (default 1)")
    parser.add_argument("--seed", type=number(int, low=0, high=2 ** 63 - 1), default=None, metavar="N",
                        help="random seed; the same seed gives the same text (default: a fresh one each run)")
    parser.add_argument("--num-samples", type=number(int, low=0, high=10 ** 6), default=1, metavar="K",
                        help="independent samples, one per line (default 1)")
    parser.add_argument("--argmax", action="store_true",
                        help="always take the most likely character (greedy decoding) instead of sampling")
    return parser


def clean_prime(prime, log):
    """The prime as alphabet text: cleaned with the text8 rules when needed (and said so); UserError if empty."""
    cleaned = data.clean_text(prime)
    if prime and not cleaned.strip():
        raise UserError("--prime holds no letters after cleaning with the text8 rules; give some "
                                 "text, or leave --prime out")
    if cleaned != prime:
        log(f"sample.py: --prime cleaned with the text8 rules to {cleaned!r}")
    return cleaned


def softmax(logits, temperature):
    """The distribution of the next character at a temperature: softmax(logits / temperature), in float64 and
    shifted by the largest logit first, so that no temperature overflows it."""
    scaled = (np.asarray(logits, np.float64).ravel() - np.max(logits)) / temperature
    probs = np.exp(scaled)
    return probs / probs.sum()


def generate(session, model, length, rng, prime="", temperature=1.0, argmax=False):
    """Yields length characters drawn from the model's sampling branch (val_input, val_state, val_logits), one at
    a time, after feeding it prime (the prime is not part of the result).

    This is the scripts' sample() with what a user may ask for added: a prime that sets the state, a
    temperature, greedy decoding. Without a prime the first character is drawn from a random distribution over
    the alphabet, as the post does, and counts towards length. The state starts from zeros, as in training.
    """
    step = sessions.make_callable(session, [model.val_logits, model.val_state_after],
                                  [model.val_input, model.val_state])
    state = np.zeros([1, model.state_size], np.float32)
    logits = None
    for char in prime:
        logits, state = step(data.vec2mat(data.one_hot(data.char2id(char))), state)
    for i in range(length):
        if logits is None:  # no prime: the post's first character, from a random distribution
            char_id = data.sample_distribution(data.random_distribution(rng), rng)
        elif argmax:
            char_id = int(np.argmax(logits))
        else:
            char_id = data.sample_distribution(softmax(logits, temperature), rng)
        yield data.id2char(char_id)
        if i < length - 1:
            logits, state = step(data.vec2mat(data.one_hot(char_id)), state)


def main(argv=None):
    """Prints samples from a run folder from the command line; returns the exit status."""
    return command.run_command("sample.py", _main, argv)


def _main(argv):
    args = build_parser().parse_args(argv)
    log = lambda message: print(message, file=sys.stderr)
    prime = clean_prime(args.prime, log)
    config, model, sess = checkpoints.load_run(args.checkpoint, [arch1_hidden, arch2_output])
    rng = np.random.default_rng(args.seed)
    made = []  # the sample being made; None once it is printed
    try:
        log(f"sample.py: generating from {config['architecture']} at step {config['step']:,} ({args.checkpoint})")
        for _ in range(args.num_samples):
            made = []
            for char in generate(sess, model, args.length, rng, prime=prime, temperature=args.temperature,
                                 argmax=args.argmax):
                made.append(char)
            text, made = prime + "".join(made), None
            print(text, flush=True)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: print what was made of the sample under way, then stop
        if made is not None:
            print(prime + "".join(made), flush=True)
        return 128 + getattr(e, "signum", signal.SIGINT)
    sess.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
