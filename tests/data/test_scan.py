import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

from dalitrain.cli import main
from dalitrain.data.scan import (FileProbe, ScanIndexError, index_decoder, load_index, nvdec_limit, probe_file,
                                 record_key, usable_records)
from tests.data.faults import FaultCorpus, truncate, write_fault_corpus, write_video

FOR_DALI = " (verdicts for the dali decoder)"  # the end of scan's last line


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> FaultCorpus:
    return write_fault_corpus(tmp_path_factory.mktemp("faults"))


def scan_cli(corpus: FaultCorpus, out, *extra: str, decoder: str = "dali") -> int:
    return main(["scan", str(corpus.manifest), "--decoder", decoder, "--num-classes", str(corpus.num_classes),
                 "--min-frames", str(corpus.min_frames), "--out", str(out), *extra])


def reasons(index_path, corpus: FaultCorpus) -> dict:
    """Manifest path -> reason, read back through load_index."""
    index = load_index(index_path)
    lines = corpus.manifest.read_text().splitlines()
    return {line.split()[0]: index[record_key(corpus.manifest, row)].reason for row, line in enumerate(lines)}


def test_deep_scan_classifies_every_fault(corpus, tmp_path, capsys):
    assert scan_cli(corpus, tmp_path / "index.json", "--deep", "--workers", "2") == 0
    assert reasons(tmp_path / "index.json", corpus) == corpus.expected
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{corpus.manifest}: 3 ok, 12 quarantined (codec_unsupported: 1, corrupt: 2, empty: 1, "
        "label_out_of_range: 1, missing: 1, no_video_stream: 1, not_video: 2, too_short: 1, truncated: 1, "
        f"unreadable: 1); re-encode for dali: dalitrain prepare {corpus.manifest} --codec vp9 --out DIR")


@pytest.mark.parametrize("encoder, suffix", [("libx264", ".mp4"), ("mjpeg", ".avi"), ("mjpeg", ".mkv"),
                                             ("libvpx", ".webm")])
@pytest.mark.parametrize("keep", [0.6, 0.9])
def test_truncation_is_found_in_every_container(tmp_path, encoder, suffix, keep):
    # MP4 keeps its index at the end (the file no longer opens); AVI, Matroska and WebM open and run short.
    path = truncate(write_video(tmp_path / f"v{suffix}", encoder, frames=40), keep)
    assert probe_file(str(path), deep=False).fault == "truncated"


def test_records_carry_metadata(corpus, tmp_path):
    assert scan_cli(corpus, tmp_path / "index.json", "--deep", "--workers", "1") == 0
    index = load_index(tmp_path / "index.json")
    good = index[record_key(corpus.manifest, 0)]  # good_vp9.webm: 20 frames of 32x32 at 10 fps
    assert (good.ok, good.codec, good.width, good.height, good.frames, good.fps) == (True, "vp9", 32, 32, 20, 10.0)
    assert good.duration == pytest.approx(2.0) and good.deep and good.label == 0
    assert good.path == str(corpus.manifest.parent / "good_vp9.webm")
    assert good.size == os.path.getsize(good.path) and good.mtime == os.path.getmtime(good.path)
    assert good.dataset == str(corpus.manifest) and good.manifest == str(corpus.manifest)
    usable = usable_records(index, str(corpus.manifest))
    assert [os.path.basename(r.path) for r in usable] == ["good_vp9.webm", "good_vp8.webm", "good_mjpeg.mkv"]


def test_shallow_scan_misses_only_mid_stream_corruption(corpus, tmp_path):
    assert scan_cli(corpus, tmp_path / "index.json") == 0
    assert reasons(tmp_path / "index.json", corpus) == {**corpus.expected, "corrupt.webm": None}


def test_the_ffmpeg_decoders_read_h264(corpus, tmp_path):
    """The default CPU loader decodes with FFmpeg, which reads H.264: only DALI's own CPU decoder does not."""
    assert scan_cli(corpus, tmp_path / "index.json", "--deep", decoder="pyav") == 0
    assert reasons(tmp_path / "index.json", corpus) == {**corpus.expected, "h264.mp4": None}
    assert index_decoder(tmp_path / "index.json") == "pyav"


def test_nvdec_takes_h264_but_not_below_its_smallest_frame(corpus, tmp_path):
    """The test videos are smaller than NVDEC's minimum frame: refused for their size, not their codec."""
    assert scan_cli(corpus, tmp_path / "index.json", decoder="nvdec") == 0
    index = load_index(tmp_path / "index.json")
    h264 = next(r for r in index.values() if r.path.endswith("h264.mp4"))
    assert h264.reason == "codec_unsupported" and "h264 from 48 to 4096 pixels a side" in h264.detail


@pytest.mark.parametrize("codec, pix_fmt, size, limit", [
    ("h264", "yuv420p", (1920, 1080), None),
    ("h264", "yuv422p", (640, 360), "8-bit 4:2:0 H.264 only, this is yuv422p"),
    ("h264", "yuv420p10le", (640, 360), "8-bit 4:2:0 H.264 only, this is yuv420p10le"),
    ("hevc", "yuv422p10le", (640, 360), "does not decode 4:2:2 (yuv422p10le)"),
    ("h264", "yuv420p", (5120, 2880), "h264 from 48 to 4096 pixels a side, this is 5120x2880"),
    ("vp9", "yuv420p", (96, 96), "vp9 from 128 to 8192 pixels a side, this is 96x96"),
    ("hevc", "yuv444p", (7680, 4320), None),
])
def test_nvdec_limits_from_chroma_depth_and_size(codec, pix_fmt, size, limit):
    probe = FileProbe("v", 1, 0.0, False, codec=codec, width=size[0], height=size[1], frames=10, pix_fmt=pix_fmt)
    got = nvdec_limit(probe)
    assert got is None if limit is None else limit in got


def test_rescan_probes_only_changed_files(tmp_path, capsys):
    a, b = write_video(tmp_path / "a.webm"), write_video(tmp_path / "b.webm", frames=24)
    manifest = tmp_path / "m.txt"
    manifest.write_text("a.webm 0\nb.webm 1\n")
    out = tmp_path / "index.json"
    args = ["scan", str(manifest), "--decoder", "dali", "--deep", "--out", str(out), "--workers", "1"]
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"2 files, 2 probed, 0 from cache -> {out}{FOR_DALI}"
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"2 files, 0 probed, 2 from cache -> {out}{FOR_DALI}"

    # Replace b by a video of the same size that is really different, and give it b's old mtime: the cache
    # cannot tell, so the stale record stays (proof that the file was not read again) ...
    stat = os.stat(b)
    data = bytearray(write_video(tmp_path / "c.webm", frames=24, width=48).read_bytes())
    b.write_bytes(bytes(data[:stat.st_size]) + bytes(max(0, stat.st_size - len(data))))
    os.utime(b, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("2 files, 0 probed")
    assert load_index(out)[record_key(manifest, 1)].width == 32
    # ... and a new mtime makes the scan probe b again, and only b.
    os.utime(b, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"2 files, 1 probed, 1 from cache -> {out}{FOR_DALI}"
    assert load_index(out)[record_key(manifest, 1)].width == 48


def test_deep_scan_does_not_trust_shallow_cache(corpus, tmp_path, capsys):
    out = tmp_path / "index.json"
    assert scan_cli(corpus, out) == 0
    assert scan_cli(corpus, out, "--deep") == 0
    assert reasons(out, corpus)["corrupt.webm"] == "corrupt"
    assert scan_cli(corpus, out) == 0  # a shallow scan keeps what the deep one found
    assert reasons(out, corpus)["corrupt.webm"] == "corrupt"
    # Only the missing file is looked for again: a missing file has nothing to cache.
    assert capsys.readouterr().out.splitlines()[-1] == f"15 files, 1 probed, 14 from cache -> {out}{FOR_DALI}"


def test_malformed_manifest_is_one_line_error_and_keeps_the_index(tmp_path, capsys):
    manifest = tmp_path / "bad.txt"
    manifest.write_text("a.webm 0\nb.webm zero\n")
    out = tmp_path / "index.json"
    out.write_text("previous index\n")
    assert main(["scan", str(manifest), "--decoder", "dali", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"dalitrain scan: error: {manifest}:2: label 'zero' is not an integer\n"
    assert out.read_text() == "previous index\n"


def test_missing_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["scan", "--decoder", "dali", "--out", str(tmp_path / "i.json")]) == 2
    assert "nothing to scan" in capsys.readouterr().err
    (tmp_path / "m.txt").write_text("a.webm 0\n")
    (tmp_path / "taken").write_text("a file where the index's folder should be\n")
    out = tmp_path / "taken" / "index.json"
    assert main(["scan", str(tmp_path / "m.txt"), "--decoder", "dali", "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"dalitrain scan: error: {out}: cannot write the scan index "
                                                    "(File exists)"]


def test_damaged_index(tmp_path, capsys):
    bad = tmp_path / "index.json"
    bad.write_text('{"format": "dalitrain-scan-index", "version": 1, "records": [{"path": "x"}]}')
    with pytest.raises(ScanIndexError, match=f"^{bad}: damaged scan index, record 0: .*missing"):
        load_index(bad)
    bad.write_text("{not json")
    with pytest.raises(ScanIndexError, match=f"^{bad}: damaged scan index, not JSON"):
        load_index(bad)
    with pytest.raises(ScanIndexError, match="scan index not found"):
        load_index(tmp_path / "none.json")
    # A scan over a damaged index warns in one line, probes afresh and replaces it.
    write_video(tmp_path / "a.webm")
    (tmp_path / "m.txt").write_text("a.webm 0\n")
    assert main(["scan", str(tmp_path / "m.txt"), "--decoder", "dali", "--out", str(bad)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(f"dalitrain scan: warning: {bad}: damaged scan index")
    assert len(captured.err.splitlines()) == 1
    assert json.loads(bad.read_text())["records"][0]["ok"] is True


def test_config_gives_datasets_roots_and_clip_lengths(tmp_path, capsys):
    # Two datasets share one folder of videos: 8 and 20 frames. Clip sampling needs num_frames * stride = 12
    # frames, uniform sampling num_frames = 4; labels must be below each dataset's class count.
    videos = tmp_path / "corpus" / "videos"
    videos.mkdir(parents=True)
    write_video(videos / "short.webm", frames=8)
    write_video(videos / "long.webm", frames=20)
    (tmp_path / "corpus" / "train.txt").write_text("short.webm 0\nlong.webm 2\n")
    (tmp_path / "corpus" / "val.txt").write_text("long.webm 1\n")
    config = tmp_path / "exp.yaml"
    config.write_text(f"""
data:
  base_dir: {tmp_path / "corpus"}
  num_frames: 4
  stride: 3
  device: cpu
  datasets:
    - {{name: clips, manifest: train.txt, val_manifest: val.txt, root: videos, num_classes: 2, sampling: clip}}
    - {{name: uniform, manifest: train.txt, root: videos, num_classes: 3, sampling: uniform}}
""")
    out = tmp_path / "index.json"
    assert main(["scan", "--config", str(config), "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        "clips: 1 ok, 2 quarantined (label_out_of_range: 1, too_short: 1)",
        "uniform: 2 ok, 0 quarantined",
    ]
    index = load_index(out)
    assert [r.row for r in usable_records(index, "clips", tmp_path / "corpus" / "val.txt")] == [0]
    assert [r.row for r in usable_records(index, "uniform")] == [0, 1]
    assert main(["scan", "--config", str(config), str(config), "--out", str(out)]) == 2
    assert "not both" in capsys.readouterr().err


def test_a_variable_frame_rate_file_is_recorded_and_counted(tmp_path):
    from dalitrain.data.scan import ScanTarget, scan, summary_line
    from tests.data.coded import coded_frames, write_vfr_vp9, write_vp9
    write_vfr_vp9(tmp_path / "vfr.webm", coded_frames(8), [0, 40, 80, 200, 240, 260, 280, 400])
    write_vp9(tmp_path / "cfr.webm", coded_frames(8))
    (tmp_path / "list.txt").write_text("vfr.webm 0\ncfr.webm 0\n")
    records, _ = scan([ScanTarget("ds", tmp_path / "list.txt", tmp_path, None, 1)], "pyav", deep=False, workers=1)
    assert [(Path(r.path).name, r.ok, r.vfr) for r in records] == [("vfr.webm", True, True), ("cfr.webm", True, False)]
    assert summary_line("ds", records, "pyav") == (
        "ds: 2 ok, 0 quarantined; 1 at a variable frame rate (PyAV samples them by presentation time)")


def test_deep_scan_finds_damage_that_ffmpeg_conceals(tmp_path):
    """2 kB overwritten inside a VP9 stream: FFmpeg's decoder (PyAV's, torchcodec's, DALI's CPU decoder) returns
    every frame with no error, garbage from the damaged one on; --deep names the damaged frame."""
    path = write_video(tmp_path / "concealed.webm", frames=30, width=96, height=96)
    data = bytearray(path.read_bytes())
    at = int(0.3 * len(data))
    data[at:at + 2048] = np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with av.open(str(path)) as container:
        packets = list(container.demux(container.streams.video[0]))
        damaged = next(i for i, p in enumerate(packets) if p.pos is not None and p.pos + p.size > at)
    with av.open(str(path)) as container:  # concealed: all frames, no error
        assert sum(1 for _ in container.decode(container.streams.video[0])) == 30
    assert _dali_cpu_frames(path) == 30  # by DALI's CPU decoder too
    assert probe_file(str(path), deep=False).fault is None
    probe = probe_file(str(path), deep=True)
    assert (probe.fault, probe.detail.split(":")[0]) == ("corrupt", f"decoding failed at frame {damaged}")
    assert 0 < damaged < 29


def _dali_cpu_frames(path) -> int:
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def decode():
        return fn.decoders.video(fn.external_source(name="encoded", dtype=types.UINT8, ndim=1), device="cpu")

    pipe = decode()
    pipe.build()
    pipe.feed_input("encoded", [np.fromfile(path, dtype=np.uint8)])
    return pipe.run()[0].as_array().shape[1]


# Expected verdicts from NVIDIA's "NVDEC Hardware Capabilities" table (Video Codec SDK 13.0, NVDEC application note):
# AV1 Main profile: GA10x and Ada, Blackwell; not Turing, GA100 or Hopper. HEVC 4:4:4: Turing and later.
@pytest.mark.parametrize("codec, pix_fmt, arch, refused", [
    ("av1", "yuv420p", 75, True), ("av1", "yuv420p", 80, True), ("av1", "yuv420p", 90, True),
    ("av1", "yuv420p", 86, False), ("av1", "yuv420p", 89, False), ("av1", "yuv420p", 100, False),
    ("av1", "yuv420p", 120, False), ("av1", "yuv420p", None, False),
    ("hevc", "yuv444p", 70, True), ("hevc", "yuv444p", 75, False), ("hevc", "yuv420p", 70, False),
    ("h264", "yuv420p", 70, False),
])
def test_nvdec_limits_from_the_gpu_generation(codec, pix_fmt, arch, refused):
    probe = FileProbe("v", 1, 0.0, False, codec=codec, width=640, height=360, frames=10, pix_fmt=pix_fmt)
    got = nvdec_limit(probe, arch)
    assert (got is not None) == refused
    assert got is None or f"NVDEC on sm_{arch} does not decode" in got


def test_an_av1_file_is_refused_for_an_a100_and_kept_for_an_l4(tmp_path, capsys):
    video = write_video(tmp_path / "av1.mkv", "libsvtav1", frames=6, width=128, height=128)
    assert probe_file(str(video), deep=False).codec == "av1"  # the codec, not FFmpeg's decoder (libdav1d)
    manifest = tmp_path / "m.txt"
    manifest.write_text("av1.mkv 0\n")
    for arch, verdict in ((80, "codec_unsupported"), (89, None)):
        out = tmp_path / f"index{arch}.json"
        assert main(["scan", str(manifest), "--decoder", "nvdec", "--gpu-arch", str(arch), "--out", str(out)]) == 0
        (record,) = load_index(out).values()
        assert record.reason == verdict
        assert json.loads(out.read_text())["gpu_arch"] == arch
        assert capsys.readouterr().out.splitlines()[-1].endswith(f"(verdicts for the nvdec decoder on sm_{arch})")
    assert "NVDEC on sm_80 does not decode AV1" in load_index(tmp_path / "index80.json").popitem()[1].detail


def test_gpu_arch_is_refused_for_a_cpu_decoder(tmp_path, capsys):
    (tmp_path / "m.txt").write_text("")
    out = tmp_path / "index.json"
    assert main(["scan", str(tmp_path / "m.txt"), "--decoder", "pyav", "--gpu-arch", "80", "--out", str(out)]) == 2
    assert "--gpu-arch is for --decoder nvdec; the verdicts are for pyav" in capsys.readouterr().err
    assert not out.exists()
