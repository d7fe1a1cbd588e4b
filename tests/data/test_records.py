"""Dataset records: frame counts from the scan index, its quarantine, segments, one-line errors."""
import pytest

from dalitrain.config import DataConfig, DatasetConfig
from dalitrain.data.records import load_records
from dalitrain.data.scan import ScanIndexError, ScanRecord, write_index


def scan_record(manifest, row, path, *, ok=True, reason=None, detail="", frames=0, fps=0.0) -> ScanRecord:
    return ScanRecord(path=str(path), dataset="ds", manifest=str(manifest), row=row, label=0, ok=ok, reason=reason,
                      detail=detail, codec="vp9", width=32, height=32, frames=frames, fps=fps, duration=0.0,
                      size=1, mtime=0.0, deep=False)


def test_scan_index_gives_frames_segments_and_quarantine(tmp_path):
    (tmp_path / "ds").mkdir()
    manifest = tmp_path / "train.csv"
    manifest.write_text("path,label,start,end\na.webm,0,2.0,4.0\nb.webm,1,,\nc.webm,1,,\n")
    # The files need not exist: frames and quarantine come from the index alone.
    write_index(tmp_path / "scan.json", [
        scan_record(manifest, 0, tmp_path / "ds/a.webm", frames=250, fps=25.0),
        scan_record(manifest, 1, tmp_path / "ds/b.webm", ok=False, reason="codec_unsupported", detail="h264"),
        scan_record(manifest, 2, tmp_path / "ds/c.webm", frames=100, fps=25.0)], decoder="pyav", deep=False)
    data = DataConfig(datasets=[DatasetConfig(name="ds", manifest="train.csv", root="ds", num_classes=2,
                                              sampling="segment")],
                      base_dir=str(tmp_path), scan_index="scan.json")
    (records,), quarantined = load_records(data, "train")
    assert [(v.path.name, v.row, v.frames, v.segment) for v in records.videos] == [
        ("a.webm", 0, 250, (50, 100)),  # 2 s..4 s at 25 fps
        ("c.webm", 2, 100, None)]
    assert quarantined == {str(tmp_path / "ds" / "b.webm"): "codec_unsupported (h264)"}


def test_a_missing_video_is_quarantined_with_its_reason(tmp_path):
    (tmp_path / "train.txt").write_text("gone.webm 0\n")
    data = DataConfig(datasets=[DatasetConfig(name="ds", manifest="train.txt", num_classes=1)],
                      base_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"^dataset ds: no playable video in train.txt \(1 quarantined\)$"):
        load_records(data, "train")


def test_an_unreadable_scan_index_is_one_line_naming_it(tmp_path):
    (tmp_path / "train.txt").write_text("a.webm 0\n")
    bad = tmp_path / "scan.json"
    bad.write_text("{not json")
    data = DataConfig(datasets=[DatasetConfig(name="ds", manifest="train.txt", num_classes=1)],
                      base_dir=str(tmp_path), scan_index="scan.json")
    with pytest.raises(ScanIndexError, match=rf"^{bad}: damaged scan index, not JSON"):
        load_records(data, "train")


@pytest.mark.parametrize("rank, reported", [("0", True), ("1", False)])
def test_only_rank_zero_reports_a_quarantined_video(tmp_path, monkeypatch, caplog, rank, reported):
    """Every rank reads the whole manifest: under torchrun the warning comes once, from rank 0."""
    (tmp_path / "train.txt").write_text("gone.webm 0\nalso_gone.webm 0\n")
    write_index(tmp_path / "scan.json", [
        scan_record(tmp_path / "train.txt", 0, tmp_path / "gone.webm", frames=30, fps=25.0),
        scan_record(tmp_path / "train.txt", 1, tmp_path / "also_gone.webm", ok=False, reason="missing")],
        decoder="pyav", deep=False)
    data = DataConfig(datasets=[DatasetConfig(name="ds", manifest="train.txt", num_classes=1)],
                      base_dir=str(tmp_path), scan_index="scan.json")
    monkeypatch.setenv("RANK", rank)
    with caplog.at_level("WARNING"):
        load_records(data, "train")
    assert ("quarantined" in caplog.text and "also_gone.webm (missing)" in caplog.text) == reported
