"""Project locations, resolved from the source tree so that Hydra's per-run directory never matters."""

from pathlib import Path

PROJECT_ROOT: Path = Path(__file__).resolve().parent.parent
CONF_DIR: Path = PROJECT_ROOT / "conf"
DEFAULT_TRACKING_DB: Path = PROJECT_ROOT / "mlflow.db"


def resolve_path(path: str | Path) -> Path:
    """A relative path means relative to the project root, wherever the process runs."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else PROJECT_ROOT / candidate
