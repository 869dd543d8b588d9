"""Each job of a sweep composed once, not twice.

Hydra's basic sweeper composes every job of a batch to check it before launching any
(`Sweeper.validate_batch_is_legal`: "This repeat work the launcher will do"), then the launcher
composes each job again to run it: about 0.15 s a job on 2 cores, all of the first pass before the
first job starts. While a sweep runs, `ConfigLoaderImpl.load_sweep_config` keeps what it composed for
a job's overrides and hands a copy to the next call for the same overrides (the launcher's). Only for
the basic sweeper: the others (Optuna) check nothing, so nothing would be asked for twice. Workers
forked by `hydra/launcher=joblib_local` inherit the checked batch; Ray's and loky's workers compose as
before. The copy is what Hydra would have composed: the same master config and overrides, read
moments apart, with the master's resolver cache (`${now:}`) copied in as Hydra does.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

# (id of the master config, the job's overrides) -> (that master config, the job's composed config)
_composed: dict[tuple[int, tuple[str, ...]], tuple[DictConfig, DictConfig]] = {}
_original: Callable[..., DictConfig] | None = None
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
# About 110 KiB a job: a batch of thousands of jobs (no hydra.sweeper.max_batch_size) keeps only these.
MAX_KEPT = 256


def compose_each_job_once(config: DictConfig) -> None:
    """From now until `forget_composed_jobs`, a job's second composition is a copy of its first, when
    `config`'s sweeper is Hydra's basic one."""
    global _original
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from omegaconf import OmegaConf

    sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    if _original is not None or sweeper != BASIC_SWEEPER:
        return
    original = ConfigLoaderImpl.load_sweep_config
    _original = original

    @functools.wraps(original)
    def load_sweep_config(self: Any, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        kept = _composed.pop(key, None)
        if kept is not None and kept[0] is master_config:
            return copy.deepcopy(kept[1])  # a launcher may change its config; the kept one stays as composed
        composed = original(self, master_config, sweep_overrides)
        if len(_composed) < MAX_KEPT:
            _composed[key] = (master_config, copy.deepcopy(composed))
        return composed

    ConfigLoaderImpl.load_sweep_config = load_sweep_config  # type: ignore[method-assign]


def forget_kept_jobs() -> None:
    """A batch has been launched elsewhere (forked workers took their copies): what is kept here is stale."""
    _composed.clear()


def forget_composed_jobs() -> None:
    """The sweep has ended: compose as Hydra does, and let the kept configs go."""
    global _original
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    forget_kept_jobs()
    if _original is not None:
        ConfigLoaderImpl.load_sweep_config = _original  # type: ignore[method-assign]
        _original = None
