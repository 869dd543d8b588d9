"""The logged model's files, verified before they are loaded.

An MLflow pyfunc model logged as code runs that code when it loads: whoever can write to the
artifact store can run code on whoever loads the model. A run therefore records `model_sha256`, a
hash of every file of its logged model, and rnnlab's own loaders (`src.sample`) download the model,
hash it again and refuse, in one line, a model whose files differ. Loading with plain
`mlflow.pyfunc.load_model` checks nothing: trust the artifact store, or verify first.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from src.errors import UserError

DIGEST_TAG = "model_sha256"
# The digest of the predictor's own files (weights, spec, scaling) inside the model: a resumed run whose
# predictor has the same one keeps the model it logged before it was cut short.
PREDICTOR_DIGEST_TAG = "predictor_sha256"


def directory_digest(folder: Path) -> str:
    """SHA-256 over every file's path (relative, sorted) and bytes: equal digests, equal files."""
    hasher = hashlib.sha256()
    for path in sorted(item for item in folder.rglob("*") if item.is_file()):
        hasher.update(path.relative_to(folder).as_posix().encode() + b"\0")
        hasher.update(path.read_bytes())
        hasher.update(b"\0")
    return hasher.hexdigest()


def logged_model_digest(model_uri: str) -> str:
    """The digest of a model as the artifact store holds it now."""
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        return directory_digest(Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch)))


def load_verified(model_uri: str, expected: str | None, scratch: Path):
    """Download the model into `scratch`, check its digest against `expected` (the run's tag), load it.
    Without a recorded digest (a model logged before digests, or not by rnnlab) it is refused."""
    import mlflow

    if not expected:
        raise UserError(
            f"model {model_uri} has no recorded {DIGEST_TAG}: its files cannot be verified, so it is "
            f"not loaded (load it with mlflow.pyfunc.load_model if you trust the artifact store)"
        )
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(scratch)))
    if directory_digest(local) != expected:
        raise UserError(
            f"model {model_uri}: its files differ from the {DIGEST_TAG} its run recorded; refusing to "
            f"load it (a changed model can run any code when it loads)"
        )
    return mlflow.pyfunc.load_model(str(local))
