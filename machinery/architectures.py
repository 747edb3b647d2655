"""The architectures a run folder can hold, by the name its config.json gives: one script each."""
import importlib

NAMES = ("arch1_hidden", "arch2_output")


def script(name):
    """The script module of an architecture (its ARCHITECTURE, HPARAMS, build_graph and GRAPHS), imported
    when first asked for: the scripts import this package, so it cannot import them at its own start."""
    if name not in NAMES:
        raise KeyError(name)
    return importlib.import_module(name)


def scripts():
    """{name: script module} of every architecture."""
    return {name: script(name) for name in NAMES}
