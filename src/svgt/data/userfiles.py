"""Reading labelled safety data a user brings (JSONL, CSV, Parquet), in one of four schemas told apart by columns.

  standalone   text, label                                   -> TextExample
  pairs        prompt, response, label                       -> PairExample (label judges the response)
  WildGuardMix prompt, response, prompt_harm_label,          -> PairExample labelled by response_harm_label, or a
               response_harm_label ("harmful"/"unharmful")      TextExample of the prompt when there is no response
  BeaverTails  prompt, response, is_safe, category           -> PairExample, label = not is_safe

Errors name file, line and field, because these files are large and hand-edited; a silent skip would hide a
mislabelled column. Skips that are on purpose (empty text, exact duplicates) are counted in a LoadReport.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import DataError
from .records import PairExample, TextExample

__all__ = ["DataError", "LoadReport", "load_file", "load_file_with_report"]

Record = TextExample | PairExample

_LABELS = {"0": 0, "1": 1, "false": 0, "true": 1, "safe": 0, "unsafe": 1, "unharmful": 0, "harmful": 1}
_LABEL_HELP = "0/1, true/false, safe/unsafe or harmful/unharmful"
_SCHEMAS = (
    "text,label | prompt,response,label | WildGuardMix (prompt,response,prompt_harm_label,response_harm_label)"
    " | BeaverTails (prompt,response,is_safe,category)"
)


@dataclass(frozen=True)
class LoadReport:
    path: str
    loaded: int
    skipped_empty: int
    skipped_duplicate: int


def _label(value: Any, where: str, field: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _LABELS:
        return _LABELS[value.strip().lower()]
    raise DataError(f"{where}: field {field!r}: expected {_LABEL_HELP}, got {value!r}")


def _is_safe(value: Any, where: str) -> bool:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise DataError(f"{where}: field 'is_safe': expected true/false, got {value!r}")


def _text(row: dict, field: str, where: str, optional: bool = False) -> str:
    if field not in row:
        raise DataError(f"{where}: field {field!r}: missing")
    value = row[field]
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r}: expected a string, got {value!r}")
    return value.strip()


def _schema(columns: set[str], path: Path) -> str:
    if {"prompt", "response", "is_safe"} <= columns:
        return "beavertails"
    if "prompt" in columns and ({"prompt_harm_label", "response_harm_label"} & columns):
        return "wildguardmix"
    if {"prompt", "response", "label"} <= columns:
        return "pairs"
    if {"text", "label"} <= columns:
        return "standalone"
    raise DataError(f"{path}: cannot tell the schema from columns {sorted(columns)}; expected one of: {_SCHEMAS}")


def _record(row: dict, schema: str, where: str, source: str) -> Record | None:
    """The row as a record, or None when its text is empty (counted, not an error)."""
    if schema == "standalone":
        text = _text(row, "text", where, optional=True)
        return TextExample(text, _label(row.get("label"), where, "label"), source) if text else None
    prompt = _text(row, "prompt", where, optional=True)
    response = _text(row, "response", where, optional=schema == "wildguardmix")
    if not prompt:
        return None
    if schema == "pairs":
        return PairExample(prompt, response, _label(row.get("label"), where, "label"), source) if response else None
    if schema == "beavertails":
        return PairExample(prompt, response, int(not _is_safe(row.get("is_safe"), where)), source) if response else None
    # WildGuardMix: a prompt-only row (no response, or an unlabelled one) still carries a valid prompt label.
    if response and row.get("response_harm_label") is not None:
        return PairExample(prompt, response, _label(row["response_harm_label"], where, "response_harm_label"), source)
    return TextExample(prompt, _label(row.get("prompt_harm_label"), where, "prompt_harm_label"), source)


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """`(line number, object)` of each non-blank line; a line that is not a JSON object raises, naming it."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{line_no}: invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
            yield line_no, row


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:  # reads the header now, so line_num counts it before the first row
            return
        end = reader.line_num
        for row in reader:
            # A quoted field may span lines: report the line the row starts on, counting the header as line 1.
            start, end = end + 1, reader.line_num
            yield start, {k: v for k, v in row.items() if k is not None}


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow; install it with: pip install pyarrow") from None
    for i, row in enumerate(pq.read_table(path).to_pylist(), 1):
        yield i, row


_READERS = {".jsonl": jsonl_rows, ".ndjson": jsonl_rows, ".csv": _csv_rows, ".parquet": _parquet_rows}


def load_file_with_report(path: str | Path) -> tuple[list[Record], LoadReport]:
    """Records of a user file in file order, and what was skipped on purpose. Raises DataError on a bad row."""
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {sorted(_READERS)}")
    records: list[Record] = []
    seen: set[Record] = set()
    empty = duplicate = 0
    schema = None
    try:
        for line, row in reader(path):
            schema = schema or _schema(set(row), path)
            record = _record(row, schema, f"{path}:{line}", path.name)
            if record is None:
                empty += 1
            elif record in seen:
                duplicate += 1
            else:
                seen.add(record)
                records.append(record)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return records, LoadReport(str(path), len(records), empty, duplicate)


def load_file(path: str | Path) -> list[Record]:
    """Records of a user file; warns when rows were skipped (empty text, exact duplicates)."""
    records, report = load_file_with_report(path)
    if report.skipped_empty or report.skipped_duplicate:
        warnings.warn(
            f"{path}: loaded {report.loaded} records, skipped {report.skipped_empty} empty and "
            f"{report.skipped_duplicate} duplicate rows",
            stacklevel=2,
        )
    return records
