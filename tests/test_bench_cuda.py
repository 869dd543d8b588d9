"""`make bench`'s CUDA rows (benchmarks/cuda.py): torch on CUDA against the CPU where torch sees a GPU,
one "skipped" row where it does not, and the bench runs to the end either way."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from src.paths import PROJECT_ROOT

CUDA = torch.cuda.is_available()


def bench_cuda() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--only", "cuda"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.skipif(CUDA, reason="checks the machine without CUDA")
def test_without_cuda_the_bench_says_the_cuda_rows_were_skipped() -> None:
    output = bench_cuda()
    assert "torch device: cpu (no CUDA device)" in output
    assert re.search(r"torch on CUDA \(framework\.device=cuda\)\s+torch\s+skipped: torch sees no CUDA device", output)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_with_cuda_the_bench_prints_torch_on_cuda_against_the_cpu() -> None:
    output = bench_cuda()
    assert "torch device: cuda (" in output
    assert re.search(r"device \(runs' `device` tags: CUDA side\)\s+torch\s+cuda", output)
    ratio = re.search(r"training: CPU / CUDA\s+torch\s+([\d.]+)\s+x", output)
    assert ratio and float(ratio.group(1)) > 0
