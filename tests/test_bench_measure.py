"""benchmarks/measured.py runs each measured command with the project first on PYTHONPATH and keeps
what the caller had there: a machine whose MLflow and Hydra come from PYTHONPATH (the GPU machine
this project was checked on) lost them, and every CUDA bench run failed with "No module named hydra"."""

from __future__ import annotations

import os
import sys

from benchmarks.measured import PROJECT_ROOT, measure

PRINT_PATH = "import os; print(os.environ['PYTHONPATH'])"


def test_a_measured_command_keeps_the_callers_pythonpath_after_the_project(tmp_path, monkeypatch) -> None:
    extra = tmp_path / "site"
    extra.mkdir()
    monkeypatch.setenv("PYTHONPATH", f"{extra}{os.pathsep}")
    measured = measure([sys.executable, "-c", PRINT_PATH], cwd=tmp_path / "run").check("print")
    assert measured.stdout.strip().split(os.pathsep) == [str(PROJECT_ROOT), str(extra)]


def test_without_a_pythonpath_the_project_alone_is_on_it(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    measured = measure([sys.executable, "-c", PRINT_PATH], cwd=tmp_path / "run").check("print")
    assert measured.stdout.strip() == str(PROJECT_ROOT)
