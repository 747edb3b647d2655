"""How far back does the loss reach? Measures ||dL_t / dh_{t-k}|| on real text, for one or more run folders.

    python gradients.py checkpoints/arch1 [more run folders] [--init] [--horizon K]

For each run: L_t is the cross-entropy of the prediction at step t, h_{t-k} the state the model carried
k steps earlier (the hidden state in Arch 1, the previous output in Arch 2). The norm, averaged over a
batch of streams of validation text, is written to RUN/gradients.csv (RUN/gradients-init.csv with --init)
and drawn, all runs on one log-scale plot. A fast fall with k is the vanishing gradient the post warns of.
"""
import machinery.startup  # noqa: F401 -- first: Ctrl-C while the libraries load exits quietly
import csv
import sys
from pathlib import Path

import numpy as np

import data
import plot
import arch1_hidden
import arch2_output
from machinery import checkpoints, command, graphs, settings
from machinery.command import UserError
from machinery.tf1 import tf


STREAMS = 64  # streams of text the norm is averaged over
WARMUP = 100  # characters run through the model before the measured window, so states are realistic


def add_measurement(model, horizon, warmup, streams=STREAMS):
    """Adds to model's graph the gradients of one step's loss with respect to each of the states before it.

    Feed `ids` [warmup + horizon + 1, streams]; fetch `norms`, [horizon] mean norms for k = 1..horizon, and
    `states`, the carried state before each of the horizon steps.
    """
    with model.graph.as_default():
        ids = tf.placeholder(tf.int32, [warmup + horizon + 1, streams], name="gradient_ids")
        x = tf.unstack(tf.one_hot(ids, graphs.alphabet_size), axis=0)
        state = tf.zeros([streams, model.state_size])
        if warmup:
            _, state = model.unroll(x[:warmup], state)
        states = []  # states[j]: the state before step j of the window
        for j in range(horizon):  # one step at a time, so each carried state is a tensor to differentiate
            states.append(state)
            logits, state = model.unroll([x[warmup + j]], state)
        # L_t summed over the streams, so that each stream's gradient is its own dL_t / dh
        loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=x[-1], logits=logits))
        grads = tf.gradients(loss, states)
        norms = tf.stack([tf.reduce_mean(tf.norm(g, axis=1)) for g in reversed(grads)])  # k = 1..horizon
        return {"ids": ids, "norms": norms, "states": tf.stack(states)}


def text_streams(ids, length, streams=STREAMS, seed=0):
    """[length, streams] ids: streams windows of the text at random (seeded) positions."""
    if len(ids) < length + 1:
        fits = len(ids) - 1 - WARMUP  # the largest horizon this text allows
        advice = (f"use --horizon {fits} or less, or a longer text with --data" if fits >= 1
                  else f"pass a longer text with --data (it needs at least {WARMUP + 2:,} validation characters)")
        raise UserError(f"the validation text (the 5% of the text after its first 90%) has {len(ids):,} "
                        f"characters, fewer than the {length:,} a measurement needs; {advice}")
    starts = np.random.default_rng(seed).integers(0, len(ids) - length, size=streams)
    return np.stack([ids[s:s + length] for s in starts], axis=1).astype(np.int32)


def measure(folder, horizon=None, init=False, data_path=None, log=print):
    """(label, [horizon] mean norms) of one run folder: its checkpoint, or a fresh model with --init."""
    config, model, sess = checkpoints.load_run(folder, [arch1_hidden, arch2_output], finalize=False,
                                               restore_weights=not init)
    horizon = horizon or config["hparams"]["num_unrollings"]
    probe = add_measurement(model, horizon, WARMUP)
    source = data_path if data_path is not None else (None if config["data"] == "text8" else config["data"])
    corpus, _ = data.load_corpus(source, log=log)
    valid = data.split(corpus)[1]
    norms = sess.run(probe["norms"], {probe["ids"]: text_streams(valid, WARMUP + horizon + 1)})
    sess.close()
    hp = config["hparams"]
    label = (f"{Path(folder).resolve().name}: {config['architecture']} {hp['activation']} {hp['combine']}, "
             f"{hp['num_unrollings']} unrollings, " + ("at initialisation" if init else f"step {config['step']:,}"))
    return label, norms


def write_csv(path, norms):
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["k", "mean_grad_norm"])
        for k, value in enumerate(norms, start=1):
            out.writerow([k, f"{value:.6e}"])


def draw(path, curves, title):
    """Draws several (label, norms) curves on one log-scale plot, written to path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, norms in curves:
        ax.semilogy(np.arange(1, len(norms) + 1), norms, marker=".", label=label)
    ax.set_xlabel("k: steps between the state and the prediction")
    ax.set_ylabel("mean ||dL_t / dh_(t-k)||")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plot.save_figure(fig, path, dpi=100)


def main(argv=None):
    """Measures and draws the gradient norms of run folders from the command line; returns the exit status."""
    return command.run_command("gradients.py", _main, argv)


def _main(argv):
    parser = settings.OneLineParser(prog="gradients.py", description=settings.description(__doc__))
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders (as written by the training scripts)")
    parser.add_argument("--init", action="store_true",
                        help="measure freshly initialised models with each run's hyperparameters and seed")
    parser.add_argument("--horizon", type=settings.checked_number(int, low=1, high=1000), metavar="K",
                        help="largest k measured (default: each run's num_unrollings)")
    parser.add_argument("--data", metavar="PATH", help="measure on this text's validation split instead of "
                        "the run's own data")
    parser.add_argument("--plot", metavar="PNG", help="where the plot goes (default: RUN/gradients.png for one "
                        "run, gradients.png here for several)")
    args = parser.parse_args(argv)
    suffix = "-init" if args.init else ""
    name = f"gradients{suffix}.png"
    png = plot.figure_path(args.plot, name) if args.plot else None  # a bad --plot is said before the work
    curves = []
    for folder in args.runs:
        label, norms = measure(folder, args.horizon, args.init, args.data, log=lambda s: None)
        write_csv(Path(folder) / f"gradients{suffix}.csv", norms)
        curves.append((label, norms))
        print(f"{label}: k=1 {norms[0]:.3g}, k={len(norms)} {norms[-1]:.3g}")
    png = png or plot.figure_path(args.runs[0] if len(args.runs) == 1 else ".", name)
    draw(png, curves, "How much the loss depends on the state k steps back")
    print(f"wrote {png} and gradients{suffix}.csv in each run folder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
