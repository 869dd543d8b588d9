"""`python -m pipelines.check_lock` (run by `make test`): fail in one line when the committed dvc.lock
no longer certifies the code, params and metrics beside it, that is when `dvc status` is not clean.

A fresh clone has no DVC cache, so `dvc status` there also reports every cached output (data/,
models/) as "not in cache" or "deleted": those paths are git-ignored, DVC's to restore, and cannot be
checked without the cache, so they are left out. Everything else it reports (a changed source file,
param or command, a committed metric or report that differs from the lock) means the lock is stale.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from src.paths import PROJECT_ROOT

# What `dvc status` says of an output, or of a dependency that is another stage's output, when only the
# DVC cache lacks it.
CACHE_ONLY = ("not in cache", "deleted")
HINT = "run `make repro` and commit dvc.lock, metrics/ and reports/"


def dvc_status() -> dict[str, list[Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"error: `dvc status` failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(result.stdout or "{}")


def git_ignored(paths: list[str]) -> set[str]:
    if not paths:
        return set()
    result = subprocess.run(["git", "check-ignore", "--", *paths], cwd=PROJECT_ROOT, capture_output=True, text=True)
    if result.returncode not in (0, 1):  # 1: none of them is ignored
        raise SystemExit(f"error: `git check-ignore` failed: {result.stderr.strip()}")
    return {path.rstrip("/") for path in result.stdout.splitlines()}


def stale(status: dict[str, list[Any]]) -> list[str]:
    """Each difference between dvc.lock and the workspace that does not only need the DVC cache, once
    (a file that several stages depend on is named once), as `path state` or `stage: what changed`."""
    changes: list[tuple[str, str, Any]] = []
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # "changed command", "always changed"
                changes.append((stage, "", entry))
                continue
            for paths in entry.values():  # "changed deps" / "changed outs": {path: state}
                changes += [(stage, path, state) for path, state in paths.items()]
    restorable = git_ignored(sorted({path for _, path, state in changes if state in CACHE_ONLY}))
    found: list[str] = []
    for stage, path, state in changes:
        if state in CACHE_ONLY and path.rstrip("/") in restorable:
            continue
        if isinstance(state, dict):  # params.yaml: {group: "modified"}
            state = ", ".join(f"{key} {value}" for key, value in state.items())
        line = f"{path} {state}" if path else f"{stage}: {state}"
        if line not in found:
            found.append(line)
    return found


def main() -> None:
    found = stale(dvc_status())
    if found:
        print(f"error: dvc.lock does not match the code and params ({'; '.join(found)}): {HINT}", file=sys.stderr)
        sys.exit(1)
    print("dvc.lock matches the code and params")


if __name__ == "__main__":
    main()
