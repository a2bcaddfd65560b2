"""Text data for the text classifier: the corpora, cleaning, de-duplication, splits, vocabulary.

No torch here: the same code feeds the RNN, the bag-of-words baseline and the cheap checks
TextData makes when it is built (files looked for, none read).

Two sources:
- ``fortunes``: the categorised quotations that Debian's ``fortunes`` package installs under
  /usr/share/games/fortunes (real text written by people; one file per category, entries
  separated by a line holding ``%``). The category is the label.
- ``files``: the user's own CSV (header with ``text`` and ``label`` columns) or JSONL (one
  ``{"text": ..., "label": ...}`` object per line).
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from finesweep.models.data_sources import MissingDataSource, resolve_path

FORTUNES_DIR = Path("/usr/share/games/fortunes")
DEFAULT_CATEGORIES = "computers,definitions,politics,songs-poems,startrek,zippy"
FORTUNES_HINT = ("install Debian's fortunes package: `sudo apt-get install fortunes` "
                 "(scripts/setup.sh does it when run as root)")
PAD, UNK = 0, 1
_OVERSTRIKE = re.compile(r".\x08")  # nroff bold/underline: "x\bx"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
_KEY = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class TextSplits:
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    test: list[tuple[str, int]]
    labels: tuple[str, ...]
    # What preprocessing removed, by reason (reported by the baselines script and tests).
    dropped: dict[str, int]
    # Rows read from the source, and usable texts left out by ``max_per_class``.
    read: int = 0
    capped: int = 0

    def report(self) -> str:
        """What happened to the rows read, for the user: read, dropped (and why), labels."""
        cleaning = {k: v for k, v in self.dropped.items() if k not in ("duplicate", "conflicting_labels")}
        parts = [f"{self.read} rows read"]
        if cleaning:
            reasons = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(cleaning.items()))
            parts.append(f"{sum(cleaning.values())} dropped by cleaning ({reasons})")
        else:
            parts.append("0 dropped by cleaning")
        parts.append(f"{self.dropped.get('duplicate', 0)} dropped as duplicates")
        if self.dropped.get("conflicting_labels"):
            parts.append(f"{self.dropped['conflicting_labels']} texts dropped for having two labels")
        if self.capped:
            parts.append(f"{self.capped} left out by max_per_class")
        return ", ".join(parts) + f"; {len(self.labels)} labels: {', '.join(self.labels)}"


def parse_categories(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def check_fortunes(categories: Sequence[str], directory: Path | None = None, where: str = "") -> None:
    """Raise :class:`MissingDataSource` (saying what to install) unless every category's file
    is there; ``where`` opens the message (the setting that named them). Looks for the files,
    reads none of them."""
    directory = directory or FORTUNES_DIR
    if not directory.is_dir():
        raise MissingDataSource(f"{where}the text corpus is missing: {directory} does not exist; {FORTUNES_HINT}")
    missing = [name for name in categories if not (directory / name).is_file()]
    if missing:
        available = sorted(p.name for p in directory.iterdir()
                           if p.is_file() and "." not in p.name)
        raise MissingDataSource(
            f"{where}fortune categories {', '.join(missing)} are missing from {directory} "
            f"(available: {', '.join(available) or 'none'}); {FORTUNES_HINT}")


def read_fortunes(categories: Sequence[str], directory: Path | None = None) -> list[tuple[str, str]]:
    """Every entry of the given fortune categories as (text, category)."""
    directory = directory or FORTUNES_DIR
    check_fortunes(categories, directory)
    entries = []
    for name in categories:
        raw = (directory / name).read_bytes().decode("utf-8", errors="replace")
        for entry in re.split(r"^%\s*$", raw, flags=re.MULTILINE):
            entries.append((entry, name))
    return entries


_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_FILE_HINT = ("give a CSV with `text` and `label` columns or a JSONL file of "
              "{\"text\": ..., \"label\": ...} objects")


def check_labelled_file(value: str, argument: str = "path") -> Path:
    """The readable file ``value`` names (relative to the start directory, see
    :func:`resolve_path`), after a look at its first line only: :class:`MissingDataSource`
    when it is not there or not readable, ``ValueError`` when its header is not ``text,label``."""
    path = resolve_path(value)
    if not path.is_file():
        where = f" ({path.resolve()})" if str(path) != str(path.resolve()) else ""
        raise MissingDataSource(f"{argument} {value!r}: no such file{where}; {_FILE_HINT}")
    try:
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
            if path.suffix.lower() in _JSONL_SUFFIXES:
                first = next((line for line in handle if line.strip()), "")
                if first:
                    _json_row(first, f"{argument} {value!r}: the first record")
            else:
                header = next(csv.reader(handle), [])
                if not {"text", "label"} <= set(header):
                    raise ValueError(f"{argument} {value!r}: expected CSV columns `text` and `label` "
                                     f"in the header, found {header}; {_FILE_HINT}")
    except OSError as error:
        raise MissingDataSource(f"{argument} {value!r}: cannot read {path}: {error.strerror or error}") from None
    return path


def _json_row(line: str, where: str) -> tuple[str, str]:
    try:
        record = json.loads(line)
        return str(record["text"]), str(record["label"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{where}: expected a JSON object with `text` and `label`, found "
                         f"{line.strip()[:60]!r} ({error})") from None


def read_labelled_file(value: str, argument: str = "path") -> list[tuple[str, str]]:
    """(text, label) rows of a user's CSV or JSONL file, read strictly: a line that is not
    UTF-8 or a malformed CSV row raises ``ValueError`` naming the file and line, rather than
    being replaced or dropped without a word."""
    path = check_labelled_file(value, argument)
    lines = _utf8_lines(path, argument, value)
    if path.suffix.lower() in _JSONL_SUFFIXES:
        return [_json_row(line, f"{path}:{number}") for number, line in enumerate(lines, 1) if line.strip()]
    reader = csv.DictReader(lines)
    try:
        return [(row["text"] or "", row["label"] or "") for row in reader]
    except csv.Error as error:
        hint = (f" (a field over {csv.field_size_limit()} characters usually means a quote that "
                "is never closed)" if "field limit" in str(error) else "")
        raise ValueError(f"{argument} {value!r}: {path}:{reader.line_num}: not a valid CSV row: "
                         f"{error}{hint}") from None


def _utf8_lines(path: Path, argument: str, value: str) -> io.StringIO:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{argument} {value!r}: {path}:{line}: not UTF-8 (byte 0x{data[error.start]:02x}); "
                         "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)") from None
    # newline="": line ends stay as written, which is what the csv module expects.
    return io.StringIO(text.removeprefix("\ufeff"), newline="")


def clean(text: str) -> str:
    """Normalised text: Unicode NFKC, overstriking and control characters removed, whitespace
    collapsed, attribution lines ("-- Author") dropped so the label is not read off a name."""
    text = unicodedata.normalize("NFKC", _OVERSTRIKE.sub("", text))
    text = _CONTROL.sub(" ", text.replace("\t", " "))
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if not line.startswith("--")]
    return re.sub(r"\s+", " ", " ".join(lines)).strip()


def garbled(text: str, min_chars: int) -> str | None:
    """Why a cleaned text is unusable, or None: empty, too short, or mostly not letters
    (ASCII art, tables, encoding damage)."""
    if not text:
        return "empty"
    if len(text) < min_chars:
        return "too_short"
    if "\ufffd" in text:
        return "garbled"
    letters = sum(ch.isalpha() for ch in text)
    if letters / len(text) < 0.6:
        return "garbled"
    return None


def dedup_key(text: str) -> str:
    """Two texts with the same key are the same text: case, punctuation and spacing ignored."""
    return _KEY.sub(" ", text.lower()).strip()


def prepare(rows: Iterable[tuple[str, str]], *, min_chars: int = 10, max_chars: int = 0,
            max_per_class: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15,
            split_seed: int = 0) -> TextSplits:
    """Clean, de-duplicate and split labelled texts.

    Exact and normalised duplicates keep one copy; a text seen under two labels is dropped
    entirely (ambiguous). Splitting happens after de-duplication, so no text (up to case,
    punctuation and spacing) is in two splits. Splits are stratified by label.
    """
    dropped: Counter[str] = Counter()
    seen: dict[str, tuple[str, str]] = {}
    conflicting: set[str] = set()
    read = 0
    for raw, label in rows:
        read += 1
        text = clean(raw)
        reason = garbled(text, min_chars)
        if reason is None and max_chars and len(text) > max_chars:
            reason = "too_long"
        if reason is None and not label.strip():
            reason = "no_label"
        if reason:
            dropped[reason] += 1
            continue
        key = dedup_key(text)
        if key in seen:
            dropped["duplicate"] += 1
            if seen[key][1] != label.strip():
                conflicting.add(key)
            continue
        seen[key] = (text, label.strip())
    dropped["conflicting_labels"] = len(conflicting)
    labels = tuple(sorted({label for key, (_, label) in seen.items() if key not in conflicting}))
    index = {label: i for i, label in enumerate(labels)}
    by_label: dict[int, list[str]] = {i: [] for i in range(len(labels))}
    for key, (text, label) in seen.items():
        if key not in conflicting:
            by_label[index[label]].append(text)
    rng = random.Random(split_seed)
    train, val, test = [], [], []
    capped = 0
    for label_id, texts in by_label.items():
        rng.shuffle(texts)
        if max_per_class:
            capped += max(0, len(texts) - max_per_class)
            texts = texts[:max_per_class]
        n_test = round(len(texts) * test_fraction)
        n_val = round(len(texts) * val_fraction)
        test += [(t, label_id) for t in texts[:n_test]]
        val += [(t, label_id) for t in texts[n_test:n_test + n_val]]
        train += [(t, label_id) for t in texts[n_test + n_val:]]
    for part in (train, val, test):
        rng.shuffle(part)
    return TextSplits(train, val, test, labels, {k: v for k, v in dropped.items() if v}, read, capped)


def tokenize(text: str) -> list[str]:
    """Lower-cased words (with an apostrophe suffix kept: "don't") and punctuation marks."""
    return _TOKEN.findall(text.lower())


def build_vocabulary(texts: Iterable[str], *, min_freq: int = 2, max_size: int = 20000) -> dict[str, int]:
    """Token -> id from the training texts only; 0 is padding, 1 is every unknown token."""
    counts = Counter(token for text in texts for token in tokenize(text))
    ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
    return {token: i + 2 for i, token in enumerate(ranked[:max(0, max_size - 2)])}


def encode(text: str, vocabulary: dict[str, int], max_tokens: int) -> list[int]:
    return [vocabulary.get(token, UNK) for token in tokenize(text)[:max_tokens]] or [UNK]
