"""A new SQLite store: MLflow's own creation (every schema migration) against src.tracking's (a copy
of the migrated empty schema, src/store_template.py), in this process, alternating.

The template is made once beforehand in a temporary cache folder (what a machine's first new store
pays, reported on its own row); each side then creates PAIRS fresh stores, the two alternating, and
the median seconds of each are compared. Both are timed after MLflow and SQLAlchemy are imported.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.table import Row

PAIRS = 5


def rows(repeats: int = 1) -> list[Row]:
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  # imported before either side is timed
    from mlflow import MlflowClient

    from src.store_template import ensure_template
    from src.tracking import open_client

    previous = os.environ.get("XDG_CACHE_HOME")
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-store-") as scratch:
        os.environ["XDG_CACHE_HOME"] = str(Path(scratch) / "cache")
        try:
            start = time.perf_counter()
            ensure_template()
            template_seconds = time.perf_counter() - start
            migrated, copied = [], []
            for pair in range(PAIRS * repeats):
                start = time.perf_counter()
                MlflowClient(f"sqlite:///{scratch}/migrated-{pair}.db").search_experiments(max_results=1)
                migrated.append(time.perf_counter() - start)
                start = time.perf_counter()
                open_client(f"sqlite:///{scratch}/copied-{pair}.db")
                copied.append(time.perf_counter() - start)
        finally:
            if previous is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = previous
    slow, fast = statistics.median(migrated), statistics.median(copied)
    return [
        Row("new SQLite store: MLflow's migrations", "mlflow", slow, "s"),
        Row("new SQLite store: a copy of the migrated schema (src.tracking)", "mlflow", fast, "s"),
        Row("  migrations / copy", "mlflow", slow / fast, "x"),
        Row("  the template, once per MLflow version and machine", "mlflow", template_seconds, "s"),
    ]
