"""TensorFlow, imported once in v1 graph mode (as the post's TF 1.x code ran), with its start-up guards: a
quiet import, Ctrl-C during the import, and closed stdout or stderr descriptors."""
import contextlib
import os
import signal
import sys
import threading

# Ctrl-C while the libraries load (a few seconds) exits quietly: nothing has been done that could be lost.
_MAIN_THREAD = threading.current_thread() is threading.main_thread()
if _MAIN_THREAD:
    _sigint_handler = signal.signal(signal.SIGINT, lambda signum, frame: os._exit(128 + signum))


def _fill_closed_output():
    """Points a closed stdout or stderr (`>&-`, `2>&-`) at the null device: otherwise the next file opened
    would take its number, and whatever TensorFlow's C++ side logs would be written into that file."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, "w", closefd=False))


_fill_closed_output()


@contextlib.contextmanager
def _quiet_stderr():
    """Silences file descriptor 2 (where TensorFlow's C++ start-up banner goes) for the block; does nothing
    when there is no stderr (`2>&-`: sys.stderr is None and descriptor 2 is closed)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError):
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# TensorFlow is imported here, once, without its import-time log lines (oneDNN stays on: it is faster).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
with _quiet_stderr():
    import tensorflow.compat.v1 as tf
tf.disable_eager_execution()
tf.logging.set_verbosity(tf.logging.ERROR)
if _MAIN_THREAD:
    signal.signal(signal.SIGINT, _sigint_handler)  # Ctrl-C is KeyboardInterrupt again
