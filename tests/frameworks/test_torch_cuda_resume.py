"""On a CUDA device, a torch fit resumed from its checkpoint equals an uninterrupted one, stacked
dropout included (cuDNN's own dropout state cannot be checkpointed; the backend trains those one layer
at a time, torch's dropout between layers). Skipped without CUDA; run on an H100 on 2026-11-26 (the
LSTM case failed before the backend handled stacked dropout) and on an H200 on 2026-11-27 with the
layer-by-layer training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.config import TrainerConfig
from src.data.base import Split
from src.frameworks import backend_class
from src.frameworks.checkpoint import Checkpoint
from src.frameworks.spec import ModelSpec
from src.frameworks.training import Checkpointing

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("cell, layers, dropout", [("lstm", 2, 0.3), ("gru", 1, 0.0)])
def test_a_resumed_fit_on_cuda_equals_an_uninterrupted_one(tmp_path, cell, layers, dropout) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12, 1)).astype(np.float32)
    train, val = Split(x[:300], x[:300].sum(1)), Split(x[300:], x[300:].sum(1))
    trainer = TrainerConfig(epochs=12, patience=0)
    spec = ModelSpec(cell, 16, layers, "tanh", dropout, 1, 1)
    whole = backend_class("torch").build(spec, 0, "cuda")
    uninterrupted = whole.fit(train, val, trainer, lambda _: None)

    def cut(result) -> None:
        if result.epoch == 6:
            raise Interrupt

    with pytest.raises(Interrupt):
        backend_class("torch").build(spec, 0, "cuda").fit(
            train, val, trainer, cut, Checkpointing(tmp_path / "c.npz", 1)
        )
    checkpoint = Checkpoint.load(tmp_path / "c.npz")
    assert any(name.startswith("rng/cuda/") for name in checkpoint.state)
    resumed = backend_class("torch").build(spec, 5, "cuda")
    result = resumed.fit(train, val, trainer, lambda _: None, Checkpointing(tmp_path / "c.npz", 1, checkpoint))
    assert [r.val_loss for r in result.history] == [r.val_loss for r in uninterrupted.history]
    np.testing.assert_array_equal(resumed.predict(x), whole.predict(x))
