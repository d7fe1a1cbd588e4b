"""Dataset records: frame counts from the scan index, its quarantine, segments, one-line errors."""
import json

import pytest

from dalitrain.config import DataConfig, DatasetConfig
from dalitrain.data.records import ScanIndexError, load_records, read_scan_index


def test_scan_index_gives_frames_segments_and_quarantine(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "train.csv").write_text("path,label,start,end\na.webm,0,2.0,4.0\nb.webm,1,,\nc.webm,1,,\n")
    index = [{"path": "ds/a.webm", "ok": True, "frames": 250, "fps": 25.0},
             {"path": "ds/b.webm", "ok": False, "reason": "codec h264: the CPU decoder reads VP8/VP9/MJPEG"},
             {"path": "ds/c.webm", "ok": True, "frames": 100, "fps": 25.0}]
    (tmp_path / "scan.json").write_text(json.dumps({"records": index}))
    data = DataConfig(datasets=[DatasetConfig(name="ds", manifest="train.csv", root="ds", num_classes=2,
                                              sampling="segment")],
                      base_dir=str(tmp_path), scan_index="scan.json")
    (records,), quarantined = load_records(data, "train")
    assert [(v.path.name, v.row, v.frames, v.segment) for v in records.videos] == [
        ("a.webm", 0, 250, (50, 100)),  # 2 s..4 s at 25 fps
        ("c.webm", 2, 100, None)]
    assert quarantined == {str(tmp_path / "ds" / "b.webm"): "codec h264: the CPU decoder reads VP8/VP9/MJPEG"}


def test_a_missing_video_is_quarantined_with_its_reason(tmp_path):
    (tmp_path / "train.txt").write_text("gone.webm 0\n")
    data = DataConfig(datasets=[DatasetConfig(name="ds", manifest="train.txt", num_classes=1)],
                      base_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"^dataset ds: no playable video in train.txt \(1 quarantined\)$"):
        load_records(data, "train")


def test_an_unreadable_scan_index_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "scan.json"
    bad.write_text("{not json")
    with pytest.raises(ScanIndexError, match=rf"^{bad}:1: scan index is not valid JSON"):
        read_scan_index(bad)
    bad.write_text(json.dumps([{"frames": 3}]))
    with pytest.raises(ScanIndexError, match=r"expected a list of records with a 'path' field$"):
        read_scan_index(bad)
