"""The one exception type for user mistakes.

Anything raised as `UserError` is the user's to fix (a bad config value, a missing file, an
unreachable tracking server); the entry points print its message as one line and exit non-zero.
Every other exception is a bug and keeps its traceback.
"""


def stop_on_sigterm() -> None:
    """Turn SIGTERM (kill, timeout, a cancelled CI job, `dvc queue kill`) into KeyboardInterrupt, so a
    run ends KILLED with its metrics, exactly as on Ctrl-C, instead of staying RUNNING forever."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


class UserError(Exception):
    """A mistake in configuration or input that the user can fix; the message says how."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the run ends FAILED with the reason in a tag."""
