"""Dataset specs for the sampler: a config's datasets -> `DatasetRecords` (videos with frame counts).

Frame counts come from the scan index (`data.scan_index`, written by `dalitrain scan`) when there is one; its
quarantine (records with `ok: false`) is honoured. Without an index each video is probed with PyAV once per
process; a video that cannot be probed is quarantined with its reason. Quarantined videos never enter a plan.
"""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from dalitrain.config import DataConfig, DatasetConfig, resolve_path
from dalitrain.data.manifest import ManifestEntry, read_manifest
from dalitrain.data.probe import probe_video
from dalitrain.data.sampling import DatasetRecords, VideoRecord

log = logging.getLogger(__name__)


class ScanIndexError(ValueError):
    """An unreadable scan index: `<file>: <reason>`."""


def read_scan_index(path: Path) -> dict[str, dict]:
    """Scan records keyed by resolved video path (records are a JSON list or {"records": [...]}); relative
    record paths are taken relative to the index file's folder."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ScanIndexError(f"{path}: scan index not found") from None
    except json.JSONDecodeError as err:
        raise ScanIndexError(f"{path}:{err.lineno}: scan index is not valid JSON ({err.msg})") from None
    records = raw.get("records") if isinstance(raw, dict) else raw
    if not isinstance(records, list) or not all(isinstance(r, dict) and "path" in r for r in records):
        raise ScanIndexError(f"{path}: expected a list of records with a 'path' field")
    base = Path(path).parent
    return {str(_absolute(base, r["path"])): r for r in records}


def _absolute(base: Path, path: str) -> Path:
    p = Path(path)
    return (p if p.is_absolute() else base / p).resolve()


@lru_cache(maxsize=None)
def _probe(path: str, mtime: float) -> tuple[int, float]:
    info = probe_video(path)
    return info.frames, info.fps


def _video_info(path: Path, index: Optional[dict[str, dict]]) -> tuple[int, float]:
    """(frames, fps) of a video; raises ValueError with the reason when it is quarantined or unreadable."""
    if index is not None:
        record = index.get(str(path.resolve()))
        if record is not None:
            if not record.get("ok", True):
                raise ValueError(record.get("reason") or "quarantined by the scan")
            return int(record["frames"]), float(record.get("fps") or 0.0)
    try:
        return _probe(str(path), path.stat().st_mtime)
    except FileNotFoundError:
        raise ValueError("file not found") from None
    except Exception as err:  # PyAV raises many error types for unreadable files: all mean "quarantine"
        raise ValueError(f"cannot probe ({type(err).__name__}: {err})") from None


def _segment(entry: ManifestEntry, fps: float) -> Optional[tuple[int, int]]:
    if entry.start is None and entry.end is None:
        return None
    scale = 1.0 if entry.unit == "frame" else fps
    start = int(round((entry.start or 0.0) * scale))
    end = int(round(entry.end * scale)) if entry.end is not None else 1 << 62
    return start, max(end, start + 1)


def dataset_records(data: DataConfig, ds: DatasetConfig, split: Literal["train", "val"],
                    index: Optional[dict[str, dict]]) -> tuple[DatasetRecords, dict[str, str]]:
    """The playable videos of one dataset split, and the quarantined ones as {path: reason}."""
    manifest = ds.manifest if split == "train" else ds.val_manifest
    if manifest is None:
        raise ValueError(f"dataset {ds.name}: no val_manifest for evaluation")
    root = resolve_path(data.base_dir, ds.root)
    videos, quarantined = [], {}
    for entry in read_manifest(resolve_path(data.base_dir, manifest), ds.num_classes):
        path = root / entry.path
        try:
            frames, fps = _video_info(path, index)
        except ValueError as err:
            quarantined[str(path)] = str(err)
            continue
        if frames < 1:
            quarantined[str(path)] = "no frames"
            continue
        videos.append(VideoRecord(path, entry.label, entry.row, frames, _segment(entry, fps)))
    for path, reason in quarantined.items():
        log.warning("dataset %s: quarantined %s (%s)", ds.name, path, reason)
    if not videos:
        raise ValueError(f"dataset {ds.name}: no playable video in {manifest} ({len(quarantined)} quarantined)")
    return DatasetRecords(ds.name, videos, ds.sampling, ds.flip, ds.weight), quarantined


def load_records(data: DataConfig, split: Literal["train", "val"]) -> tuple[list[DatasetRecords], dict[str, str]]:
    """Every dataset of the config for one split, with the union of their quarantines."""
    index = read_scan_index(resolve_path(data.base_dir, data.scan_index)) if data.scan_index else None
    datasets, quarantined = [], {}
    for ds in data.datasets:
        records, bad = dataset_records(data, ds, split, index)
        datasets.append(records)
        quarantined.update(bad)
    return datasets, quarantined
