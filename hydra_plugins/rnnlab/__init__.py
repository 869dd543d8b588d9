"""Registers rnnlab's structured-config schemas in any process that composes conf/.

conf/config.yaml names `config_schema` and each dataset names `/schema/dataset/<name>`: entries
of Hydra's ConfigStore, which exist only once `src.settings.register_configs()` has run. Our own
entry points call it, but other tools compose conf/ too (DVC's `dvc exp run -S ...` writes
params.yaml with Hydra). Hydra imports every module under the `hydra_plugins` namespace before
composing, and DVC adds the repository root to the plugin path for exactly this, so registering
here makes conf/ compose the same everywhere.
"""

from src.settings import register_configs

register_configs()
