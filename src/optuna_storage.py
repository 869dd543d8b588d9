"""A persistent Optuna study for hydra-optuna-sweeper: Optuna's in-memory storage plus a journal file.

hydra-optuna-sweeper pins optuna<3, whose RDB (SQLite) storage fails against the SQLAlchemy 2 that
MLflow 3 brings (an AssertionError in its schema check, optuna#4375), and optuna<3 has no file
journal of its own. This is that journal, the design Optuna 3 ships as JournalFileStorage: every call
that changes the study is appended to a JSON-lines file as it happens, and replayed when the storage
is opened again, so `create_study(..., load_if_exists=True)` (what the sweeper calls) continues an
interrupted search with all its finished trials. A trial that was running when the search stopped is
recorded FAIL on reopening. conf/hparams_search/optuna.yaml puts the file beside the tracking store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from optuna import distributions
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from src.errors import UserError

# The mutating calls that the sweeper's studies make; all other methods only read.
JOURNALLED = (
    "create_new_study",
    "set_study_directions",
    "set_study_user_attr",
    "set_study_system_attr",
    "create_new_trial",
    "set_trial_state",
    "set_trial_param",
    "set_trial_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
)


def _encode(value: Any) -> Any:
    if isinstance(value, (StudyDirection, TrialState)):
        return {"enum": type(value).__name__, "name": value.name}
    if isinstance(value, distributions.BaseDistribution):
        return {"distribution": distributions.distribution_to_json(value)}
    if isinstance(value, FrozenTrial):
        raise TypeError("template trials (enqueue_trial, add_trial) are not journalled")
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "enum" in value:
        return {"StudyDirection": StudyDirection, "TrialState": TrialState}[value["enum"]][value["name"]]
    if isinstance(value, dict) and "distribution" in value:
        return distributions.json_to_distribution(value["distribution"])
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


# Journals a sweep has claimed for the storage Hydra builds next (src/sweep.py), which takes the lock over.
_claimed: dict[Path, Any] = {}


def claim_study(path: str) -> None:
    """Take the journal's lock now, or refuse in one line: a sweep claims its study before it opens its
    parent run, since Hydra builds the storage only after that, and reports a failure there in several
    lines. The JournalStorage made next for `path` holds the lock; the process's end releases it too."""
    journal = Path(path).resolve()
    if journal not in _claimed:
        _claimed[journal] = _lock_study(journal)


def _lock_study(journal: Path) -> Any:
    """One search at a time per journal (each holds its study in memory)."""
    from filelock import FileLock, Timeout

    lock = FileLock(f"{journal}.lock", timeout=0)
    try:
        journal.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise UserError(
            f"the Optuna study in {journal} is being searched by another process; wait for it to "
            f"end, or run this search against another tracking store"
        ) from None
    except OSError as error:  # a read-only disk, a folder or lock file of another user
        raise UserError(
            f"cannot lock the Optuna study's journal {journal}.lock ({error.strerror or error}): an Optuna "
            f"search keeps its study beside the tracking store, which must be writable"
        ) from None
    return lock


class JournalStorage(InMemoryStorage):
    """In-memory storage whose every change is also appended to `path` and replayed on opening."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = Path(path)
        journal = self._path.resolve()
        self._study_lock = _claimed.pop(journal, None) or _lock_study(journal)
        self._replaying = True
        if self._path.is_file():
            try:
                for line in self._path.read_text().splitlines():
                    if line.strip():
                        entry = json.loads(line)
                        getattr(self, entry["call"])(*_decode(entry["args"]))
            except Exception as error:
                raise UserError(
                    f"Optuna journal corrupt: {path} ({type(error).__name__}: {error}); move it away "
                    f"to start the study anew"
                ) from None
        self._replaying = False
        for study in list(self._studies.values()):  # cut off when the search stopped
            for trial in study.trials:
                if trial.state == TrialState.RUNNING:
                    self.set_trial_state(trial._trial_id, TrialState.FAIL)

    def close(self) -> None:
        """Let another search open the study (a process's exit does the same)."""
        self._study_lock.release()

    def _journal(self, call: str, args: Sequence[Any]) -> None:
        if self._replaying:
            return
        with self._path.open("a") as handle:
            handle.write(
                json.dumps({"call": call, "args": _encode(list(args)), "time": datetime.now().isoformat()}) + "\n"
            )
            handle.flush()


def _journalled(name: str):
    original = getattr(InMemoryStorage, name)

    def method(self: JournalStorage, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        self._journal(name, [*args, *kwargs.values()])  # keyword arguments follow the positional order
        return result

    method.__name__ = name
    method.__doc__ = original.__doc__
    return method


for _name in JOURNALLED:
    setattr(JournalStorage, _name, _journalled(_name))
