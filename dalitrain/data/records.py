"""Dataset specs for the sampler: a config's datasets -> `DatasetRecords` (videos with frame counts).

Frame counts come from the scan index (`data.scan_index`, written by `dalitrain scan`; an entry's record is found
by manifest and row) when there is one; its quarantine (records with `ok: false`) is honoured. Without an index
each video is probed with PyAV once per process; a video that cannot be probed is quarantined with its reason.
Quarantined videos never enter a plan.

A localisation dataset (`task: localisation`, AVA's files) gives one record per annotated keyframe: its movie's
video (`root/VIDEO_ID.*`), the keyframe's frame (`(timestamp - start_second) x fps`) and the keyframe's person
boxes with their multi-hot actions. Either split carries the annotated boxes or the person detector's above a
threshold (`train_boxes`, `eval_boxes`: training proposals take the actions of the annotated box they overlap,
`dalitrain.data.ava.label_proposals`); validation leaves out the excluded timestamps.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from dalitrain.config import DataConfig, DatasetConfig, resolve_path
from dalitrain.data.ava import (keyframes, label_proposals, read_boxes, read_exclusions, read_labelmap,
                                read_proposals)
from dalitrain.data.manifest import ManifestEntry, read_manifest
from dalitrain.data.probe import VideoInfo, probe_video
from dalitrain.data.sampling import DatasetRecords, KeyframeBoxes, VideoRecord
from dalitrain.data.scan import DECODER_FAMILY, ScanIndexError, ScanRecord, index_decoder, load_index, record_key
from dalitrain.engine.distributed import is_main_process
from dalitrain.errors import InputError, UsageError

log = logging.getLogger(__name__)


@lru_cache(maxsize=None)
def _probe(path: str, mtime: float) -> VideoInfo:
    return probe_video(path)


def _video_info(path: Path, record: Optional[ScanRecord]) -> tuple[int, float, tuple[int, int]]:
    """(frames, fps, (height, width)) of a video, from its scan record when there is one; raises ValueError with
    the reason when it is quarantined or unreadable."""
    if record is not None:
        if not record.ok:
            raise ValueError(f"{record.reason} ({record.detail})" if record.detail else record.reason)
        return record.frames, record.fps, (record.height, record.width)
    info = _probed(path)
    return info.frames, info.fps, (info.height, info.width)


def _probed(path: Path) -> VideoInfo:
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
                    index: Optional[dict[str, ScanRecord]]) -> tuple[DatasetRecords, dict[str, str]]:
    """The playable videos of one dataset split, and the quarantined ones as {path: reason}."""
    manifest = ds.manifest if split == "train" else ds.val_manifest
    if manifest is None:
        raise UsageError(f"dataset {ds.name}: no val_manifest for evaluation")
    if ds.task == "localisation":
        return localisation_records(data, ds, split)
    root = resolve_path(data.base_dir, ds.root)
    manifest_path = resolve_path(data.base_dir, manifest)
    videos, quarantined = [], {}
    for entry in read_manifest(manifest_path, ds.num_classes):
        path = root / entry.path
        record = index.get(record_key(manifest_path, entry.row)) if index is not None else None
        try:
            frames, fps, size = _video_info(path, record)
        except ValueError as err:
            quarantined[str(path)] = str(err)
            continue
        if frames < 1:
            quarantined[str(path)] = "no frames"
            continue
        videos.append(VideoRecord(path, entry.label, entry.row, frames, _segment(entry, fps), size=size))
    _report(ds, manifest, videos, quarantined)
    return DatasetRecords(ds.name, videos, ds.sampling, ds.flip, ds.weight), quarantined


def _report(ds: DatasetConfig, manifest: str, videos: list, quarantined: dict[str, str]) -> None:
    if is_main_process():  # every rank reads the whole manifest: one of them reports
        for path, reason in quarantined.items():
            log.warning("dataset %s: quarantined %s (%s)", ds.name, path, reason)
    if not videos:
        raise InputError(f"dataset {ds.name}: no playable video in {manifest} ({len(quarantined)} quarantined)")


def movie_files(root: Path) -> dict[str, Path]:
    """AVA's videos, one per movie: video id (the file name without its extension) -> file."""
    if not root.is_dir():
        raise InputError(f"{root}: the localisation dataset's video folder does not exist")
    return {p.stem: p for p in sorted(root.iterdir()) if p.is_file()}


def localisation_records(data: DataConfig, ds: DatasetConfig,
                         split: Literal["train", "val"]) -> tuple[DatasetRecords, dict[str, str]]:
    """One record per annotated keyframe (module docstring); its boxes in `DatasetRecords.boxes`."""
    actions = read_labelmap(resolve_path(data.base_dir, ds.labelmap))
    if len(actions) != ds.num_classes:
        raise InputError(f"dataset {ds.name}: num_classes is {ds.num_classes}, but {ds.labelmap} has "
                         f"{len(actions)} actions")
    movies = movie_files(resolve_path(data.base_dir, ds.root))
    manifest = ds.manifest if split == "train" else ds.val_manifest
    truth = read_boxes(resolve_path(data.base_dir, manifest), set(actions), scored=False, videos=set(movies),
                       bad_rows=ds.bad_rows)
    excluded = read_exclusions(resolve_path(data.base_dir, ds.excluded) if ds.excluded else None)
    training = split == "train"
    frames = {key: boxes for key, boxes in truth.items() if training or key not in excluded}
    source, proposals, threshold = ((ds.train_boxes, ds.proposals, ds.train_proposal_threshold) if training else
                                    (ds.eval_boxes, ds.val_proposals, ds.val_proposal_threshold))
    if source == "proposals":  # the detector's boxes instead
        found = read_proposals(resolve_path(data.base_dir, proposals), threshold=threshold, videos=set(movies),
                               bad_rows=ds.bad_rows)
        # training: labelled by overlap with the annotations; evaluation: every annotated keyframe, no actions
        frames = label_proposals(frames, found) if training else {key: found.get(key, []) for key in frames}
    videos, boxes, quarantined = [], [], {}
    for keyframe in keyframes(frames, actions):
        path = movies[keyframe.video]
        try:
            info = _probed(path)
        except ValueError as err:
            quarantined[str(path)] = str(err)
            continue
        centre = round((keyframe.timestamp - ds.start_second) * info.fps)
        videos.append(VideoRecord(path, 0, len(videos), info.frames, keyframe=centre, size=(info.height, info.width)))
        boxes.append(KeyframeBoxes(keyframe.boxes, keyframe.labels, (info.height, info.width), keyframe.video,
                                   keyframe.timestamp))
    _report(ds, manifest, videos, quarantined)
    return DatasetRecords(ds.name, videos, ds.sampling, ds.flip, ds.weight, boxes), quarantined


def load_records(data: DataConfig, split: Literal["train", "val"],
                 decoder: Optional[str] = None) -> tuple[list[DatasetRecords], dict[str, str]]:
    """Every dataset of the config for one split, with the union of their quarantines. `decoder`: the loader's;
    a scan index whose verdicts hold for another decoder family is refused in one line."""
    index = None
    if data.scan_index:
        path = resolve_path(data.base_dir, data.scan_index)
        index = load_index(path)
        made_for = index_decoder(path)
        if decoder is not None and DECODER_FAMILY[made_for] != DECODER_FAMILY[decoder]:
            raise ScanIndexError(f"{path}: scan index made for the {made_for} decoder, but the loader decodes with "
                                 f"{decoder}: rescan with `dalitrain scan --decoder {decoder}` (or --config)")
    datasets, quarantined = [], {}
    for ds in data.datasets:
        records, bad = dataset_records(data, ds, split, index)
        datasets.append(records)
        quarantined.update(bad)
    return datasets, quarantined
