"""Imported first by every tool and script: a Ctrl-C while Python loads the libraries (numpy, TensorFlow) ends
the program quietly with status 130, as nothing has been done that could be lost. command.run_command hands
Ctrl-C back to Python once the program proper begins.

It acts only for a program run from this repository's root (python arch1_hidden.py ...), not for one that
imports the tools (the tests do), and leaves an ignored Ctrl-C ignored (a background job's). It also points a
closed stdout or stderr at the null device, before any file is opened.
"""
import os
import signal
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def _quit(signum, frame):
    os._exit(128 + signum)


def _is_our_program():
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is not None and os.path.dirname(os.path.abspath(main_file)) == ROOT


_fill_closed_output()
if (threading.current_thread() is threading.main_thread() and _is_our_program()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
    signal.signal(signal.SIGINT, _quit)


def done():
    """Ctrl-C is Python's KeyboardInterrupt again (if this module had taken it)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is _quit:
        signal.signal(signal.SIGINT, signal.default_int_handler)
