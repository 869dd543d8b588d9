"""Composition of every group option from conf/, and the checks that run before any MLflow run."""

from __future__ import annotations

import pytest

from src import data
from src.config import Cell
from src.data import DATASETS
from src.errors import UserError
from src.paths import CONF_DIR
from src.settings import settings_from


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def test_every_dataset_has_a_config_and_a_generator() -> None:
    assert (
        options("dataset")
        == sorted(DATASETS)
        == ["adding", "chars", "next_number", "parity", "sine", "sine_class", "sum", "sunspots"]
    )


@pytest.mark.parametrize("dataset", options("dataset"))
def test_each_dataset_option_composes_to_its_own_schema(compose_cfg, dataset: str) -> None:
    settings = settings_from(compose_cfg(f"dataset={dataset}"))
    assert isinstance(settings.dataset, DATASETS[dataset].Params)
    assert settings.dataset.name == dataset


@pytest.mark.parametrize("cell", options("model"))
def test_each_model_option_selects_its_cell(compose_cfg, cell: str) -> None:
    assert settings_from(compose_cfg(f"model={cell}")).model.cell is Cell(cell)


@pytest.mark.parametrize("group", ["framework", "trainer", "tracking", "experiment"])
def test_each_option_of_the_other_groups_sets_the_values_its_file_shows(compose_cfg, group: str) -> None:
    from enum import Enum

    import yaml

    for option in options(group):
        settings = settings_from(compose_cfg(f"{group}={option}"))
        shown = {
            key: value
            for key, value in yaml.safe_load((CONF_DIR / group / f"{option}.yaml").read_text()).items()
            if key != "defaults"
        }
        nested = shown if group == "experiment" else {group: shown}  # experiments are global packages
        for section, values in nested.items():
            for key, value in values.items():
                if (section, key) == ("tracking", "uri"):
                    continue  # the fixture points every test at its own store
                actual = getattr(getattr(settings, section), key)
                assert (actual.value if isinstance(actual, Enum) else actual) == value, (option, section, key)


def test_defaults_are_the_documented_keys(compose_cfg) -> None:
    cfg = compose_cfg()
    for key in [
        "dataset.seq_len",
        "trainer.epochs",
        "trainer.batch_size",
        "trainer.optimizer",
        "trainer.lr",
        "trainer.grad_clip",
        "trainer.patience",
        "trainer.seed",
        "model.cell",
        "model.hidden_size",
        "model.num_layers",
        "tracking.uri",
        "tracking.experiment",
    ]:
        group, name = key.split(".")
        assert name in cfg[group], key
    assert cfg.framework.name.value == "torch"


def test_seed_preset_sets_the_notebook_model(compose_cfg) -> None:
    settings = settings_from(compose_cfg("experiment=seed_next_number"))
    assert (settings.model.cell, settings.model.hidden_size, settings.model.activation.value) == (Cell.rnn, 32, "relu")
    assert (settings.trainer.epochs, settings.trainer.batch_size, settings.dataset.standardize) == (10, 8, False)


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.hidden_size=0", "model.hidden_size"),
        ("trainer.lr=-1", "trainer.lr"),
        ("trainer.grad_clip=-0.5", "trainer.grad_clip"),
        ("model.dropout=1.5", "model.dropout"),
        ("dataset.seq_len=0", "dataset.seq_len"),
        ("objective=accuracy", "objective"),
        # The key given, not another one the check also reads (these named val_fraction and num_samples).
        ("dataset=sum dataset.test_fraction=0", "dataset.test_fraction"),
        ("dataset=sum dataset.val_fraction=0.9", r"dataset.val_fraction \+ dataset.test_fraction"),
        ("dataset=parity dataset.seq_len=1", "dataset.seq_len"),
        (f"tracking.experiment={'x' * 501}", "tracking.experiment"),  # MLflow's limit, not the store's fault
    ],
)
def test_out_of_range_values_name_the_key(compose_cfg, override: str, key: str) -> None:
    with pytest.raises(UserError, match=rf"^{key}="):
        settings = settings_from(compose_cfg(*override.split()))
        data.generate(settings.dataset, settings.trainer.seed)


def test_adding_needs_two_steps(compose_cfg) -> None:
    with pytest.raises(UserError, match="dataset.seq_len"):
        settings_from(compose_cfg("dataset=adding", "dataset.seq_len=1"))


def test_hydra_writes_runs_and_sweeps_under_the_ignored_outputs_folder(tracking_uri: str) -> None:
    """Nothing a command writes by default lands loose in the project root: Hydra's folders too."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from src.paths import PROJECT_ROOT
    from src.settings import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"tracking.uri={tracking_uri}"], return_hydra_config=True)
    OmegaConf.resolve(cfg.hydra.run)
    OmegaConf.resolve(cfg.hydra.sweep)
    outputs = PROJECT_ROOT / "outputs"
    for folder in (cfg.hydra.run.dir, cfg.hydra.sweep.dir):
        assert str(folder).startswith(f"{outputs}/"), folder
    assert "/outputs/" in (PROJECT_ROOT / ".gitignore").read_text().splitlines()


def test_switching_the_cell_by_its_key_points_to_the_group_that_sets_its_activation(compose_cfg) -> None:
    """The default rnn is relu; `model.cell=lstm` alone keeps that activation and is refused, saying how."""
    with pytest.raises(UserError, match=r"^model.activation='relu' is invalid: .*model=lstm"):
        settings_from(compose_cfg("model.cell=lstm"))
    assert settings_from(compose_cfg("model=lstm")).model.cell is Cell.lstm


def test_every_cell_the_optuna_search_can_pick_composes_to_valid_settings(compose_cfg) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hparams_search=optuna"], return_hydra_config=True)
    (override,) = OverridesParser.create().parse_overrides([f"model={cfg.hydra.sweeper.params.model}"])
    choices = list(override.sweep_iterator())
    assert sorted(choices) == ["gru", "lstm", "rnn"]
    for cell in choices:
        assert settings_from(compose_cfg(f"model={cell}")).model.cell is Cell(cell)
