"""TensorFlow in v1 graph mode (as the post's TF 1.x code ran), imported at the first use of any of its names:

    from machinery.tf1 import tf      # costs nothing yet: --help and a mistyped option answer at once
    tf.placeholder(...)               # TensorFlow loads here, quietly, once

The import is quiet: TensorFlow's C++ start-up banner goes to the null device (oneDNN stays on: it is faster).
"""
import contextlib
import os
import sys


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


class _TensorFlow:
    """tensorflow.compat.v1, imported when one of its names is first asked for."""

    _module = None

    def __getattr__(self, name):
        if _TensorFlow._module is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            with _quiet_stderr():
                import tensorflow.compat.v1 as v1
            v1.disable_eager_execution()
            v1.logging.set_verbosity(v1.logging.ERROR)
            _TensorFlow._module = v1
        value = getattr(_TensorFlow._module, name)
        setattr(self, name, value)  # found directly from now on: the training step asks for tf.Tensor often
        return value


tf = _TensorFlow()
