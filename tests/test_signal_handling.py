"""The SIGTERM / Ctrl-C handler of every entry point (src/errors.py), with real signals in a real process:
what a second signal does while the first one's clean-up runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from src.paths import PROJECT_ROOT

# Each signal is sent to the process itself; Python runs the handler a few bytecodes later, inside the loop.
SECOND_SIGNAL_SCRIPT = """
import os, signal
from src.errors import stop_on_sigterm

def signal_self(number):
    os.kill(os.getpid(), number)
    for _ in range(100_000):
        pass

signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal: a background job ignores it
stop_on_sigterm()
try:
    signal_self(signal.SIGTERM)
    print("not interrupted", flush=True)
except KeyboardInterrupt as first:
    signal_self(signal.SIGTERM)  # an impatient second signal while the first is handled
    print("except ran to its end after", first, flush=True)
try:
    try:
        signal_self(signal.SIGTERM)
    finally:
        signal_self(signal.SIGINT)  # on the way out, before anything caught the first
        print("finally ran to its end", flush=True)
except KeyboardInterrupt as first:
    print("caught once:", first, flush=True)
try:
    signal_self(signal.SIGINT)  # the earlier ones were dealt with: the next one interrupts again
    print("not interrupted", flush=True)
except KeyboardInterrupt as again:
    print("raised again:", again, flush=True)
"""


def test_a_signal_during_an_interrupts_clean_up_is_remembered_not_raised() -> None:
    """A SIGTERM every millisecond made a sweep exit 1 with a traceback: the second KeyboardInterrupt
    came inside the `except` that was printing the first one's line. While a KeyboardInterrupt is
    handled, further signals are only remembered; afterwards a signal interrupts again."""
    result = subprocess.run(
        [sys.executable, "-c", SECOND_SIGNAL_SCRIPT], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        f"except ran to its end after signal {signal.SIGTERM}",
        "finally ran to its end",
        f"caught once: signal {signal.SIGTERM}",
        f"raised again: signal {signal.SIGINT}",
    ], result.stderr[-3000:]


# A SIGTERM whose KeyboardInterrupt escapes an exec() of a string (as while a dataclass is made).
SIGTERM_IN_EXEC_SCRIPT = """
import os, signal
from src.errors import exit_interrupted, stop_on_sigterm

stop_on_sigterm()
try:
    exec("import os, signal\\nos.kill(os.getpid(), signal.SIGTERM)\\nfor _ in range(100_000):\\n    pass")
except KeyboardInterrupt as interruption:
    exit_interrupted(interruption, "")
"""


def test_a_sigterm_that_lands_inside_exec_still_exits_143(tmp_path) -> None:
    """CPython then flags the interrupt as unhandled and ended the process with SIGINT (-2, the shell's
    130) after the one line said SIGTERM: seen for SIGTERMs landing while MLflow was imported. Only a
    module run with `python -m`, as every entry point is, exits that way (-c and a file exit at once)."""
    (tmp_path / "sigterm_in_exec.py").write_text(SIGTERM_IN_EXEC_SCRIPT)
    result = subprocess.run(
        [sys.executable, "-m", "sigterm_in_exec"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stderr.strip() == "error: stopped by SIGTERM"
    assert result.returncode == 128 + signal.SIGTERM
