"""Entry point: `python -m src.train [overrides]` and `python -m src.train -m [sweep]`.

Composes conf/ with Hydra, runs one experiment, prints the model against its baselines, and
returns the objective (`objective=`, val_loss by default) so that Hydra sweepers can minimise it.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.config import register_configs
from src.errors import UserError

log = logging.getLogger(__name__)

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from src import experiment  # after composition: a bad override fails before heavy imports

    try:
        outcome = experiment.run(cfg, list(HydraConfig.get().overrides.task))
    except UserError as error:
        log.debug("user error", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(outcome.evaluation.table())
    print(f"run {outcome.run_id}: {cfg.objective} = {outcome.objective(cfg.objective):.6g}")
    return outcome.objective(cfg.objective)


if __name__ == "__main__":
    main()
