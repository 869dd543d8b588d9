"""Write params.yaml as conf/ composes it with its defaults (what `dvc repro` reads), and
pipelines/frameworks.yaml from the framework registry (what dvc.yaml's `foreach` iterates).

`dvc exp run -S ...` re-composes conf/ into params.yaml itself; plain `dvc repro` does not (by
design, dvc#10750), so after changing conf/ run `python -m pipelines.params` and commit the result.
A test checks that both committed files equal what this writes.
"""

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipelines.common import PARAMS_FILE
from src.frameworks import FRAMEWORKS
from src.paths import CONF_DIR, PROJECT_ROOT

FRAMEWORKS_FILE = PROJECT_ROOT / "pipelines" / "frameworks.yaml"


def composed_params_yaml() -> str:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):  # as DVC composes
        cfg = compose(config_name="config")
    OmegaConf.resolve(cfg)
    return OmegaConf.to_yaml(cfg)


def frameworks_yaml() -> str:
    """The registered frameworks, in registry order: the train and evaluate stages run once per name."""
    return "# Written by `python -m pipelines.params` from src/frameworks/__init__.py: do not edit.\n" + yaml.safe_dump(
        {"frameworks": list(FRAMEWORKS)}, sort_keys=False
    )


if __name__ == "__main__":
    PARAMS_FILE.write_text(composed_params_yaml())
    FRAMEWORKS_FILE.write_text(frameworks_yaml())
    print(f"wrote {PARAMS_FILE} and {FRAMEWORKS_FILE}")
