"""Dataset records: frame counts from the scan index, its quarantine, segments, one-line errors."""
import numpy as np
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


def ava_config(base, **changes) -> DataConfig:
    fields = dict(name="ava", task="localisation", sampling="keyframe", manifest="annotations/train.csv",
                  val_manifest="annotations/val.csv", root="videos", labelmap="annotations/labelmap.pbtxt",
                  num_classes=5, excluded="annotations/excluded.csv")
    fields.update(changes)
    return DataConfig(datasets=[DatasetConfig(**fields)], base_dir=str(base))


def test_localisation_records_are_the_annotated_keyframes(tmp_path):
    from dalitrain.data.synth_ava import generate_ava

    summary = generate_ava(tmp_path, "ava_tiny", seed=0)
    (train,), _ = load_records(ava_config(tmp_path), "train")
    rows = [line.split(",") for line in (tmp_path / "annotations/train.csv").read_text().splitlines()]
    keys = sorted({(r[0], int(r[1])) for r in rows})
    assert [(b.video_id, b.timestamp) for b in train.boxes] == keys
    assert [v.keyframe for v in train.videos] == [ts * summary["fps"] for _, ts in keys]  # second x fps
    assert all(v.path.name == f"{b.video_id}.webm" for v, b in zip(train.videos, train.boxes))
    first = train.boxes[0]
    people = {tuple(r[2:6]) for r in rows if (r[0], int(r[1])) == keys[0]}
    assert len(first.boxes) == len(people) and first.labels.shape == (len(people), 5)
    assert first.frame_hw == (48, 64)
    (val,), _ = load_records(ava_config(tmp_path), "val")
    excluded = {tuple(line.split(",")) for line in (tmp_path / "annotations/excluded.csv").read_text().splitlines()}
    assert excluded and not {(b.video_id, f"{b.timestamp:04d}") for b in val.boxes} & excluded


def test_localisation_records_refuse_bad_inputs_in_one_line(tmp_path):
    from dalitrain.data.synth_ava import generate_ava
    from dalitrain.errors import InputError

    generate_ava(tmp_path, "ava_tiny", seed=0)
    with pytest.raises(InputError, match=r"num_classes is 4, but annotations/labelmap.pbtxt has 5 actions"):
        load_records(ava_config(tmp_path, num_classes=4), "train")
    with pytest.raises(InputError, match=r"nowhere: the localisation dataset's video folder does not exist"):
        load_records(ava_config(tmp_path, root="nowhere"), "train")
    train = tmp_path / "annotations/train.csv"
    train.write_text(train.read_text() + "no_such_movie,0001,0.1,0.1,0.5,0.5,1,0\n")
    line = len(train.read_text().splitlines())
    with pytest.raises(InputError, match=rf"train.csv:{line}: video 'no_such_movie' is not in the dataset"):
        load_records(ava_config(tmp_path), "train")
    (skipped,), _ = load_records(ava_config(tmp_path, bad_rows="skip"), "train")
    assert all(b.video_id != "no_such_movie" for b in skipped.boxes)


def test_localisation_training_on_proposals_labels_them_by_overlap(tmp_path):
    from dalitrain.data.synth_ava import generate_ava

    generate_ava(tmp_path, "ava_tiny", seed=0)
    (truth,), _ = load_records(ava_config(tmp_path), "train")
    config = ava_config(tmp_path, train_boxes="proposals", proposals="annotations/proposals_train.csv")
    (found,), _ = load_records(config, "train")
    assert [(b.video_id, b.timestamp) for b in found.boxes] == [(b.video_id, b.timestamp) for b in truth.boxes]
    labelled = sum(int(b.labels.any(axis=1).sum()) for b in found.boxes)
    people = sum(len(b.boxes) for b in truth.boxes)
    # the synthetic detector finds every person (jittered by at most 8%, scored above 0.75 < 0.8 sometimes)
    assert 0 < labelled <= people
    assert not all(np.array_equal(f.boxes, t.boxes) for f, t in zip(found.boxes, truth.boxes))
