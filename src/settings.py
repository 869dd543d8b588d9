"""From a composed config to checked settings, and the one place that registers every schema with Hydra.

This module sits above the schemas (src/config.py), the datasets (src/data/) and the tasks
(src/tasks/), so that none of them imports another to be registered or checked. `settings_from`
turns Hydra's composed config into dataclasses (ranges checked in their `__post_init__`), refuses
unknown keys, non-finite floats, huge integers and unknown objectives; `settings_from_params` does
the same for DVC's params.yaml, through the same function.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import fields, is_dataclass
from typing import Any, cast

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from src.config import MAX_INTEGER, Config
from src.data import DATASETS
from src.errors import UserError, require
from src.paths import PROJECT_ROOT
from src.resume import search_key, study_storage
from src.tasks import OBJECTIVES, objective_direction


def register_resolvers() -> None:
    """`${rnnlab.study_name:}`, `${rnnlab.study_storage:}` and `${rnnlab.direction:<objective>}` for
    conf/hparams_search/optuna.yaml, and
    `${rnnlab.project_root:}` and `${rnnlab.launch_id:}` for Hydra's output folders in conf/config.yaml."""
    if not OmegaConf.has_resolver("rnnlab.direction"):
        OmegaConf.register_new_resolver("rnnlab.direction", objective_direction)
    for name, function in (("rnnlab.study_name", search_key), ("rnnlab.study_storage", study_storage)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, lambda *, _root_, function=function: function(_root_))
    if not OmegaConf.has_resolver("rnnlab.project_root"):
        OmegaConf.register_new_resolver("rnnlab.project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("rnnlab.launch_id"):
        # Runs started in the same second (a shell loop, a scheduler) would share `${now:%H-%M-%S}`'s
        # folder and overwrite each other's .hydra/ and log. Cached like `now`: one value per command,
        # which a sweep's jobs inherit with `now`'s (Hydra copies the master config's resolver cache).
        OmegaConf.register_new_resolver("rnnlab.launch_id", lambda: uuid.uuid4().hex[:6], use_cache=True)


def register_configs() -> None:
    """Put the schemas where conf/ finds them: `config_schema` and `/schema/dataset/<name>`."""
    register_resolvers()
    store = ConfigStore.instance()
    store.store(name="config_schema", node=Config)
    for name, module in DATASETS.items():
        store.store(group="schema/dataset", name=name, node=module.Params)


def settings_from_params(values: dict[str, Any]) -> Config:
    """Checked settings from a plain mapping (DVC's params.yaml), against the same schemas as Hydra's."""
    name = values.get("dataset", {}).get("name")
    require(name in DATASETS, "dataset.name", f"must be one of {', '.join(DATASETS)}", name)
    schema = OmegaConf.structured(Config)
    schema.dataset = OmegaConf.structured(DATASETS[name].Params)
    try:
        merged = OmegaConf.merge(schema, values)
    except Exception as error:
        raise UserError(f"invalid params: {str(error).splitlines()[0]}") from None
    return settings_from(merged)  # type: ignore[arg-type]


def settings_from(cfg: DictConfig) -> Config:
    """The composed config as checked dataclasses; range errors and unknown keys surface here as UserError."""
    try:
        settings = cast(Config, OmegaConf.to_object(cfg))
    except UserError:
        raise
    except Exception as error:  # OmegaConf wraps errors raised inside __post_init__
        cause = error.__cause__ or error.__context__
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"invalid config: {str(error).splitlines()[0]}") from None
    check_known_keys(cfg, settings)
    require(
        settings.objective in OBJECTIVES, "objective", f"must be one of {', '.join(OBJECTIVES)}", settings.objective
    )
    return settings


def check_known_keys(node: Any, schema: Any, prefix: str = "") -> None:
    """Every key of the composed config is a field of its schema (`+trainer.momentum=0.9` would
    otherwise be logged as a param while nothing reads it), every float is finite and every integer
    below MAX_INTEGER."""
    names = {item.name for item in fields(schema)}
    for key in node:
        require(
            key in names,
            f"{prefix}{key}",
            f"is not a config key; {prefix.rstrip('.') or 'the config'} has {', '.join(sorted(names))}",
            node[key] if not OmegaConf.is_config(node[key]) else "...",
        )
        value = getattr(schema, key)
        if is_dataclass(value) and OmegaConf.is_config(node[key]):
            check_known_keys(node[key], value, f"{prefix}{key}.")
        elif isinstance(value, float) and not isinstance(value, bool):
            require(math.isfinite(value), f"{prefix}{key}", "must be a finite number", value)
        elif isinstance(value, int) and not isinstance(value, bool):
            require(abs(value) <= MAX_INTEGER, f"{prefix}{key}", f"must be at most {MAX_INTEGER} in size", value)
