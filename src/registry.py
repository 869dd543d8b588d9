"""The MLflow Model Registry: a run's logged model as a new version of a registered model.

`tracking.registered_model=NAME` asks for it. A single run registers its model as the next version of
NAME and leaves the alias `champion` where it is (one run has nothing to be compared with); a sweep
registers only its best job's model and points `champion` at that version. Registering comes after
the run has ended: a store that refuses it costs a warning, never the run or its metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from src.uris import one_line

log = logging.getLogger(__name__)

CHAMPION = "champion"
# On the run: the registered version its model became.
REGISTERED_TAG = "registered_model_version"


def register_run_model(
    uri: str,
    run_id: str,
    name: str,
    alias: str | None = None,
    tags: dict[str, str] | None = None,
    also_tag: Sequence[str] = (),
) -> ModelVersion | None:
    """Register the model the run logged (its `model_uri` tag) as a new version of `name`, point `alias`
    at it when given, and tag the run (and the runs in `also_tag`: a sweep's parent) with
    `registered_model_version=NAME/VERSION`. Any failure is one warning and None: the run has already
    ended, with everything it measured."""
    from mlflow.exceptions import MlflowException

    try:
        # The client's own API: mlflow.register_model works on the process-wide registry URI, which a
        # notebook (or a test) running several stores would find left pointing at this one.
        client = MlflowClient(uri, registry_uri=uri)
        model_uri = client.get_run(run_id).data.tags.get("model_uri")
        if not model_uri:
            log.warning("run %s logged no model: nothing registered as %r", run_id, name)
            return None
        try:
            client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        version = client.create_model_version(
            name, model_uri, run_id=run_id, tags={"run_id": run_id, **(tags or {})}, model_id=model_id
        )
        if alias:
            client.set_registered_model_alias(name, alias, version.version)
        for tagged in (run_id, *also_tag):
            client.set_tag(tagged, REGISTERED_TAG, f"{name}/{version.version}")
    except Exception as error:
        reason = one_line(error)
        log.warning("run %s finished, but its model was not registered as %r: %s", run_id, name, reason)
        return None
    log.info(
        "registered run %s's model as %s version %s%s",
        run_id,
        name,
        version.version,
        f" (alias {alias})" if alias else "",
    )
    return version
