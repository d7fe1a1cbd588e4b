"""Dataset manifests in the formats users already have.

- PySlowFast / MMAction2 lists: one `path label` per line, separated by spaces or a comma
  (`videos/abc.mp4 12`, `videos/abc.mp4,12`). Paths may contain spaces: the label is the last field.
- CSV with a header row holding `path` and `label`, optionally `start,end` (seconds) or `start_frame,end_frame`
  (frames) for trimmed segments, as ActivityNet-style annotations need.
- Class names: one name per line (line number = class id), or JSON `{name: id}` (PySlowFast's classids.json).

Every error names the file and the line.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from dalitrain.errors import DalitrainError
from dalitrain.fileio import write_atomic


class ManifestError(DalitrainError, ValueError):
    """A malformed manifest or class-name file: `<file>:<line>: <reason>`."""


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # as written in the manifest (relative paths resolve against the dataset root)
    label: int
    row: int  # 0-based index among the manifest's entries: the `index` a Batch carries
    start: Optional[float] = None  # trimmed segment, in `unit`
    end: Optional[float] = None
    unit: Literal["sec", "frame"] = "sec"


def _int_label(text: str, where: str, num_classes: Optional[int]) -> int:
    try:
        label = int(text)
    except ValueError:
        raise ManifestError(f"{where}: label {text!r} is not an integer") from None
    if label < 0 or (num_classes is not None and label >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else "non-negative"
        raise ManifestError(f"{where}: label {label} out of range (must be {bound})")
    return label


def _number(text: str, name: str, where: str) -> Optional[float]:
    if text is None or text.strip() == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise ManifestError(f"{where}: {name} {text!r} is not a number") from None


def _read_csv(path: Path, lines: list[str], num_classes: Optional[int]) -> list[ManifestEntry]:
    reader = csv.DictReader(lines)
    fields = [f.strip() for f in reader.fieldnames or []]
    reader.fieldnames = fields
    if "start_frame" in fields or "end_frame" in fields:
        start_key, end_key, unit = "start_frame", "end_frame", "frame"
    else:
        start_key, end_key, unit = "start", "end", "sec"
    entries = []
    for line_no, record in enumerate(reader, start=2):
        where = f"{path}:{line_no}"
        if None in record:
            raise ManifestError(f"{where}: more fields than the header's {len(fields)}")
        if not (record.get("path") or "").strip():
            raise ManifestError(f"{where}: empty path")
        start = _number(record.get(start_key), start_key, where)
        end = _number(record.get(end_key), end_key, where)
        if start is not None and end is not None and end <= start:
            raise ManifestError(f"{where}: segment end {end:g} is not after start {start:g}")
        label = _int_label((record.get("label") or "").strip(), where, num_classes)
        entries.append(ManifestEntry(record["path"].strip(), label, len(entries), start, end, unit))
    return entries


def _read_list(path: Path, lines: list[str], num_classes: Optional[int]) -> list[ManifestEntry]:
    entries = []
    for line_no, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{path}:{line_no}"
        if "," in text:
            video, _, label = text.rpartition(",")
        else:
            video, _, label = text.rpartition(" ")
        video, label = video.strip(), label.strip()
        if not video:
            raise ManifestError(f"{where}: expected 'path label', got {text!r}")
        entries.append(ManifestEntry(video, _int_label(label, where, num_classes), len(entries)))
    return entries


def read_manifest(path: str | Path, num_classes: Optional[int] = None) -> list[ManifestEntry]:
    """Parse a manifest; with `num_classes`, a label outside [0, num_classes) is an error naming its line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a text manifest") from None
    header = lines[0].replace(" ", "").lower().split(",") if lines else []
    is_csv = "path" in header and "label" in header
    entries = (_read_csv if is_csv else _read_list)(path, lines, num_classes)
    if not entries:
        raise ManifestError(f"{path}: manifest has no entries")
    return entries


def write_manifest(path: str | Path, entries: list[ManifestEntry]) -> None:
    """Write entries back: a CSV when any carries a segment, `path label` lines otherwise."""
    if any(e.start is not None or e.end is not None for e in entries):
        start_key, end_key = ("start_frame", "end_frame") if entries[0].unit == "frame" else ("start", "end")
        fmt = lambda v: "" if v is None else f"{v:g}"  # noqa: E731
        rows = [f"path,label,{start_key},{end_key}"]
        rows += [f"{e.path},{e.label},{fmt(e.start)},{fmt(e.end)}" for e in entries]
    else:
        rows = [f"{e.path} {e.label}" for e in entries]
    write_atomic(path, "\n".join(rows) + "\n")


def read_class_names(path: str | Path) -> list[str]:
    """Class names indexed by label id."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ManifestError(f"{path}: class-name file not found") from None
    if path.suffix == ".json":
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, int) for v in mapping.values()):
            raise ManifestError(f"{path}: expected a JSON object {{class name: integer id}}")
        names = [""] * len(mapping)
        for name, idx in mapping.items():
            if not 0 <= idx < len(mapping) or names[idx]:
                raise ManifestError(f"{path}: class ids must be 0..{len(mapping) - 1}, each once; bad id {idx}")
            names[idx] = name
        return names
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    for line_no, name in enumerate(names, start=1):
        if not name:
            raise ManifestError(f"{path}:{line_no}: empty class name")
    return names
