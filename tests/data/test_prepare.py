import os

import av
import numpy as np
import pytest

from dalitrain.cli import main
from dalitrain.data.manifest import read_manifest
from dalitrain.data.prepare import output_size
from dalitrain.data.probe import probe_video
from tests.data.faults import corrupt_mid_stream, write_video


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """An H.264 video (unreadable by DALI on the CPU), a VP8 one in a subfolder, two broken files and a missing
    one, in a CSV manifest with frame segments. Shared: prepare only reads it."""
    src = tmp_path_factory.mktemp("src")
    (src / "sub").mkdir(parents=True)
    write_video(src / "wide.mp4", "libx264", frames=20, width=48, height=32)
    write_video(src / "sub" / "tall.webm", "libvpx", frames=12, width=32, height=64)
    (src / "text.webm").write_text("not a video\n")
    corrupt_mid_stream(write_video(src / "corrupt.webm"))
    manifest = src / "train.csv"
    manifest.write_text("path,label,start_frame,end_frame\n"
                        "wide.mp4,3,2,10\nsub/tall.webm,1,,\ntext.webm,0,1,4\ncorrupt.webm,2,,\nmissing.mp4,2,,\n")
    return manifest


def write_text(path, text):
    path.write_text(text)
    return path


def prepare_cli(manifest, out, codec="vp9", *extra) -> int:
    return main(["prepare", str(manifest), "--out", str(out), "--codec", codec, "--short-side", "20", "--gop", "4",
                 "--workers", "2", *extra])


def test_output_size_keeps_aspect_and_even_sides():
    assert output_size(48, 32, 20) == (30, 20)
    assert output_size(32, 64, 20) == (20, 40)
    assert output_size(1920, 1080, 255) == (454, 256)  # 453.3 x 255 rounded to even
    assert output_size(33, 17, None) == (34, 18)


def test_prepare_round_trips_labels_and_segments(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare_cli(source, out) == 0
    # Same format, labels and frame segments; the failed rows are left out.
    assert (out / "train.csv").read_text() == "path,label,start_frame,end_frame\nwide.webm,3,2,10\nsub/tall.webm,1,,\n"
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines[:3]) == [
        f"failed: {source.parent / 'corrupt.webm'}: failed after 10 frames: Invalid data found when processing input",
        f"failed: {source.parent / 'missing.mp4'}: no such file",
        f"failed: {source.parent / 'text.webm'}: Invalid data found when processing input",
    ]
    assert lines[3] == f"2 transcoded, 0 already done, 3 failed -> {out / 'train.csv'}"
    wide, tall = probe_video(out / "wide.webm"), probe_video(out / "sub" / "tall.webm")
    assert (wide.codec, wide.width, wide.height, wide.frames, wide.fps) == ("vp9", 30, 20, 20, 10.0)
    assert (tall.codec, tall.width, tall.height, tall.frames) == ("vp9", 20, 40, 12)
    assert not list(out.rglob("*.part"))


def test_prepare_resumes(source, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare_cli(source, out, "mjpeg") == 0
    done = {p: os.stat(p).st_mtime_ns for p in (out / "wide.mkv", out / "sub" / "tall.mkv")}
    (out / "sub" / "tall.mkv").unlink()
    (out / "sub" / "tall.mkv.part").write_bytes(b"left by an interrupted run")
    capsys.readouterr()
    assert prepare_cli(source, out, "mjpeg") == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"1 transcoded, 1 already done, 3 failed -> {out / 'train.csv'}"
    assert os.stat(out / "wide.mkv").st_mtime_ns == done[out / "wide.mkv"]
    assert probe_video(out / "sub" / "tall.mkv").frames == 12 and not (out / "sub" / "tall.mkv.part").exists()


@pytest.mark.parametrize("codec", ["vp9", "mjpeg"])
def test_prepared_files_decode_with_dali_on_cpu(source, tmp_path, codec):
    from nvidia.dali import fn, pipeline_def

    out = tmp_path / "out"
    assert prepare_cli(source, out, codec) == 0
    (entry, _) = read_manifest(out / "train.csv")

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def reader():
        return fn.experimental.readers.video(device="cpu", filenames=[str(out / entry.path)], sequence_length=20)

    pipe = reader()
    pipe.build()
    (video,) = pipe.run()
    frames = np.asarray(video[0])
    assert frames.shape == (20, 20, 30, 3)
    assert frames.std() > 0  # real pictures, not a padded blank


def test_same_folder_and_malformed_manifest_are_one_line_errors(source, tmp_path, capsys):
    assert prepare_cli(source, source.parent) == 2
    assert capsys.readouterr().err == (f"dalitrain prepare: error: {source.parent}: --out must differ from the "
                                       "dataset root (the sources would be replaced)\n")
    bad = write_text(tmp_path / "bad.txt", "a.webm 1\nb.webm\n")
    assert prepare_cli(bad, tmp_path / "out") == 2
    assert capsys.readouterr().err == f"dalitrain prepare: error: {bad}:2: expected 'path label', got 'b.webm'\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("codec, suffix, name", [("vp9", ".webm", "vp9"), ("h264", ".mp4", "h264"),
                                                 ("mjpeg", ".mkv", "mjpeg")])
def test_codec_container_and_gop(source, tmp_path, codec, suffix, name):
    out = tmp_path / "out"
    assert prepare_cli(source, out, codec) == 0  # --gop 4
    path = out / f"wide{suffix}"
    assert probe_video(path).codec == name
    with av.open(str(path)) as container:
        keys = [i for i, p in enumerate(container.demux(container.streams.video[0])) if p.size and p.is_keyframe]
    assert keys[0] == 0 and max(b - a for a, b in zip(keys, keys[1:] + [20])) <= 4
