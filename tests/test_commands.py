"""`src.compare` and `src.sample` with bad input: one line, exit 2, quickly, no secrets."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from src.paths import PROJECT_ROOT


def command(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("module, args", [
    ("src.compare", ["rnnlab"]),
    ("src.sample", ["0123abcd"]),
])
def test_an_unreachable_server_fails_fast_without_its_password(module: str, args: list[str]) -> None:
    started = time.perf_counter()
    result = command(module, *args, "--tracking-uri", "http://bob:hunter2@127.0.0.1:9")
    assert time.perf_counter() - started < 60
    assert result.returncode == 2
    assert result.stderr.startswith("error: tracking server http://bob:***@127.0.0.1:9 is unreachable")
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("args, message", [
    (["rnnlab", "--objective", "test_accuracy"], "--objective='test_accuracy' is invalid"),
    (["rnnlab", "--output", "/nonexistent/folder/x.png"], "--output='/nonexistent/folder/x.png' is invalid"),
    (["it's"], "no experiment or sweep named"),
])
def test_compare_refuses_bad_arguments_in_one_line(tmp_path, args: list[str], message: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{tmp_path / 'm.db'}").search_experiments()  # an existing, empty store
    result = command("src.compare", *args, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
    assert "Traceback" not in result.stderr


def test_sample_refuses_a_negative_seed(tmp_path) -> None:
    result = command("src.sample", "0123abcd", "--seed", "-1", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert result.returncode == 2 and result.stderr.strip() == "error: --seed=-1 is invalid: must be >= 0"


def test_readers_do_not_create_a_store_for_a_mistyped_path(tmp_path) -> None:
    for module in ("src.compare", "src.sample"):
        result = command(module, "0123abcd", "--tracking-uri", f"sqlite:///{tmp_path / 'typo.db'}")
        assert result.returncode == 2
        assert result.stderr.strip() == f"error: no tracking store at {tmp_path / 'typo.db'} (check --tracking-uri)"
    assert not (tmp_path / "typo.db").exists()
