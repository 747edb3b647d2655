"""Training curves of one or more run folders, from their TensorBoard event files, as a PNG.

    python plot.py checkpoints/arch1 [more run folders] [--out curves.png]

Four panels against steps: training loss, validation bits per character, learning rate and the gradient's
global norm before clipping (mean over each report period; dotted: the period's largest). TensorBoard
(`tensorboard --logdir checkpoints`) is the live view; this is for the README and for users without it.
"""
import sys
from pathlib import Path

import training
from training import tf

PANELS = [("train/loss", "training loss (nats/char)"), ("valid/bpc", "validation bits/char"),
          ("learning_rate", "learning rate"), ("grad_norm/mean", "gradient norm before clipping")]


def read_scalars(folder):
    """{tag: ([steps], [values])} from every event file of a run folder, in step order."""
    events = sorted(Path(folder).glob("events.out.tfevents.*"))
    if not events:
        raise training.UserError(f"{folder} holds no TensorBoard event files; is it a run folder?")
    points = {}
    for path in events:
        try:
            for event in tf.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    points.setdefault(value.tag, {})[event.step] = value.simple_value
        except tf.errors.DataLossError:  # a run killed while writing leaves a truncated last record
            pass
    return {tag: (sorted(p), [p[s] for s in sorted(p)]) for tag, p in points.items()}


def main(argv=None):
    parser = training.OneLineParser(prog="plot.py", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    parser.add_argument("--out", metavar="PNG", help="output file (default: RUN/curves.png for one run, "
                        "curves.png here for several)")
    args = parser.parse_args(argv)
    try:
        runs = [(Path(folder).resolve().name, read_scalars(folder)) for folder in args.runs]
    except training.UserError as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        return 1
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (tag, title) in zip(axes.ravel(), PANELS):
        for i, (name, scalars) in enumerate(runs):
            if tag in scalars:
                ax.plot(*scalars[tag], label=name, color=f"C{i}", marker=".")
            if tag == "grad_norm/mean" and "grad_norm/max" in scalars:
                ax.plot(*scalars["grad_norm/max"], color=f"C{i}", linestyle=":", linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if tag in ("learning_rate", "grad_norm/mean"):
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    out = Path(args.out) if args.out else (Path(args.runs[0]) / "curves.png" if len(runs) == 1 else Path("curves.png"))
    fig.savefig(out, dpi=90)
    plt.close(fig)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
