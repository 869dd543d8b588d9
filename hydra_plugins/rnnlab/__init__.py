"""Registers rnnlab's structured-config schemas in any process that composes conf/.

conf/config.yaml names `config_schema` and each dataset names `/schema/dataset/<name>`: entries
of Hydra's ConfigStore, which exist only once `src.settings.register_configs()` has run. Hydra
imports every module under the `hydra_plugins` namespace before composing, in every process that
composes conf/ (`python -m src.train`, the tests, `pipelines/params.py`, DVC's `dvc exp run -S ...`,
for which DVC adds the repository root to the plugin path): this is the one place that registers.
"""

from src.settings import register_configs

register_configs()
