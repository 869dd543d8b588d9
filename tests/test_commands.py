"""`src.compare` and `src.sample` with bad input: one line, exit 2, quickly, no secrets."""

from __future__ import annotations

import http.server
import signal
import subprocess
import sys
import threading
import time

import pytest

from src.paths import PROJECT_ROOT


def command(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "module, args",
    [
        ("src.compare", ["rnnlab"]),
        ("src.sample", ["0123abcd"]),
    ],
)
def test_an_unreachable_server_fails_fast_and_a_password_is_refused(module: str, args: list[str]) -> None:
    started = time.perf_counter()
    result = command(module, *args, "--tracking-uri", "http://127.0.0.1:9")
    assert time.perf_counter() - started < 60
    assert result.returncode == 2
    assert result.stderr.startswith("error: tracking server http://127.0.0.1:9 is unreachable")
    secret = command(module, *args, "--tracking-uri", "http://bob:hunter2@127.0.0.1:9")
    assert secret.returncode == 2 and secret.stderr.startswith("error: --tracking-uri carries a password")
    assert "hunter2" not in secret.stdout + secret.stderr
    malformed = command(module, *args, "--tracking-uri", "http://[::1")  # was a traceback from urllib, exit 1
    assert malformed.returncode == 2 and malformed.stderr.splitlines() == [
        "error: --tracking-uri='http://[::1' is invalid: Invalid IPv6 URL"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["rnnlab", "--objective", "accuracy"], "--objective='accuracy' is invalid"),
        (["rnnlab", "--output", "/nonexistent/folder/x.png"], "--output='/nonexistent/folder/x.png' is invalid"),
        (["it's"], "no experiment or sweep named"),
        ([""], "give an experiment (name or id), a sweep id or a filter string"),  # was "None has no runs"
        (["rnnlab", "--output", "/tmp"], "--output='/tmp' is invalid"),
    ],
)
def test_compare_refuses_bad_arguments_in_one_line(tmp_path, args: list[str], message: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{tmp_path / 'm.db'}").search_experiments()  # an existing, empty store
    result = command("src.compare", *args, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
    assert "Traceback" not in result.stderr


def test_sample_refuses_a_negative_seed(tmp_path) -> None:
    result = command("src.sample", "0123abcd", "--seed", "-1", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert result.returncode == 2 and result.stderr.strip() == "error: --seed=-1 is invalid: must be in [0, 2**32)"
    for option, value, rule in (
        ("--seed", str(2**32), "must be in [0, 2**32)"),
        ("--length", "10001", "must be in [0, 10000]"),
    ):
        result = command("src.sample", "0123abcd", option, value, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
        assert result.returncode == 2 and result.stderr.strip() == f"error: {option}={value} is invalid: {rule}"


def test_readers_do_not_create_a_store_for_a_mistyped_path(tmp_path) -> None:
    for module, args in (("src.compare", ["0123abcd"]), ("src.sample", ["0123abcd"]), ("src.runs", ["page"])):
        result = command(module, *args, "--tracking-uri", f"sqlite:///{tmp_path / 'typo.db'}")
        assert result.returncode == 2
        assert result.stderr.strip() == f"error: no tracking store at {tmp_path / 'typo.db'} (check --tracking-uri)"
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.parametrize(
    "content, message",
    [(b"", "is not an MLflow tracking store"), (b"garbage" * 100, "is not a readable SQLite tracking store")],
)
def test_readers_refuse_a_file_that_is_not_a_store_and_leave_it_alone(tmp_path, content, message) -> None:
    store = tmp_path / "store.db"
    store.write_bytes(content)
    for module in ("src.compare", "src.sample", "src.runs"):
        args = ["cleanup"] if module == "src.runs" else ["0123abcd"]
        result = command(module, *args, "--tracking-uri", f"sqlite:///{store}")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip() == f"error: {store} {message}" + (
            " (it lacks MLflow's tables)" if not content else " (file is not a database)"
        )
    assert store.read_bytes() == content


def test_compare_in_a_folder_it_cannot_write_fails_in_one_line(tmp_path) -> None:
    from src.tracking import ensure_experiment

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    ensure_experiment(uri, "rnnlab")
    from mlflow import MlflowClient

    MlflowClient(uri).create_run("1")
    result = command("src.compare", "rnnlab", "--tracking-uri", uri, "--output", "/proc/comparison.png")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # Checked before any work: one line, and no table printed first.
    assert result.stderr.strip().startswith("error: --output='/proc/comparison.png': cannot write")
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


# Ctrl-C while `python -m src.<command>` (or `pipelines.<stage>`) still imports: Python runs the package's
# __init__ with argv[0] == "-m"; the interrupt here stands for one that lands inside any import after it.
INTERRUPTED_WHILE_STARTING = "import sys; sys.argv[0] = '-m'; import {package}; raise KeyboardInterrupt"


@pytest.mark.parametrize("package", ["src", "pipelines"])
def test_ctrl_c_while_a_command_starts_is_one_line(package: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_WHILE_STARTING.format(package=package)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == -signal.SIGINT  # Python's own exit for an uncaught Ctrl-C: 130 in a shell
    assert result.stderr == "error: stopped by SIGINT while starting\n"
    library = subprocess.run(
        [sys.executable, "-c", "import src; raise KeyboardInterrupt"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert "Traceback" in library.stderr  # imported as a library, nothing changes


@pytest.mark.parametrize(
    "arguments",
    [["src.compare", "rnnlab"], ["src.runs", "cleanup"], ["src.sample", "0123456789abcdef0123456789abcdef"]],
    ids=["compare", "cleanup", "sample"],
)
def test_sigterm_to_a_command_waiting_on_its_store_is_one_line_and_143(arguments) -> None:
    """A scheduler's or a terminal's SIGTERM while the command waits on a tracking server that stopped
    answering (it answers /health only): one line, exit 143, as for src.train."""
    from tests.test_faults import HangingTracker

    asked = threading.Event()

    class Tracker(HangingTracker):
        def do_GET(self) -> None:  # noqa: N802
            if not self.path.endswith("/health"):
                asked.set()
            super().do_GET()

        do_POST = do_GET  # noqa: N815

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Tracker)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    process = subprocess.Popen(
        [sys.executable, "-m", *arguments, "--tracking-uri", uri],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert asked.wait(timeout=120), "the command never asked the server"
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=60)
    finally:
        process.kill()
        server.shutdown()
    assert process.returncode == 128 + signal.SIGTERM, errors[-2000:]
    assert errors.strip().splitlines() == ["error: stopped by SIGTERM"]
