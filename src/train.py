"""Entry point: `python -m src.train [overrides]` and `python -m src.train -m [sweep]`.

Composes conf/ with Hydra, runs one experiment, prints the model against its baselines, and
returns the objective (`objective=`, val_loss by default) for Hydra sweepers to optimise in its
direction (src/config.py). In a sweep a failing job ends its run FAILED and returns the worst value
for that direction (+inf, or -inf for a growing objective), so the other jobs go on and a sweeper
never picks it (hydra-optuna-sweeper cannot take NaN: it aborts the study).
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.errors import TrackingUnavailable, UserError, exit_interrupted, stop_on_sigterm
from src.tasks import worst_value

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from src import experiment  # after composition: a bad override fails before heavy imports
    from src.sweep import SweepContext

    stop_on_sigterm()
    sweep = SweepContext.from_environment()
    trainer = None
    try:
        # The training process is forked before MLflow is imported here (src/training_process.py).
        trainer = experiment.start_training(cfg, sweep)
        outcome = experiment.run(cfg, list(HydraConfig.get().overrides.task), sweep, trainer)
    except TrackingUnavailable as error:
        # The server is gone: say where the training state is and how to resume, then leave at once.
        # A normal exit would wait on MLflow's background logging and exit hooks, each a call to that
        # same server.
        if trainer is not None:
            trainer.stop()
        print(f"error: {error}", file=sys.stderr, flush=True)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(3)
    except UserError as error:
        if sweep is not None:
            log.error("job failed: %s", error)
            return worst_value(cfg.objective)
        log.debug("user error", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        if sweep is None:
            raise
        log.exception("job failed")  # a bug: keep the traceback, but let the sweep go on
        return worst_value(cfg.objective)
    finally:
        if trainer is not None:
            trainer.stop()  # a no-op once it has finished; else (an error, Ctrl-C) it must not go on
    print(outcome.table())
    print(f"run {outcome.run_id}: {cfg.objective} = {outcome.objective(cfg.objective):.6g}")
    return outcome.objective(cfg.objective)


if __name__ == "__main__":
    # Registered first, so it runs last: the interpreter then skips a final garbage collection over
    # everything the frameworks imported (0.5-0.9 s at exit, measured in benchmarks/).
    atexit.register(gc.freeze)
    # In the launching process too: SIGTERM to a sweep's main process becomes KeyboardInterrupt, so the
    # sweep callback's exit handler stops the workers and ends every run of the sweep KILLED.
    stop_on_sigterm()
    from src.preflight import check_group_choices

    try:
        check_group_choices(sys.argv[1:])
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    # A single run's training process is forked now, to import the framework while Hydra composes.
    from src.training_process import prestart

    prestart(sys.argv[1:])
    try:
        main()
    except KeyboardInterrupt as interruption:
        # The runs have ended KILLED (a sweep's are, by its exit handler, after this line).
        exit_interrupted(
            interruption, "; unfinished runs end KILLED with what they logged (tracking.resume=true continues them)"
        )
