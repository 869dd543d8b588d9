"""src/composed_jobs.py with Hydra's real config loader on conf/: a job's second composition is a copy of
its first, the kept copies are bounded, and forgetting puts Hydra's own method back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import src.settings  # noqa: F401  # registers the schemas conf/ is checked against
from src import composed_jobs
from src.paths import PROJECT_ROOT

HYDRAS_OWN = ConfigLoaderImpl.load_sweep_config


@pytest.fixture
def loader() -> Iterator[tuple[ConfigLoaderImpl, DictConfig]]:
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(PROJECT_ROOT / "conf")))
    master = loader.load_configuration("config", overrides=["framework=numpy"], run_mode=RunMode.MULTIRUN)
    yield loader, master
    composed_jobs.forget_composed_jobs()


def test_the_second_composition_of_a_job_is_an_equal_copy(loader) -> None:
    config_loader, master = loader
    composed_jobs.compose_each_job_once(master)
    checked = config_loader.load_sweep_config(master, ["trainer.seed=3"])
    assert list(composed_jobs._composed) == [(id(master), ("trainer.seed=3",))]
    launched = config_loader.load_sweep_config(master, ["trainer.seed=3"])
    assert not composed_jobs._composed  # handed over, not composed again
    assert launched is not checked and launched.trainer.seed == 3
    assert OmegaConf.to_container(launched) == OmegaConf.to_container(
        HYDRAS_OWN(config_loader, master, ["trainer.seed=3"])
    )
    launched.trainer.seed = 99  # a launcher may change its copy; a third call composes afresh
    assert config_loader.load_sweep_config(master, ["trainer.seed=3"]).trainer.seed == 3


def test_at_most_max_kept_jobs_are_kept_and_forgetting_restores_hydras_method(loader, monkeypatch) -> None:
    config_loader, master = loader
    monkeypatch.setattr(composed_jobs, "MAX_KEPT", 2)
    composed_jobs.compose_each_job_once(master)
    for seed in range(4):
        config_loader.load_sweep_config(master, [f"trainer.seed={seed}"])
    assert len(composed_jobs._composed) == 2
    assert [config_loader.load_sweep_config(master, [f"trainer.seed={seed}"]).trainer.seed for seed in range(4)] == [
        0,
        1,
        2,
        3,
    ]
    composed_jobs.forget_composed_jobs()
    assert ConfigLoaderImpl.load_sweep_config is HYDRAS_OWN and not composed_jobs._composed


def test_only_the_basic_sweeper_gets_it(loader) -> None:
    _, master = loader
    optuna = OmegaConf.merge(master, {"hydra": {"sweeper": {"_target_": "hydra_plugins.hydra_optuna_sweeper.x"}}})
    composed_jobs.compose_each_job_once(optuna)
    assert ConfigLoaderImpl.load_sweep_config is HYDRAS_OWN
