"""Loading never runs pickled code; credentials never reach params or tags; servers bind 127.0.0.1."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from src import experiment, tasks
from src.data.scaling import Standardizer
from src.errors import UserError
from src.frameworks import backend_class
from src.frameworks.spec import ModelSpec
from src.paths import PROJECT_ROOT
from src.predictor import Predictor
from src.uris import redact
from tests.conftest import QUICK, run_cli

SPEC = ModelSpec("gru", 4, 1, "tanh", 0.0, 2, 1)
CANARY = "rnnlab-pickle-canary"


class Exploit:
    """Unpickling this would run a command: a loader that unpickles must not get this far."""

    def __reduce__(self):
        return (print, (CANARY,))


def saved(framework: str, directory: Path) -> Path:
    predictor = Predictor(
        backend_class(framework).build(SPEC, seed=0), Standardizer.identity(2, 1), tasks.get("regression")
    )
    predictor.save(directory)
    return directory


def test_torch_weights_holding_code_are_refused(tmp_path: Path, capsys) -> None:
    directory = saved("torch", tmp_path)
    with (directory / "weights.pt").open("wb") as handle:
        pickle.dump({"weights": Exploit()}, handle)
    with pytest.raises(UserError, match=r"model file corrupt: .*weights\.pt"):
        Predictor.load(directory)
    assert CANARY not in capsys.readouterr().out


@pytest.mark.parametrize("framework", ["numpy", "keras"])
def test_npz_weights_holding_objects_are_refused(framework: str, tmp_path: Path, capsys) -> None:
    directory = saved(framework, tmp_path)
    np.savez(directory / "weights.npz", payload=np.array([Exploit()], dtype=object))
    with pytest.raises(UserError, match=r"model file corrupt: .*weights\.npz"):
        Predictor.load(directory)
    assert CANARY not in capsys.readouterr().out


@pytest.mark.parametrize("framework", ["numpy", "torch", "keras"])
def test_missing_or_corrupt_model_files_name_the_file(framework: str, tmp_path: Path) -> None:
    directory = saved(framework, tmp_path)
    (directory / "rnnlab.json").write_text("{not json")
    with pytest.raises(UserError, match=r"model file corrupt: .*rnnlab\.json"):
        Predictor.load(directory)
    (directory / "rnnlab.json").unlink()
    with pytest.raises(UserError, match=r"model file missing: .*rnnlab\.json"):
        Predictor.load(directory)


def test_logged_models_hold_no_pickle(compose_cfg, tracking_uri) -> None:
    outcome = experiment.run(compose_cfg("dataset=sum", "dataset.num_samples=200", *QUICK))
    client = MlflowClient(tracking_uri)
    model = client.get_logged_model(outcome.model_uri.removeprefix("models:/"))
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location))
    names = [file.name for file in path.rglob("*") if file.is_file()]
    assert "MLmodel" in names and "mlflow_model.py" in names
    assert not [name for name in names if name.endswith((".pkl", ".pickle"))], names


def test_redact_hides_user_information_and_secret_query_values_in_any_url() -> None:
    assert redact("http://bob:pw@host:5000/x") == "http://***@host:5000/x"
    assert redact("a=postgresql://u:p%40ss@db/x b=http://host") == "a=postgresql://***@db/x b=http://host"
    assert redact("http://u:p@ss@host/x") == "http://***@host/x"  # a password holding '@'
    assert redact("http://TOKEN123@host") == "http://***@host"
    assert redact("https://h/p?a=1&access_token=abc&b=2") == "https://h/p?a=1&access_token=***&b=2"
    assert redact("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    assert redact("http://h/p;token=abc#x") == "http://h/p;token=***#x"  # a path (matrix) parameter
    assert redact("http://h/#access_token=abc") == "http://h/#access_token=***"  # a fragment
    assert redact("http://h/path@x?jwt=abc") == "http://h/path@x?jwt=***"  # '@' after the host is no user
    assert redact("sqlite:///a.db,http://u:pw@h:1") == "sqlite:///a.db,http://***@h:1"  # a sweep's list
    assert redact("http\\://u\\:pw@h") == "http\\://***@h"  # as Hydra writes overrides back


@pytest.mark.parametrize(
    "text",
    [
        "http://u:S3@h",
        "http://S3@h",
        "http://h/?a=1&token=S3",
        "http://h/?a=1;password=S3",
        "http://h/;token=S3",
        "http://h/#token=S3",
        "https://h/?jwt=S3",
        "https://h/?sessionid=S3",
        "http://u:S3;x@h",
        "http://u:S3#x@h",
        "http://h?token=S3",
        "postgresql://u:S3@h1,h2/db",
        "sqlite:///a.db,http://u:S3@h",
        "http://h/?a=1,b&api_key=S3",
        "http\\://h/?sig\\=S3",
        "x=http://h/?Auth=S3",
    ],
)
def test_every_secret_the_check_refuses_is_one_redact_masks_and_the_reverse(text: str) -> None:
    from src.uris import secret_in_uri

    assert secret_in_uri(text) is not None
    assert "S3" not in redact(text)
    assert secret_in_uri("http://h/p?a=1&b=2;c=3#d") is None and redact("http://h/p?a=1#d") == "http://h/p?a=1#d"


@pytest.mark.parametrize(
    "uri",
    ["postgresql://db/mlflow?passfile=/home/me/.pgpass", "mysql://db/x?session_variables=foo", "http://h/path@x/y"],
)
def test_uris_that_only_look_secret_are_not_refused(uri: str) -> None:
    from src.uris import secret_in_uri

    assert secret_in_uri(uri) is None and redact(uri) == uri


SECRET = "S3cretPW42"
SECRET_URIS = [
    f"http://alice:{SECRET}@127.0.0.1:5999",
    f"http://{SECRET}@127.0.0.1:5999",
    f"http://bob:a@b{SECRET}@127.0.0.1:5999",
    f"postgresql://carol:{SECRET}@db/mlflow",
]


@pytest.mark.parametrize("uri", SECRET_URIS)
def test_a_tracking_uri_carrying_a_secret_is_refused_before_anything_is_written(tmp_path, uri) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.train",
            "trainer=quick",
            f"tracking.uri={uri}",
            f"hydra.run.dir={tmp_path / 'out'}",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: tracking.uri carries a") and "MLFLOW_TRACKING_PASSWORD" in line
    assert SECRET not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()


def test_a_secret_uri_in_the_environment_or_a_sweep_is_refused_too(tmp_path) -> None:
    environment = {**os.environ, "MLFLOW_TRACKING_URI": SECRET_URIS[0]}
    single = subprocess.run(
        [sys.executable, "-m", "src.train", "trainer=quick", f"hydra.run.dir={tmp_path / 'a'}"],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert single.returncode == 2 and single.stderr.startswith("error: MLFLOW_TRACKING_URI carries a password")
    sweep = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.train",
            "-m",
            "trainer.seed=0,1",
            "trainer=quick",
            f"tracking.uri={SECRET_URIS[1]}",
            f"hydra.sweep.dir={tmp_path / 'b'}",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sweep.returncode == 2 and sweep.stderr.startswith("error: tracking.uri carries a user name or token")
    # The secret as the second value of a sweep's list, and in a parameter after ';' or in a fragment.
    later = [
        run_cli(
            *(["-m"] if index == 0 else []),
            "trainer=quick",
            f"tracking.uri={value}",
            f"hydra.sweep.dir={tmp_path / f'c{index}'}",
            f"hydra.run.dir={tmp_path / f'c{index}'}",
        )
        for index, value in enumerate(
            [
                f"sqlite:///{tmp_path}/x.db,{SECRET_URIS[0]}",
                f"'http://127.0.0.1:9/?a=1;password={SECRET}'",
                f"'http://127.0.0.1:9/#token={SECRET}'",
            ]
        )
    ]
    assert [result.returncode for result in later] == [2, 2, 2]
    assert [result.stderr.split(";")[0] for result in later] == [
        "error: tracking.uri carries a password",
        "error: tracking.uri carries a 'password' parameter",
        "error: tracking.uri carries a 'token' parameter",
    ]
    for result in (single, sweep, *later):
        assert SECRET not in result.stdout + result.stderr
    assert not any(tmp_path.rglob("*"))


def test_documented_server_commands_bind_localhost() -> None:
    text = "\n".join((PROJECT_ROOT / name).read_text() for name in ("README.md", "Makefile"))
    commands = re.findall(r"(?m)(?:^|`)\s*(?:\S*/)?mlflow (?:server|ui) -[^`\n]*", text)
    assert commands
    for command in commands:
        assert "--host 127.0.0.1" in command, command


@pytest.mark.parametrize("framework", ["numpy", "torch", "keras"])
def test_an_impossible_spec_or_wrong_shaped_weights_are_refused_by_name(framework: str, tmp_path: Path) -> None:
    import json

    directory = saved(framework, tmp_path)
    spec_file = directory / "spec.json"
    spec = json.loads(spec_file.read_text())
    spec_file.write_text(json.dumps({**spec, "hidden_size": -5}))
    with pytest.raises(UserError, match=r"model file corrupt: .*spec\.json \(hidden_size=-5 is not possible\)"):
        Predictor.load(directory)
    spec_file.write_text(json.dumps({**spec, "hidden_size": spec["hidden_size"] + 3}))  # weights no longer fit
    with pytest.raises(UserError, match=r"model file corrupt: .*weights\."):
        Predictor.load(directory)


@pytest.mark.parametrize("sweep", [[], ["-m", "trainer.seed=0,1"]], ids=["run", "sweep"])
def test_a_secret_uri_in_a_config_file_is_refused_before_anything_is_written(tmp_path, sweep) -> None:
    """A user's own config group file (`--config-dir`), not the command line, holds the secret."""
    config_dir, out = tmp_path / "conf", tmp_path / "out"
    (config_dir / "tracking").mkdir(parents=True)
    (config_dir / "tracking" / "team.yaml").write_text(f"defaults:\n  - default\n  - _self_\nuri: {SECRET_URIS[0]}\n")
    result = run_cli(
        "--config-dir", str(config_dir), *sweep, "tracking=team", "trainer=quick",
        f"hydra.run.dir={out}", f"hydra.sweep.dir={out}",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: tracking.uri carries a password")
    assert SECRET not in result.stdout + result.stderr
    assert not out.exists()


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
@pytest.mark.parametrize(
    "where, key",
    [
        ("env_set", "hydra.job.env_set.MLFLOW_TRACKING_URI"),  # Hydra's own config, also written to .hydra/
        ("config file", "tracking.run_name"),  # a key other than tracking.uri, in a user's config file
    ],
)
def test_a_secret_uri_anywhere_in_the_config_is_refused_before_anything_is_written(
    tmp_path, sweep: bool, where: str, key: str
) -> None:
    """The check read tracking.uri and the task's overrides only: Hydra wrote a secret in
    hydra.job.env_set (a Hydra override) to .hydra/hydra.yaml, and a sweep to multirun.yaml, before
    the run refused the variable it set."""
    config_dir, out = tmp_path / "conf", tmp_path / "out"
    (config_dir / "tracking").mkdir(parents=True)
    (config_dir / "tracking" / "team.yaml").write_text(
        f"defaults:\n  - default\n  - _self_\nrun_name: {SECRET_URIS[0]}\n"
    )
    flags = ["-m"] if sweep else []
    overrides = ["trainer.seed=0,1"] if sweep else []
    if where == "env_set":
        overrides.append(f"+hydra.job.env_set.MLFLOW_TRACKING_URI={SECRET_URIS[0]}")
    else:
        flags += ["--config-dir", str(config_dir)]
        overrides.append("tracking=team")
    result = run_cli(
        *flags, *overrides, "trainer=quick", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
        f"hydra.run.dir={out}", f"hydra.sweep.dir={out}",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {key} carries a password"), line
    assert SECRET not in result.stdout + result.stderr
    assert not out.exists() and not (tmp_path / "m.db").exists()


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "sweep"])
@pytest.mark.parametrize(
    "variable", ["MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"]
)
def test_a_credential_set_through_hydra_is_refused_before_anything_is_written(
    tmp_path, sweep: bool, variable: str
) -> None:
    """The check looked for secrets in URIs only: the credential variables the README itself recommends,
    set with Hydra's env_set, were written to .hydra/hydra.yaml (and a sweep's multirun.yaml) in clear."""
    out = tmp_path / "out"
    flags, overrides = (["-m"], ["trainer.seed=0,1"]) if sweep else ([], [])
    # Hydra's env_copy copies the variable's value from the environment into env_set, and so to disk.
    given = f"+hydra.job.env_set.{variable}={SECRET}" if "PASSWORD" in variable else f"hydra.job.env_copy=[{variable}]"
    result = run_cli(
        *flags, *overrides, given, "trainer=quick",
        f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", f"hydra.run.dir={out}", f"hydra.sweep.dir={out}",
        env={variable: SECRET},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: hydra.job.env_set.{variable} is named like a credential"), line
    assert SECRET not in result.stdout + result.stderr
    assert not out.exists() and not (tmp_path / "m.db").exists()


def test_a_credential_given_as_a_reference_is_written_as_the_reference(tmp_path) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "+hydra.job.env_set.MLFLOW_TRACKING_TOKEN=${oc.env:RNNLAB_TEST_TOKEN}", "trainer=quick",
        "dataset=sum", "dataset.num_samples=300", "model.hidden_size=8",
        f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", f"hydra.run.dir={out}",
        env={"RNNLAB_TEST_TOKEN": SECRET},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    written = (out / ".hydra" / "hydra.yaml").read_text()
    assert "MLFLOW_TRACKING_TOKEN: ${oc.env:RNNLAB_TEST_TOKEN}" in written and SECRET not in written
