"""Where runs are recorded when the code runs in DVC's temporary copy of the project."""

from pathlib import Path

import pytest

from src.paths import record_root


def test_record_root_is_the_real_repository_inside_dvcs_temporary_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "standalone" / "tmpabc123"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert record_root(copy) == tmp_path
    assert record_root(tmp_path) == tmp_path  # a workspace run: DVC_ROOT is the project itself


def test_record_root_ignores_another_projects_dvc_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage of some other DVC project that calls this one keeps this project's store."""
    project = tmp_path / "rnnlab"
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "other"))
    assert record_root(project) == project
    monkeypatch.delenv("DVC_ROOT")
    assert record_root(project) == project
