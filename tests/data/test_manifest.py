import pytest

from dalitrain.data.manifest import (ManifestEntry, ManifestError, read_class_names, read_manifest,
                                     write_manifest)


def test_space_and_comma_lists(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("# comment\nvideos/a b.webm 3\n\nvideos/c.webm,0\n")
    entries = read_manifest(path)
    assert [(e.path, e.label, e.row) for e in entries] == [("videos/a b.webm", 3, 0), ("videos/c.webm", 0, 1)]


def test_csv_segments_seconds_and_frames(tmp_path):
    sec = tmp_path / "sec.csv"
    sec.write_text("path,label,start,end\nv1.webm,2,1.5,4\nv2.webm,1,,\n")
    a, b = read_manifest(sec)
    assert (a.start, a.end, a.unit) == (1.5, 4.0, "sec") and b.start is None
    frames = tmp_path / "frames.csv"
    frames.write_text("path,label,start_frame,end_frame\nv1.webm,2,10,40\n")
    (c,) = read_manifest(frames)
    assert (c.start, c.end, c.unit) == (10, 40, "frame")


@pytest.mark.parametrize("text, line, reason", [
    ("a.webm 1\nb.webm x\n", 2, "is not an integer"),
    ("a.webm 1\n\nb.webm -1\n", 3, "out of range"),
    ("a.webm 1\nb.webm 9\n", 2, "out of range"),
    ("path,label,start,end\na.webm,1,5,2\n", 2, "is not after start"),
    ("path,label,start,end\na.webm,1,x,2\n", 2, "is not a number"),
    ("path,label\na.webm,1\nb.webm,1,3\n", 3, "more fields"),
])
def test_errors_name_file_and_line(tmp_path, text, line, reason):
    path = tmp_path / "m.txt"
    path.write_text(text)
    with pytest.raises(ManifestError) as info:
        read_manifest(path, num_classes=5)
    assert str(info.value).startswith(f"{path}:{line}: ") and reason in str(info.value)


def test_missing_and_empty(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ManifestError, match="no entries"):
        read_manifest(tmp_path / "empty.txt")


def test_write_round_trips(tmp_path):
    plain = [ManifestEntry("a.webm", 1, 0), ManifestEntry("b c.webm", 0, 1)]
    write_manifest(tmp_path / "p.txt", plain)
    assert read_manifest(tmp_path / "p.txt") == plain
    seg = [ManifestEntry("a.webm", 1, 0, 1.0, 2.5), ManifestEntry("b.webm", 0, 1)]
    write_manifest(tmp_path / "s.csv", seg)
    assert read_manifest(tmp_path / "s.csv") == seg


def test_class_names(tmp_path):
    (tmp_path / "c.txt").write_text("walk\nrun\n")
    assert read_class_names(tmp_path / "c.txt") == ["walk", "run"]
    (tmp_path / "c.json").write_text('{"run": 1, "walk": 0}')
    assert read_class_names(tmp_path / "c.json") == ["walk", "run"]
    (tmp_path / "bad.json").write_text('{"run": 1, "walk": 1}')
    with pytest.raises(ManifestError, match="bad.json: class ids"):
        read_class_names(tmp_path / "bad.json")
