"""Entry point: `python -m src.sample <run id or model URI> --prime "def " --length 200 --temperature 0.8`.

Prints text written by a language model that any framework trained and logged to MLflow: the prime,
then `length` characters drawn one at a time. The same `--seed` repeats the same text.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from src.errors import UserError, exit_interrupted, stop_on_sigterm
from src.serving import TEXT_PARAMS, steps_problems, text_params_problems

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m src.sample", description=__doc__.splitlines()[0])
    parser.add_argument(
        "model",
        help="an MLflow run id (its logged model) or a model URI (models:/NAME@champion, models:/NAME/2, runs:/...)",
    )
    parser.add_argument("--prime", default="\n", help="the text to continue (default: a newline)")
    parser.add_argument(
        "--length", type=int, default=TEXT_PARAMS["length"], help="characters to generate (default: %(default)s)"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=TEXT_PARAMS["temperature"],
        help="below 1 sharper and safer, above 1 more varied (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=TEXT_PARAMS["seed"], help="seed of the draws (default: %(default)s)"
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else mlflow.db at the project root)",
    )
    return parser.parse_args(argv)


def model_of(model: str, tracking_uri: str) -> tuple[str, str | None]:
    """(the model URI, the digest its run recorded) for a run id, a `runs:/<run id>/...` URI, a logged
    model's `models:/<model id>` or a registered model's `models:/<name>@<alias>` or `models:/<name>/<version>`."""
    from mlflow.exceptions import MlflowException

    from src.model_digest import DIGEST_TAG
    from src.tracking import open_client
    from src.uris import redact

    client = open_client(tracking_uri)
    run_id = model.split("/")[1] if model.startswith("runs:/") else (None if ":/" in model else model)
    if model.startswith("models:/m-"):  # a logged model (MLflow 3): its run holds the digest
        try:
            run_id = client.get_logged_model(model.split("/")[1]).source_run_id
        except MlflowException:
            raise UserError(f"no logged model {model!r} in {redact(tracking_uri)}") from None
    elif model.startswith("models:/"):
        # The version's own files (its source): a download through the registry adds MLflow's
        # registered_model_meta, which the digest the run recorded does not cover.
        version = registered_version(client, model.removeprefix("models:/"), redact(tracking_uri))
        model, run_id = version.source or model, version.run_id
    if run_id is None:
        return model, None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"no MLflow run {run_id!r} in {redact(tracking_uri)}; give a run id or a model URI") from None
    if "model_uri" not in run.data.tags:
        raise UserError(f"run {run_id} logged no model (was it trained with tracking.log_model=false?)")
    return (model if ":/" in model else run.data.tags["model_uri"]), run.data.tags.get(DIGEST_TAG)


def registered_version(client: MlflowClient, reference: str, store: str) -> ModelVersion:
    """The model version `NAME@ALIAS` or `NAME/VERSION` names, or the one line that says what is missing."""
    from mlflow.exceptions import MlflowException

    name, alias = reference.split("@", 1) if "@" in reference else (reference, None)
    name, _, number = name.partition("/")
    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        raise UserError(f"no registered model {name!r} in {store}") from None
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, number)
    except MlflowException:
        wanted = f"alias {alias!r}" if alias is not None else f"version {number!r}"
        aliases = ", ".join(sorted(registered.aliases)) or "none"
        raise UserError(f"registered model {name!r} has no {wanted} (its aliases: {aliases})") from None


def load_language_model(model: str, tracking_uri: str):
    """The `Predictor` inside the logged pyfunc model, checked to be a language model."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from src.model_digest import load_verified
    from src.tasks.language_model import LanguageModel
    from src.uris import redact

    uri, digest = model_of(model, tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            loaded = load_verified(uri, digest, Path(scratch))
    except (MlflowException, OSError) as error:
        raise UserError(redact(f"cannot load model {uri}: {str(error).splitlines()[0]}")) from None
    predictor = getattr(loaded.unwrap_python_model(), "predictor", None)
    if predictor is None:
        raise UserError(f"model {uri} is not an rnnlab model")
    if not isinstance(predictor.task, LanguageModel):
        raise UserError(
            f"model {uri} is a {predictor.task.name} model; sampling needs a language model "
            f"(trained with dataset=chars)"
        )
    return predictor


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # A console that cannot show a generated character (PYTHONIOENCODING=ascii) gets an escape, not a crash.
    sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    logging.basicConfig(level=logging.WARNING)
    try:
        for name, value, rule in text_params_problems(args.length, args.temperature, args.seed):
            raise UserError(f"--{name}={value} is invalid: {rule}")
        if not args.prime:
            raise UserError("--prime must not be empty: the model continues it")
        for problem in steps_problems([args.prime], args.length):
            raise UserError(f"--prime is invalid: {problem}")
        import numpy as np

        from src.tasks.language_model import generate_text
        from src.tracking import check_store_exists
        from src.uris import check_reachable, resolve_uri

        tracking_uri = resolve_uri(args.tracking_uri, "--tracking-uri")
        check_reachable(tracking_uri)
        if ":/" not in args.model or args.model.startswith(("runs:/", "models:/")):  # these live in the store
            check_store_exists(tracking_uri)
        predictor = load_language_model(args.model, tracking_uri)
        text = generate_text(predictor, args.prime, args.length, args.temperature, np.random.default_rng(args.seed))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(args.prime + text)


if __name__ == "__main__":
    stop_on_sigterm()  # SIGTERM as Ctrl-C: one line, exit 143
    try:
        main()
    except KeyboardInterrupt as interruption:
        exit_interrupted(interruption, "")
