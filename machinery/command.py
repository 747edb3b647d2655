"""The command line's contract, for every tool: a user's mistake is one line and status 1, a stop signal
(Ctrl-C, kill, a closing terminal) is 128 + its number, and an output that goes away (`| head`, a full disk)
does not take the program down with a traceback.
"""
import contextlib
import os
import signal
import sys
import threading

from machinery import startup


class UserError(Exception):
    """A mistake the user can fix (a bad option, an unusable file or run folder); the message says how, in one line."""


class Stopped(KeyboardInterrupt):
    """Stopped by a signal; the exit status is 128 + its number, as a shell reports it."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


# Ctrl-C; kill and timeout (SIGTERM); a closing terminal or a dropped ssh session (SIGHUP). Windows: Ctrl-C only.
STOP_SIGNALS = [signal.SIGINT] + ([signal.SIGTERM, signal.SIGHUP] if sys.platform != "win32" else [])


def _stop(signum, frame):
    raise Stopped(signum)


def _drop_stdout():
    """Sends what is left in stdout's buffer nowhere (its reader has gone, or its disk is full), so that Python
    does not fail again writing it out at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def run_command(prog, main, argv=None, training=False):
    """main(argv) of a tool as a command; returns its exit status. A user's mistake (UserError, DataError) or
    an output that fails (a closed pipe, a full disk) is one line on stderr and status 1; Ctrl-C, SIGTERM and
    SIGHUP stop it with 128 + the signal's number (main may catch KeyboardInterrupt to finish its output).

    training: stdout is line-buffered (each report line reaches a log file as it is printed) and may go away
    without stopping the run (OutputThatMayGoAway).
    """
    startup.done()  # Ctrl-C is KeyboardInterrupt again, and handled here
    taken = {}  # the stop signals this call handles, and their handlers before it (restored at its end)
    if sys.platform != "win32" and threading.current_thread() is threading.main_thread():
        taken = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)
                 if signal.getsignal(s) == signal.SIG_DFL}
    stdout = sys.stdout
    if training:
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(line_buffering=True)
        sys.stdout = OutputThatMayGoAway(sys.stdout)
    try:
        status = main(argv)
        sys.stdout.flush()  # a full disk or a closed pipe is found here, not after the exit status is set
        return status
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        _drop_stdout()
        return 1
    except OSError as e:
        _drop_stdout()
        print(f"{prog}: error: {e.filename or 'the output'}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        return 128 + getattr(e, "signum", signal.SIGINT)
    finally:
        sys.stdout = stdout
        for s, handler in taken.items():
            signal.signal(s, handler)


class OutputThatMayGoAway:
    """A stand-in for sys.stdout for the length of a run: when the output goes away (a closed pipe, as in
    `| head`; a terminal that closed; a log file on a full disk), it says so once on stderr and drops what
    follows, so that training goes on and saves as usual instead of dying at its next report line."""

    def __init__(self, stream):
        self._stream, self.lost = stream, stream is None  # None: started with stdout closed (>&-)

    def write(self, text):
        if not self.lost:
            try:
                return self._stream.write(text)
            except OSError as e:
                self._lose(e)
        return len(text)

    def flush(self):
        if not self.lost:
            try:
                self._stream.flush()
            except OSError as e:
                self._lose(e)

    def _lose(self, error):
        self.lost = True
        try:  # what is still buffered goes nowhere, rather than failing again when Python exits
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        if sys.stderr is not None:
            with contextlib.suppress(OSError):
                print(f"note: the output went away ({error.strerror or error}); training goes on, saving as "
                      f"usual, and says nothing more", file=sys.stderr, flush=True)

    def __getattr__(self, name):
        return getattr(self._stream, name)
