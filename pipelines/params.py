"""Write params.yaml as conf/ composes it with its defaults (what `dvc repro` reads).

`dvc exp run -S ...` re-composes conf/ into params.yaml itself; plain `dvc repro` does not (by
design, dvc#10750), so after changing conf/ run `python -m pipelines.params` and commit the result.
A test checks that the committed params.yaml equals the composition.
"""

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.settings import register_configs
from src.paths import CONF_DIR
from pipelines.common import PARAMS_FILE


def composed_params_yaml() -> str:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):  # as DVC composes
        cfg = compose(config_name="config")
    OmegaConf.resolve(cfg)
    return OmegaConf.to_yaml(cfg)


if __name__ == "__main__":
    PARAMS_FILE.write_text(composed_params_yaml())
    print(f"wrote {PARAMS_FILE}")
