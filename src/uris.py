"""Tracking URIs: which store a run uses, whether a URI is one MLflow can use, and keeping secrets out.

A URI that carries a secret (a password or token before `@`, or a `token=`/`password=`-like query
parameter) is refused before anything is written: Hydra writes every override to its output folder
(`.hydra/overrides.yaml`, `multirun.yaml`) before a job starts, and DVC writes params to `dvc.lock`,
so redacting later cannot keep a secret off the disk. MLflow's own way is the environment:
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN. No MLflow import here,
so the check costs nothing at start-up.
"""

from __future__ import annotations

import base64
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from src.errors import UserError
from src.paths import DEFAULT_TRACKING_DB

# A URL ends at white space or a quote; read once more ending at commas too, for the values of a
# Hydra sweep list (`a,b`): a secret in either reading is found and masked. (An escaped `\\:` as Hydra
# writes overrides back still reads as a URL.)
URLS = (re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\\?://[^\s'\"]+"), re.compile(r"[A-Za-z][A-Za-z0-9+.-]*\\?://[^\s'\",]+"))
# Parameter names that carry credentials. Not `passfile` (PostgreSQL's way to keep a password out of
# the URI) nor `session_variables` (MySQL): `pass` alone and session ids only.
SECRET_NAME = re.compile(
    r"token|passw|^pass$|pwd|secret|key|auth|sig|credential|jwt|session_?id|cookie|bearer", re.IGNORECASE
)
# A `name=value` after `?`, `&`, `;` or `#`: query parameters, matrix (path) parameters, fragments.
PARAMETER = re.compile(r"[?&;#]([^=&;#?]*)=([^&;#]*)")
# Stores MLflow can track to (a scheme may carry a driver: postgresql+psycopg2).
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "file", "databricks", "databricks-uc")
CREDENTIALS_HINT = (
    "give credentials in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
    "MLFLOW_TRACKING_TOKEN (for a database store: PGPASSWORD, ~/.pgpass or ~/.my.cnf), and the URI "
    "without them"
)


def secrets_in_url(url: str) -> list[tuple[int, int, str]]:
    """Where one URL carries a secret: (start, end, what) for the user information before `@` and for
    the value of every parameter whose name looks like a credential. The refusal (`secret_in_uri`)
    and the masking (`redact`) both read it, so they never disagree."""
    scheme_end = url.index("://") + 3
    # User information ends at the last '@' before the path: a password may hold '?', '#' or ';'.
    path_start = url.find("/", scheme_end)
    at = url.rfind("@", scheme_end, path_start if path_start >= 0 else len(url))
    found = []
    if at >= 0:
        user = url[scheme_end:at]
        found.append((scheme_end, at, "a password" if ":" in user else "a user name or token before '@'"))
    for parameter in PARAMETER.finditer(url, at + 1 if at >= 0 else scheme_end):
        if SECRET_NAME.search(parameter.group(1)):
            found.append((parameter.start(2), parameter.end(2), f"a {parameter.group(1)!r} parameter"))
    return found


def secret_in_uri(text: str) -> str | None:
    """What a secret in any URL in `text` (a URI, or an override's value such as a sweep's list) is, in
    words that do not repeat it; None when it carries none."""
    unescaped = text.replace("\\", "")  # Hydra escapes ':', '=' and ',' in overrides it writes back
    for pattern in URLS:
        for url in pattern.findall(unescaped):
            for _, _, what in secrets_in_url(url):
                return what
    return None


def check_no_secret(uri: str | None, source: str) -> None:
    """Refuse, in one line that does not repeat it, a URI carrying a secret."""
    what = secret_in_uri(uri or "")
    if what:
        raise UserError(
            f"{source} carries {what}; it would be written to Hydra's output folder, MLflow and "
            f"DVC files, so it is refused: {CREDENTIALS_HINT}"
        )


def check_tracking_uri(uri: str, source: str) -> None:
    """A URI MLflow can use: a known scheme, and `sqlite:///` with a path (`sqlite://x.db` has none)."""
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if scheme.split("+")[0] not in TRACKING_SCHEMES:
        raise UserError(
            f"{source}={redact(uri)!r} is invalid: must be a tracking URI "
            f"(sqlite:///path/to/mlflow.db, http://host:port, postgresql://...)"
        )
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  # a port that is not a number from 0 to 65535 raises here
    except ValueError as error:  # `http://[::1`: urllib's words, which name no secret
        raise UserError(f"{source}={redact(uri)!r} is invalid: {error}") from None
    if is_server(uri) and not parts.hostname:
        raise UserError(f"{source}={redact(uri)!r} is invalid: it names no host (http://host:port)")
    if scheme == "sqlite" and not uri.startswith("sqlite:///"):
        raise UserError(
            f"{source}={redact(uri)!r} is invalid: a SQLite URI is sqlite:/// and a path "
            f"(sqlite:////abs/path.db or sqlite:///relative.db)"
        )
    check_no_secret(uri, source)


def resolve_uri(configured: str | None, source: str = "tracking.uri") -> str:
    """`tracking.uri` (or a command's `source` option) if set, else $MLFLOW_TRACKING_URI, else the SQLite
    file at the project root; checked (scheme, no secret) whichever it is."""
    if configured:
        check_tracking_uri(configured, source)
        return configured
    from_environment = os.environ.get("MLFLOW_TRACKING_URI")
    if from_environment:
        check_tracking_uri(from_environment, "MLFLOW_TRACKING_URI")
        return from_environment
    return f"sqlite:///{DEFAULT_TRACKING_DB}"


def redact(text: str) -> str:
    """Every URL in `text` without its secrets (`user:secret@` and `token@` become `***@`, `token=x`
    becomes `token=***`): a second line of defence for messages, tags and params."""

    def hide(match: re.Match[str]) -> str:
        url = match.group(0)
        for start, end, _ in reversed(secrets_in_url(url)):
            url = url[:start] + "***" + url[end:]
        return url

    for pattern in URLS:
        text = pattern.sub(hide, text)
    return text


def one_line(error: BaseException, limit: int | None = 300) -> str:
    """An error as one line for a message or a tag: its first line (its type's name when it has no
    text), every URL in it redacted, at most `limit` characters."""
    text = str(error)
    line = redact(text.splitlines()[0] if text else type(error).__name__)
    return line[:limit] if limit is not None else line


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI; None for any other store."""
    return Path(uri.removeprefix("sqlite:///")).resolve() if uri.startswith("sqlite:///") else None


def spool_folder() -> Path:
    """Where a server's runs keep local state (checkpoints, Optuna journals): $RNNLAB_SPOOL_DIR, or
    checkpoints/spool/ in the project (the real repository's when DVC runs a copy of it: src/paths.py)."""
    from src.paths import record_root

    return Path(os.environ.get("RNNLAB_SPOOL_DIR") or record_root() / "checkpoints" / "spool")


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


REACHABILITY_TIMEOUT_S = 5.0


def check_reachable(uri: str) -> None:
    """Fail in seconds, before any training, when an HTTP tracking server does not answer."""
    if not is_server(uri):
        return
    parts = urlsplit(uri)
    request = urllib.request.Request(urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/health", query="")))
    username, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if username is not None:  # as MLflow's client will send them
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
    try:
        with urllib.request.urlopen(request, timeout=REACHABILITY_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise UserError(f"tracking server {redact(uri)} is unreachable ({reason})") from None
