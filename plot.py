"""Training curves of one or more run folders, from their TensorBoard event files, as a PNG.

    python plot.py checkpoints/arch1 [more run folders] [--out curves.png]

Three panels against steps: training and validation bits per character on one axis (so that the gap
between them, overfitting, shows), the learning rate, and the gradient's global norm before clipping (the
mean over each report period, and dotted its largest). Every line is in a legend. TensorBoard
(`tensorboard --logdir checkpoints`) is the live view; this is for the docs and for users without it.
"""
import machinery.startup  # noqa: F401 -- first: Ctrl-C while the libraries load exits quietly
import os
import sys
from pathlib import Path

from machinery.command import UserError
from machinery import command, settings
from machinery.tf1 import tf

FORMATS = (".png", ".pdf", ".svg")

PANELS = [("train/bpc", "training loss (bits/char)"), ("valid/bpc", "validation bits/char"),
          ("learning_rate", "learning rate"), ("grad_norm/mean", "gradient norm before clipping")]  # the tags drawn


def figure_path(given, default_name):
    """Where a figure goes: the file given (a folder gets default_name inside it); UserError if it cannot be
    written there. Checked before any work is done."""
    path = Path(given)
    if path.is_dir():
        path = path / default_name
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"{given}: a figure's file name must end in {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise UserError(f"{given}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"{given}: the folder {path.parent} cannot be written")
    return path


def save_figure(fig, path, **options):
    """Writes a matplotlib figure atomically (a temporary file renamed); UserError if it cannot."""
    import matplotlib.pyplot as plt
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, **options)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror})") from None
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()


def read_scalars(folder):
    """{tag: ([steps], [values])} from every event file of a run folder, in step order."""
    events = sorted(Path(folder).glob("events.out.tfevents.*"))
    if not events:
        raise UserError(f"{folder} holds no TensorBoard event files; is it a run folder?")
    points = {}
    for path in events:
        try:
            for event in tf.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    points.setdefault(value.tag, {})[event.step] = value.simple_value
        except tf.errors.DataLossError:  # a run killed while writing leaves a truncated last record
            pass
    if not any(tag in points for tag, _ in PANELS):
        raise UserError(f"{folder}: its event files hold none of the training curves (empty or damaged files, "
                        f"or a run that stopped before its first report line)")
    return {tag: (sorted(p), [p[s] for s in sorted(p)]) for tag, p in points.items()}


def main(argv=None):
    """Draws the curves of run folders from the command line; returns the exit status."""
    return command.run_command("plot.py", _main, argv)


def _main(argv):
    parser = settings.OneLineParser(prog="plot.py", description=settings.description(__doc__))
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    parser.add_argument("--out", metavar="PNG", help="output file (default: RUN/curves.png for one run, "
                        "curves.png here for several)")
    args = parser.parse_args(argv)
    runs = [(Path(folder).resolve().name, read_scalars(folder)) for folder in args.runs]
    out = figure_path(args.out or (Path(args.runs[0]) if len(args.runs) == 1 else Path(".")), "curves.png")
    draw(runs, out)
    print(f"wrote {out}")
    return 0


BITS_SHOWN = 8.0  # bits/char drawn at most: a uniform guess is log2(27) = 4.75, anything far above is divergence


def _line(ax, points, **style):
    """One curve; a curve of a point or two gets markers, so that it shows."""
    steps, values = points
    if len(steps) < 3:
        style = {"marker": "o", "markersize": 4, **style}
    ax.plot(steps, values, **style)


def draw(runs, out):
    """The three panels of runs [(name, scalars)], written to out; returns each panel's legend labels, y scale
    and y range, by title."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
    fig, (bits, rate, grad) = plt.subplots(1, 3, figsize=(15, 4.8))
    for i, (name, scalars) in enumerate(runs):
        color = f"C{i}"
        if "train/bpc" in scalars:
            _line(bits, scalars["train/bpc"], color=color, linewidth=1, label=f"{name}: training batches")
        if "valid/bpc" in scalars:
            _line(bits, scalars["valid/bpc"], color=color, linestyle="--", marker="o", markersize=3,
                  label=f"{name}: validation")
        if "learning_rate" in scalars:
            _line(rate, scalars["learning_rate"], color=color, label=name)
        if "grad_norm/mean" in scalars:
            _line(grad, scalars["grad_norm/mean"], color=color, label=f"{name}: mean of the period")
        if "grad_norm/max" in scalars:
            _line(grad, scalars["grad_norm/max"], color=color, linestyle=":", linewidth=0.8,
                  label=f"{name}: largest of the period")
    for ax, title in ((bits, "bits per character"), (rate, "learning rate"),
                      (grad, "gradient norm before clipping")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if bits.get_ylim()[1] > BITS_SHOWN:  # a diverging run leaves the panel at its top edge
        bits.set_ylim(top=BITS_SHOWN)
    rates = [v for line in rate.lines for v in line.get_ydata() if v > 0]
    if rates and max(rates) / min(rates) > 10:  # a decay over decades: a log axis, read in plain numbers
        rate.set_yscale("log")
        for axis_format in (rate.yaxis.set_major_formatter, rate.yaxis.set_minor_formatter):
            axis_format(FuncFormatter(lambda value, _: f"{value:g}"))
    grad.set_yscale("log")
    fig.tight_layout()
    save_figure(fig, out, dpi=90)
    panels = {ax.get_title(): {"labels": [line.get_label() for line in ax.lines], "yscale": ax.get_yscale(),
                               "ylim": ax.get_ylim(), "markers": [line.get_marker() for line in ax.lines]}
              for ax in (bits, rate, grad)}
    plt.close(fig)
    return panels


if __name__ == "__main__":
    sys.exit(main())
