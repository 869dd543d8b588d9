"""Checkpoints in the shared epoch loop: when they are written, what they hold, that they are atomic and
pickle-free, and that a fit continued from one equals an uninterrupted fit (early stopping included)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from src.config import TrainerConfig
from src.data.base import Split
from src.frameworks import backend_class
from src.frameworks.checkpoint import Checkpoint, EpochResult
from src.frameworks.spec import ModelSpec
from src.frameworks.training import Checkpointing
from src.optuna_storage import JournalStorage
from src.paths import PROJECT_ROOT
from src.resume import run_key

SPEC = ModelSpec("gru", 6, 2, "tanh", 0.3, 1, 1)


@pytest.fixture(scope="module")
def data() -> tuple[Split, Split]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5, 1)).astype(np.float32)
    y = x.sum(axis=1)
    return Split(x[:90], y[:90]), Split(x[90:], y[90:])


class Interrupt(Exception):
    pass


def interrupted_at(epoch: int):
    def on_epoch(result) -> None:
        if result.epoch == epoch:
            raise Interrupt

    return on_epoch


def test_checkpoints_are_written_every_n_epochs_and_after_the_last(tmp_path, data, monkeypatch) -> None:
    saved: list[tuple[int, bool]] = []
    original = Checkpoint.save

    def recording(self, path):
        saved.append((self.epoch, self.finished))
        original(self, path)

    monkeypatch.setattr(Checkpoint, "save", recording)
    backend = backend_class("numpy").build(SPEC, seed=0)
    backend.fit(
        *data,
        TrainerConfig(epochs=5, patience=0, checkpoint_every=2),
        lambda _: None,
        Checkpointing(tmp_path / "run.npz", 2),
    )
    assert saved == [(2, False), (4, False), (5, True)]
    saved.clear()
    backend.fit(
        *data,
        TrainerConfig(epochs=3, patience=0, checkpoint_every=0),
        lambda _: None,
        Checkpointing(tmp_path / "off.npz", 0),
    )
    assert saved == [] and not (tmp_path / "off.npz").exists()


def test_a_checkpoint_loads_without_pickle_and_holds_the_whole_training_state(tmp_path, data) -> None:
    backend = backend_class("torch").build(SPEC, seed=0)
    backend.fit(*data, TrainerConfig(epochs=4, patience=0), lambda _: None, Checkpointing(tmp_path / "c.npz", 1))
    with np.load(tmp_path / "c.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    assert not any(array.dtype == object for array in arrays.values())
    names = set(arrays)
    assert {"meta", "state/rng/batches", "state/rng/torch"} <= names
    assert any(name.startswith("state/optimizer/") and name.endswith("/exp_avg_sq") for name in names)
    checkpoint = Checkpoint.load(tmp_path / "c.npz")
    assert checkpoint.epoch == 4 and checkpoint.finished and len(checkpoint.history) == 4
    assert checkpoint.best_val == min(result.val_loss for result in checkpoint.history)
    assert set(checkpoint.best_weights) == set(backend.get_weights())
    assert list(tmp_path.iterdir()) == [tmp_path / "c.npz"]  # no temporary file left behind


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path, data, monkeypatch) -> None:
    backend = backend_class("numpy").build(SPEC, seed=0)
    path = tmp_path / "c.npz"
    backend.fit(*data, TrainerConfig(epochs=2, patience=0), lambda _: None, Checkpointing(path, 1))
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError):
        Checkpoint.load(path).save(path)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]


SIGTERM_DURING_THE_WRITE = """
import os, signal, sys
import numpy as np
from src.errors import stop_on_sigterm
from src.frameworks.checkpoint import Checkpoint, EpochResult

stop_on_sigterm()
write = np.savez


def hit_by_sigterm(handle, **arrays):
    os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread inside the write
    write(handle, **arrays)


np.savez = hit_by_sigterm
weights = {"w": np.arange(6.0).reshape(2, 3)}
checkpoint = Checkpoint("numpy", 1, [EpochResult(1, 0.5, 0.25, 0.1)], 1, 0.25, weights, {"weights/w": weights["w"]})
try:
    checkpoint.save(__import__("pathlib").Path(sys.argv[1]))
except KeyboardInterrupt as interruption:
    print("interrupted after the write:", interruption)
"""


KILLED_DURING_THE_WRITE = """
import sys, time
from pathlib import Path
import numpy as np
from src.frameworks.checkpoint import Checkpoint, EpochResult


def stuck(handle, **arrays):
    handle.write(b"PK half a zip")
    handle.flush()
    print("writing", flush=True)
    time.sleep(600)


np.savez = stuck
weights = {"w": np.arange(6.0).reshape(2, 3)}
Checkpoint("numpy", 1, [EpochResult(1, 0.5, 0.25, 0.1)], 1, 0.25, weights, {"weights/w": weights["w"]}).save(
    Path(sys.argv[1])
)
"""


def test_the_next_write_removes_what_a_writer_killed_mid_write_left_behind(tmp_path) -> None:
    """A training process killed inside a checkpoint write (SIGKILL after its stop grace, kill -9, OOM)
    left its temporary file for ever; the run's next write removes it, and neither another checkpoint's
    nor one whose writer still lives."""
    path = tmp_path / "c.npz"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_DURING_THE_WRITE, str(path)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    finally:
        writer.kill()
        writer.wait(timeout=30)
    (stale,) = tmp_path.glob(".c.npz.*.tmp")
    assert stale.read_bytes() == b"PK half a zip" and not path.exists()
    other = tmp_path / ".d.npz.1.writing.tmp"  # another checkpoint's write
    living = tmp_path / f".c.npz.{os.getpid()}.writing.tmp"  # a write of this path by a process still alive
    for under_way in (other, living):
        under_way.write_bytes(b"PK")
    weights = {"w": np.ones((2, 3))}
    Checkpoint("numpy", 1, [EpochResult(1, 0.5, 0.25, 0.1)], 1, 0.25, weights, {"weights/w": weights["w"]}).save(path)
    assert sorted(tmp_path.iterdir()) == sorted([other, living, path])
    assert Checkpoint.load(path).epoch == 1


def test_sigterm_during_a_checkpoint_write_lands_after_it(tmp_path) -> None:
    """A worker stopped inside np.savez left a half-written zip whose finaliser printed a traceback
    ("Exception ignored in: ZipFile.__del__") after the sweep's one-line message."""
    path = tmp_path / "c.npz"
    result = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING_THE_WRITE, str(path)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "interrupted after the write: signal 15"
    assert result.stderr == ""
    loaded = Checkpoint.load(path)
    assert loaded.epoch == 1 and np.array_equal(loaded.state["weights/w"], np.arange(6.0).reshape(2, 3))
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("framework", ["numpy", "torch", "keras"])
def test_a_fit_continued_from_a_checkpoint_stops_early_and_ends_like_an_uninterrupted_one(
    tmp_path, data, framework
) -> None:
    trainer = TrainerConfig(epochs=60, patience=3, lr=0.05)
    whole = backend_class(framework).build(SPEC, seed=3)
    uninterrupted = whole.fit(*data, trainer, lambda _: None)
    assert uninterrupted.stopped_early  # the lr is high enough for early stopping to trigger
    cut = backend_class(framework).build(SPEC, seed=3)
    with pytest.raises(Interrupt):
        cut.fit(*data, trainer, interrupted_at(uninterrupted.best_epoch + 1), Checkpointing(tmp_path / "c.npz", 1))
    resumed = backend_class(framework).build(SPEC, seed=99)  # other initial weights: the checkpoint must win
    seen: list[int] = []
    result = resumed.fit(
        *data,
        trainer,
        lambda r: seen.append(r.epoch),
        Checkpointing(tmp_path / "c.npz", 1, Checkpoint.load(tmp_path / "c.npz")),
    )
    assert seen == list(range(1, len(uninterrupted.history) + 1))
    assert (result.best_epoch, result.stopped_early) == (uninterrupted.best_epoch, True)
    assert [r.val_loss for r in result.history] == [r.val_loss for r in uninterrupted.history]
    np.testing.assert_array_equal(resumed.predict(data[1].x), whole.predict(data[1].x))


def test_a_checkpoint_of_another_framework_is_refused(tmp_path, data) -> None:
    from src.errors import UserError

    backend_class("numpy").build(SPEC, seed=0).fit(
        *data, TrainerConfig(epochs=1, patience=0), lambda _: None, Checkpointing(tmp_path / "c.npz", 1)
    )
    with pytest.raises(UserError, match="numpy checkpoint, not torch"):
        backend_class("torch").build(SPEC, seed=0).fit(
            *data,
            TrainerConfig(epochs=2, patience=0),
            lambda _: None,
            Checkpointing(None, 0, Checkpoint.load(tmp_path / "c.npz")),
        )


def test_run_key_ignores_tracking_and_checkpointing_but_not_what_trains(compose_cfg) -> None:
    from omegaconf import OmegaConf

    def key(*overrides: str, digest: str = "d") -> str:
        return run_key(OmegaConf.to_container(compose_cfg(*overrides), resolve=True), digest)

    base = key()
    assert (
        key(
            "tracking.uri=sqlite:////elsewhere.db",
            "tracking.run_name=x",
            "tracking.resume=true",
            "tracking.skip_finished=true",
            "trainer.checkpoint_every=5",
            "objective=test_mse",
        )
        == base
    )
    assert key("trainer.lr=0.001") != base and key("framework=numpy") != base
    assert key(digest="other data") != base


def test_an_optuna_journal_reopens_with_its_trials_and_fails_the_cut_one(tmp_path) -> None:
    import optuna

    from src.errors import UserError

    path = str(tmp_path / "studies.jsonl")
    storage = JournalStorage(path)
    study = optuna.create_study(storage=storage, study_name="s", load_if_exists=True)
    study.optimize(lambda trial: trial.suggest_float("x", -1, 1) ** 2, n_trials=3)
    study.ask()  # a trial cut off while running
    with pytest.raises(UserError, match="is being searched by another process"):
        JournalStorage(path)
    storage.close()
    reopened = optuna.create_study(storage=JournalStorage(path), study_name="s", load_if_exists=True)
    states = [trial.state.name for trial in reopened.trials]
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"]
    assert [t.params for t in reopened.trials[:3]] == [t.params for t in study.trials[:3]]
    assert reopened.best_value == study.best_value
