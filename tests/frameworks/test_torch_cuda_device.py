"""`framework.device=auto` on a CUDA machine: the whole experiment trains torch on the GPU, the run's
`device` tag says so, and what it learns matches the same run on the CPU. Marked `gpu`; skipped
without CUDA (`pytest -m gpu` runs only these).

Why the tolerance (relative 2e-2 on every epoch's losses and on the test metrics): both runs start
from the same weights (drawn by NumPy from the seed, then copied onto the device) and see the same
batches (NumPy's shuffle), so only float arithmetic differs. cuDNN may compute float32 RNNs with
TensorFloat-32 (`torch.backends.cudnn.allow_tf32` is True by default), whose 10-bit mantissa gives
relative errors of about 2e-3 per product (PyTorch's CUDA notes measure 0.0022 on a matmul). Measured
on the CPU: rounding this LSTM's initial weights and inputs to TF32 once moves its losses by at most
4.4e-4 (relative) over 3 epochs; TF32 in every step, about 4x coarser than that one rounding, stays
well inside 2e-2. A device path that went wrong (other initial weights or batches) moves them by far
more: runs with seeds 0 and 1 on the CPU differ by 15-73 % in the first two epochs' losses and
by 57 % in test_mse on this task.
"""

from __future__ import annotations

import pytest
import torch
from mlflow import MlflowClient

from src import experiment

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TASK = ["framework=torch", "dataset=sum", "dataset.num_samples=400", "model=lstm", "model.hidden_size=16"]
TRAINER = ["trainer.epochs=3", "trainer.patience=0", "trainer.batch_size=32", "trainer.seed=0"]
RTOL = 2e-2
LOSSES = ("train_loss", "val_loss")


def test_auto_trains_torch_on_cuda_and_matches_the_cpu(compose_cfg, tracking_uri) -> None:
    client = MlflowClient(tracking_uri)
    runs = {}
    for device in ("auto", "cpu"):
        outcome = experiment.run(compose_cfg(*TASK, *TRAINER, f"framework.device={device}"))
        runs[device] = (outcome, client.get_run(outcome.run_id))
    (gpu, gpu_run), (cpu, cpu_run) = runs["auto"], runs["cpu"]
    assert gpu_run.data.tags["device"].startswith("cuda"), gpu_run.data.tags["device"]
    assert cpu_run.data.tags["device"] == "cpu"
    for name in LOSSES:
        on_gpu, on_cpu = (
            [m.value for m in sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: m.step)]
            for run in (gpu_run, cpu_run)
        )
        assert len(on_gpu) == len(on_cpu) == 3
        assert on_gpu == pytest.approx(on_cpu, rel=RTOL), name
    for name in ("test_mse", "test_mae", "best_val_loss"):
        assert gpu.metrics[name] == pytest.approx(cpu.metrics[name], rel=RTOL), name
    assert gpu.metrics["test_mse"] < gpu.metrics["baseline_mean_test_mse"]  # it learned, on the GPU
