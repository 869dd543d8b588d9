"""Project locations, resolved from the source tree so that Hydra's per-run directory never matters."""

import os
import tempfile
from pathlib import Path

PROJECT_ROOT: Path = Path(__file__).resolve().parent.parent
CONF_DIR: Path = PROJECT_ROOT / "conf"


def record_root(project_root: Path = PROJECT_ROOT) -> Path:
    """Where what must outlive a run is kept (the default SQLite store, and so its artifacts and
    checkpoints): the project root, but the real repository's when the code runs in DVC's temporary
    copy of it. `dvc exp run --queue`/`--temp` run the stages in <repo>/.dvc/tmp/exps/..., which DVC
    deletes afterwards, and set DVC_ROOT to <repo> (DVC 3.67; checked by tests/test_pipeline.py)."""
    dvc_root = os.environ.get("DVC_ROOT")
    if dvc_root and project_root.is_relative_to(Path(dvc_root).resolve() / ".dvc" / "tmp"):
        return Path(dvc_root).resolve()
    return project_root


DEFAULT_TRACKING_DB: Path = record_root() / "mlflow.db"


def resolve_path(path: str | Path) -> Path:
    """A relative path means relative to the project root, wherever the process runs."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else PROJECT_ROOT / candidate


def probe_writable(folder: Path) -> None:
    """Create `folder` and a file in it (then remove the file), raising OSError where that fails:
    permissions alone do not tell (root passes every permission check, a read-only mount refuses everyone)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass
