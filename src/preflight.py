"""Checks that must pass before Hydra writes anything: a Hydra callback, first in conf/config.yaml.

Hydra calls `on_run_start` / `on_multirun_start` after composing the config and before it creates
the output folder and writes `.hydra/*.yaml` (or a sweep's `multirun.yaml`). So this is the one
place where a secret in a URI can be refused before it is at rest, where an output folder that
cannot be written is named in one line instead of a traceback, and where an interpolation that
cannot resolve (`${oc.env:NOPE}`) is reported as the config error it is. A failed check prints one
line and exits 2 (an exception would only be a warning: Hydra catches callbacks' exceptions).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.errors import UserError
from src.paths import CONF_DIR, probe_writable
from src.uris import SECRET_NAME, check_no_secret, resolve_uri


class PreflightCallback(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        preflight(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        preflight(config, "hydra.sweep.dir", sweep=True)


# One sweep, one parent run: its jobs are child runs in the parent's store and experiment.
ONE_PER_SWEEP = ("tracking", "tracking.uri", "tracking.experiment")


def preflight(config: DictConfig, output_key: str, sweep: bool = False) -> None:
    try:
        for part in ("task", "hydra"):
            # As typed: iterating the ListConfig would resolve a `${...}` inside an override string.
            for override in OmegaConf.to_container(config.hydra.overrides[part], resolve=False):  # type: ignore[union-attr]
                key, _, value = str(override).partition("=")
                check_no_secret(value, key.lstrip("+~"))
                check_no_secret_in({key.lstrip("+~"): value}, "")  # a sweep's values, as typed
        # Hydra writes the whole config, its own part too (hydra.job.env_set), to the output folder.
        check_no_secret_in(OmegaConf.to_container(config, resolve=False), "")
        if sweep:
            check_store_not_swept(config)
            check_sweep_counts(config)
        try:
            resolved = {
                key: OmegaConf.to_container(config[key], resolve=True)
                if OmegaConf.is_config(config[key])
                else config[key]
                for key in config
                if key != "hydra"
            }
        except Exception as error:  # an interpolation that cannot resolve
            raise UserError(f"invalid config: {str(error).splitlines()[0]}") from None
        tracking = resolved.get("tracking")
        resolve_uri(tracking.get("uri") if isinstance(tracking, dict) else None)
        check_writable(Path(str(OmegaConf.select(config, output_key))), output_key)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def check_group_choices(argv: list[str]) -> None:
    """A config group the primary config chooses one option of (model, dataset, ...) overridden with no
    option (`trainer=null`, `~trainer`) or a list (`model=[]`, `model=[rnn,gru]`): Hydra fails the first
    with a traceback, and composes the second from the schema's defaults alone (an LSTM for `model=[]`)
    or merges the options. Checked on the command line, before Hydra composes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    groups = one_choice_groups()
    words = [word for word in argv if "=" in word or word.startswith("~")]
    try:
        overrides = OverridesParser.create().parse_overrides([word for word in words if not word.startswith("-")])
    except Exception:  # a syntax error: Hydra says it in its own words
        return
    for override in overrides:
        if override.key_or_group not in groups or override.package or isinstance(override.value(), Glob):
            continue
        chosen = list(override.sweep_iterator()) if override.is_choice_sweep() else [override.value()]
        if override.is_delete() or not all(isinstance(option, str) for option in chosen):
            options = ", ".join(sorted(path.stem for path in (CONF_DIR / override.key_or_group).glob("*.yaml")))
            raise UserError(f"{override.input_line} is invalid: {override.key_or_group} takes one of {options}")


def one_choice_groups() -> set[str]:
    """The groups the primary config's defaults list chooses an option of (not `experiment: null`)."""
    import yaml

    defaults = yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]
    return {group for entry in defaults if isinstance(entry, dict) for group, option in entry.items() if option}


def check_no_secret_in(node: Any, key: str) -> None:
    """Refuse a secret URI in any string of a config tree (as written, interpolations unresolved), and
    any value of a key named like a credential (`hydra.job.env_set.MLFLOW_TRACKING_PASSWORD`, a Ray
    runtime_env's `env_vars.HF_TOKEN`): Hydra writes it to .hydra/hydra.yaml. A `${oc.env:NAME}`
    reference is written as it stands, so it passes."""
    if isinstance(node, dict):
        for name, value in node.items():
            path = f"{key}.{name}" if key else str(name)
            if is_credential_value(str(name), value):
                raise UserError(
                    f"{path} is named like a credential; Hydra would write its value to its output folder "
                    f"(.hydra/hydra.yaml), so it is refused: set it in the environment before the command (not with "
                    f"hydra.job.env_set or env_copy), or give a reference (${{oc.env:NAME}}), written as it stands"
                )
            check_no_secret_in(value, path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_no_secret_in(value, f"{key}[{index}]")
    elif isinstance(node, str):
        check_no_secret(node, key)


def is_credential_value(name: str, value: Any) -> bool:
    """A non-empty scalar under a credential's name, not an interpolation (`${...}`) that names one."""
    if value is None or isinstance(value, (bool, dict, list)) or not SECRET_NAME.search(name):
        return False
    text = str(value).strip()
    return bool(text) and not (text.startswith("${") and text.endswith("}"))


# Counts a launcher or sweeper takes, and the least each allows (joblib: -1 is every core, -2 all but one).
SWEEP_COUNTS = {
    "launcher.n_jobs": ("joblib", "a whole number other than 0 (-1: one job per core)", lambda n: n != 0),
    "sweeper.n_trials": ("optuna", "a whole number from 1", lambda n: n >= 1),
    "sweeper.n_jobs": ("optuna", "a whole number from 1", lambda n: n >= 1),
}


def check_sweep_counts(config: DictConfig) -> None:
    """Counts the launcher or sweeper would only reject once the sweep's parent run exists (joblib's
    `n_jobs=0`, Optuna's `n_trials=0`), with a traceback, leaving that parent behind."""
    for key, (plugin, allowed, valid) in SWEEP_COUNTS.items():
        node = OmegaConf.select(config, f"hydra.{key.partition('.')[0]}")
        if node is None or plugin not in str(node.get("_target_", "")).lower():
            continue
        value = OmegaConf.select(config, f"hydra.{key}", throw_on_resolution_failure=False)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not valid(value):
            raise UserError(f"hydra.{key}={value} is invalid: must be {allowed}")


def check_store_not_swept(config: DictConfig) -> None:
    """A sweep over the store or experiment would put jobs where their parent run is not (each job also
    checks this, for the cases an override cannot show: src/sweep.py)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    for override in OverridesParser.create().parse_overrides([str(item) for item in overrides]):  # type: ignore[union-attr]
        if override.key_or_group in ONE_PER_SWEEP and override.is_sweep_override():
            raise UserError(
                f"{override.key_or_group} cannot take several values in one sweep: every job is a child run of "
                f"the sweep's one parent run, in one store and experiment; start one sweep per value"
            )


def check_writable(folder: Path, key: str) -> None:
    """Create the folder (Hydra would next) and a probe file in it."""
    try:
        probe_writable(folder)
    except OSError as error:
        raise UserError(
            f"{key}={str(folder)!r}: cannot write Hydra's output folder there ({error.strerror}); "
            f"set {key}=<a writable folder>"
        ) from None
