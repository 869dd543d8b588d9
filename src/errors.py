"""The one exception type for user mistakes.

Anything raised as `UserError` is the user's to fix (a bad config value, a missing file, an
unreachable tracking server); the entry points print its message as one line and exit non-zero.
Every other exception is a bug and keeps its traceback. `require` is how a check says so; it sits
here, at the bottom of the import graph, so that config, data and the stages can all use it.
"""

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn

# The signals that interrupted this process, in order (see `check_interrupted`).
_interrupted_by: list[int] = []
# How many `interrupts_deferred` sections are open, and the signal that arrived inside one.
_deferring = 0
_deferred: list[int] = []


def stop_on_sigterm() -> None:
    """Turn SIGTERM (kill, timeout, a cancelled CI job, `dvc queue kill`) into KeyboardInterrupt, so a
    run ends KILLED with its metrics, exactly as on Ctrl-C, instead of staying RUNNING forever. Ctrl-C
    gets the same handler, so that both are remembered (`check_interrupted`). Main thread only.

    A signal that lands while an earlier interrupt is being handled (in an `except` or `finally` on the
    way out) is only remembered: that one already stops the process, and a second KeyboardInterrupt
    raised inside its clean-up cut the clean-up short (a SIGTERM every millisecond made a sweep exit 1
    with a traceback instead of its one line). Once the handling ends, the next signal raises again, so
    a second Ctrl-C still gets out of a library that swallowed the first."""

    def interrupt(signum: int, frame: object) -> None:
        _interrupted_by.append(signum)
        if _deferring:  # inside a write that must not be cut: raised as it ends
            _deferred.append(signum)
            return
        if isinstance(sys.exc_info()[1], KeyboardInterrupt):
            return
        raise KeyboardInterrupt(f"signal {signum}")

    _interrupted_by.clear()  # a new job (a worker may run several): an earlier interrupt was dealt with
    _deferred.clear()
    for number in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(number) not in (signal.SIG_IGN, None):
            signal.signal(number, interrupt)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Let a short write finish before SIGTERM or Ctrl-C lands (with `stop_on_sigterm`'s handler): the
    interrupt is raised as the section ends. A worker stopped inside `np.savez` left the zip half
    written, and its finaliser printed a traceback after the one-line message."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        # Taken before the section closes: a signal landing just after raises at once and leaves
        # nothing behind for a later job of the same worker (`check_interrupted` sees any it missed).
        outermost = _deferring == 1
        pending = list(_deferred) if outermost else []
        if outermost:
            _deferred.clear()
        _deferring -= 1
        if pending:
            raise KeyboardInterrupt(f"signal {pending[-1]}")


def check_interrupted() -> None:
    """Raise again an interrupt Python swallowed: a KeyboardInterrupt raised while a `__del__` or a
    weakref callback runs is only printed ("Exception ignored in ..."), and the run would go on to end
    FINISHED. Called where a run logs an epoch and before it ends."""
    if _interrupted_by:
        raise KeyboardInterrupt(f"signal {_interrupted_by[-1]}")


def exit_interrupted(interruption: KeyboardInterrupt, consequence: str) -> NoReturn:
    """One line for Ctrl-C or SIGTERM, no traceback, and the shell's code for it (130 or 143); further
    interrupts are ignored so that the exit (and a sweep's clean-up after it) is not cut short."""
    number = _interrupted_by[0] if _interrupted_by else signal.SIGINT
    for ignored in (signal.SIGINT, signal.SIGTERM):
        signal.signal(ignored, signal.SIG_IGN)
    del interruption  # its message is the signal's number, said here by name
    print(f"error: stopped by {signal.Signals(number).name}{consequence}", file=sys.stderr, flush=True)
    _forget_unhandled_keyboard_interrupt()
    sys.exit(128 + number)


def _forget_unhandled_keyboard_interrupt() -> None:
    """CPython 3.11 marks a KeyboardInterrupt that escapes an `exec()` of a string (dataclasses and many
    libraries generate code so while they are imported) as unhandled, even when a caller handles it, and
    then ends the process with SIGINT whatever its exit code: a SIGTERM that landed there exited as a
    Ctrl-C (killed by SIGINT, not 143; 2 in 10 SIGTERMs 3.5 s into a run). Handled here, so cleared."""
    import ctypes

    with suppress(AttributeError, ValueError, OSError):  # another interpreter: nothing to clear
        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0


def quiet_interrupt_while_starting() -> None:
    """A command of this project run with `python -m`: Ctrl-C while it still imports (before its own
    handler) prints one line, not the traceback of whatever import it cut. Python still ends the process
    with SIGINT (the shell sees 130). Nothing changes when the package is imported as a library."""
    if sys.argv[:1] != ["-m"]:  # Python sets argv[0] to "-m" while it looks for the module to run
        return
    original = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print("error: stopped by SIGINT while starting", file=sys.stderr, flush=True)
        else:
            original(kind, value, traceback)

    sys.excepthook = hook


class UserError(Exception):
    """A mistake in configuration or input that the user can fix; the message says how."""


class TrackingUnavailable(UserError):
    """The tracking server stopped answering (or answered errors), or a database store could no longer be
    written (a full disk), while a run was under way. `runs_writable`: only the store's local artifact
    folder failed (a full or read-only disk): the database still takes the run's end."""

    def __init__(self, message: str, runs_writable: bool = False) -> None:
        super().__init__(message)
        self.runs_writable = runs_writable


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the run ends FAILED with the reason in a tag."""


def require(condition: bool, key: str, allowed: str, value: Any) -> None:
    """Raise the one-line error that names the key, the bad value and what is allowed."""
    if not condition:
        raise UserError(f"{key}={value!r} is invalid: {allowed}")


def require_fraction(value: float, key: str) -> None:
    require(0.0 <= value < 1.0, key, "must be in [0, 1)", value)


@contextmanager
def reading(path: Path, what: str = "model file", missing_hint: str = "") -> Iterator[None]:
    """Turn a missing or unreadable file into the one-line UserError that names it: what was missing,
    or that it is corrupt and why (first line of the reason). A UserError raised inside passes as it is."""
    try:
        yield
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{what} missing: {path}{missing_hint}") from None
    except Exception as error:
        reason = (str(error).splitlines() or [""])[0][:300]
        raise UserError(f"{what} corrupt: {path} ({type(error).__name__}{': ' + reason if reason else ''})") from None
