"""Character-level text for language modelling: predict the next character at every step.

The default corpus (`dataset.corpus=stdlib`) is the source code of a fixed list of modules of Python's
standard library, read from the running interpreter (no download; the same text for the same Python
version); `stdlib_large` is the standard library's top-level modules in name order, the first
LARGE_CORPUS_CHARS characters of them (about 2 MB), for a language model that has data to learn from.
`dataset.path=` takes any UTF-8 text file instead. The text is split in time (the first characters
train, the next validate, the last test); the vocabulary is the training text's characters plus one
unknown symbol (id 0) for characters the training text lacks; each split is cut into
non-overlapping sequences of `seq_len` characters whose targets are the same text one step ahead.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from src.errors import require
from src.data.base import DatasetInfo, DatasetParams, check_split_fractions, Split, Splits, as_split, split_sizes
from src.errors import UserError
from src.paths import resolve_path

NAME = "chars"
LARGE_CORPUS_CHARS = 2_000_000
UNKNOWN = "\ufffd"  # the replacement character stands for every character outside the vocabulary
DEFAULT_MODULES = ("textwrap.py", "string.py", "functools.py", "heapq.py", "bisect.py", "fractions.py",
                   "random.py", "contextlib.py", "copy.py", "queue.py", "abc.py", "sched.py", "operator.py",
                   "json/decoder.py", "json/encoder.py", "dataclasses.py")


@dataclass
class Params(DatasetParams):
    name: str = NAME
    # A UTF-8 text file, relative to the project root or absolute; null: the corpus named below.
    path: Optional[str] = None
    # Without a path: stdlib (16 modules, about 315,000 characters) or stdlib_large (about 2,000,000).
    corpus: str = "stdlib"
    seq_len: int = 64
    # Keep the first max_chars characters of the corpus (0 keeps all of it).
    max_chars: int = 150_000
    val_fraction: float = 0.1
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        require(self.seq_len >= 1, "dataset.seq_len", "must be an integer >= 1", self.seq_len)
        require(self.corpus in CORPORA, "dataset.corpus", f"must be one of {', '.join(CORPORA)}", self.corpus)
        require(self.max_chars >= 0, "dataset.max_chars", "must be an integer >= 0 (0 keeps all)", self.max_chars)
        check_split_fractions(self.val_fraction, self.test_fraction)


def default_corpus() -> str:
    """The listed standard library modules' source, one after another."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return "\n".join((stdlib / module).read_text(encoding="utf-8") for module in DEFAULT_MODULES)


def large_corpus() -> str:
    """The standard library's top-level modules' source in name order, up to LARGE_CORPUS_CHARS characters."""
    parts, size = [], 0
    for module in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            text = module.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):  # a module in another encoding is skipped
            continue
        parts.append(text)
        size += len(text) + 1
        if size >= LARGE_CORPUS_CHARS:
            break
    return "\n".join(parts)[:LARGE_CORPUS_CHARS]


CORPORA = {"stdlib": default_corpus, "stdlib_large": large_corpus}


def read_corpus(path: str | None, max_chars: int = 0, corpus: str = "stdlib") -> tuple[str, str]:
    """(the text, where it came from): at most `max_chars` characters (0: all), read from a regular file
    only, so a device (/dev/zero) or a FIFO is refused rather than read forever."""
    if path is None:
        text = CORPORA[corpus]()
        return (text[:max_chars] if max_chars else text), f"Python's standard library ({corpus})"
    file = resolve_path(path)
    if not file.exists():
        raise UserError(f"dataset.path={path!r}: no such file: {file}")
    if file.is_dir():
        raise UserError(f"dataset.path={path!r}: is a directory, not a text file: {file}")
    if not file.is_file():
        raise UserError(f"dataset.path={path!r}: not a regular file (a device, FIFO or socket): {file}")
    try:
        with file.open(encoding="utf-8", newline="") as handle:
            return (handle.read(max_chars) if max_chars else handle.read()), file.name
    except PermissionError:
        raise UserError(f"dataset.path={path!r}: not readable (permission denied): {file}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"dataset.path={path!r}: not UTF-8 text: {file} ({error.reason} at byte {error.start})") from None


def vocabulary_of(text: str) -> list[str]:
    """The unknown symbol, then the text's distinct characters in code point order."""
    return [UNKNOWN, *sorted(set(text) - {UNKNOWN})]


def encode(text: str, vocabulary: list[str]) -> np.ndarray:
    """Token ids of `text`; characters outside the vocabulary become the unknown symbol's id 0."""
    index = {char: token for token, char in enumerate(vocabulary)}
    return np.array([index.get(char, 0) for char in text], dtype=np.int64)


def decode(ids: np.ndarray | list[int], vocabulary: list[str]) -> str:
    return "".join(vocabulary[int(token)] for token in np.asarray(ids).ravel())


def sequences(ids: np.ndarray, seq_len: int) -> Split:
    """Non-overlapping windows of `seq_len` ids (samples, seq_len, 1), each target the window one step on."""
    count = (len(ids) - 1) // seq_len
    end = count * seq_len
    return as_split(ids[:end].reshape(count, seq_len), ids[1:end + 1].reshape(count, seq_len))


def generate(params: Params, seed: int) -> Splits:
    """The same splits for every seed: the text and its order are fixed."""
    text, source = read_corpus(params.path, params.max_chars, params.corpus)
    require(len(text) > 0, "dataset.path", f"must name a text file with characters in it; {source} is empty",
            params.path)
    try:
        sizes = split_sizes(len(text), params.val_fraction, params.test_fraction)
    except ValueError:  # too few characters for three splits
        sizes = (0, 0, 0)
    require(min(sizes) > params.seq_len, "dataset.seq_len",
            f"must be smaller than each split of the {len(text)} characters of {source} "
            f"(train/val/test {sizes[0]}/{sizes[1]}/{sizes[2]})", params.seq_len)
    bounds = np.cumsum(sizes)[:2]
    parts = [text[:bounds[0]], text[bounds[0]:bounds[1]], text[bounds[1]:]]
    vocabulary = vocabulary_of(parts[0])
    train, val, test = (sequences(encode(part, vocabulary), params.seq_len) for part in parts)
    info = DatasetInfo(NAME, task="language_model", classes=vocabulary)
    return Splits(train, val, test, info)
