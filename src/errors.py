"""The one exception type for user mistakes.

Anything raised as `UserError` is the user's to fix (a bad config value, a missing file, an
unreachable tracking server); the entry points print its message as one line and exit non-zero.
Every other exception is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in configuration or input that the user can fix; the message says how."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the run ends FAILED with the reason in a tag."""
