"""The pipeline benchmark compares like with like: every peer and every ceiling decoder decodes the requested
frames of the same clips (read back from videos whose pixels code the frame index)."""
import numpy as np
import pytest

from dalitrain.benchmarks import bench_pipeline as bench
from tests.data.coded import coded_frames, frame_index, write_vp9

FRAMES = 30


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    return [write_vp9(folder / f"v{i}.webm", coded_frames(FRAMES), gop=10) for i in range(2)]


def test_corpus_videos_lists_a_folder_and_rejects_an_empty_one(videos, tmp_path):
    assert bench.corpus_videos(str(videos[0].parent)) == sorted(videos)
    with pytest.raises(SystemExit, match=f"{tmp_path}: no videos"):
        bench.corpus_videos(str(tmp_path))


def random_clips(videos, count: int, seed: int) -> list:
    """(path, 8 frame indices at stride 3) clips, as the loader's plan gives them."""
    rng = np.random.default_rng(seed)
    return [(str(videos[rng.integers(len(videos))]), int(rng.integers(0, FRAMES - 21)) + 3 * np.arange(8))
            for _ in range(count)]


def test_peers_take_the_clips_of_dalitrains_plan(videos, tmp_path):
    loader = bench.dalitrain_batches(videos, "pyav", cores=1, steps=2, workdir=tmp_path)
    clips = bench.loader_clips(loader)
    assert len(clips) == 2 * bench.BATCH and {path for path, _ in clips} <= {str(v.resolve()) for v in videos}
    planned = [s.frames for batch in loader.plan for s in batch]
    assert all(np.array_equal(frames, p) for (_, frames), p in zip(clips, planned))
    assert all(len(frames) == bench.NUM_FRAMES for _, frames in clips)


@pytest.mark.parametrize("library, decode", [("pyav", bench.decode_pyslowfast), ("decord", bench.decode_decord),
                                             *((name, fn) for name, fn in bench.CEILING_DECODERS.items())])
def test_peers_and_ceilings_decode_the_requested_frames(videos, library, decode):
    if bench.missing_library(library):
        pytest.skip(bench.missing_library(library))
    for path, frames in random_clips(videos, 4, seed=2):
        clip = decode(path, frames)
        assert clip.shape == (8, 48, 64, 3)
        assert np.array_equal(frame_index(clip.reshape(8, -1).mean(axis=1)), frames)


def test_ceiling_pool_decodes_every_timed_clip(videos):
    clips = random_clips(videos, 6, seed=3)
    rate = bench.ceiling_rate("pyav", clips, cores=2, warmup=1)
    assert rate.clips_per_s > 0 and rate.cpu_ms_per_clip > 0


def test_peer_augmentation_gives_the_recipe_shape(videos):
    clip = np.repeat(np.repeat(coded_frames(bench.NUM_FRAMES), 6, axis=1), 6, axis=2)  # 288x384 frames
    video = bench.torch_augment(clip, np.random.default_rng(0))
    assert tuple(video.shape) == (3, bench.NUM_FRAMES, bench.CROP, bench.CROP)
    assert -2.5 < float(video.min()) and float(video.max()) < 2.5  # (x / 255 - 0.45) / 0.225


def test_pipeline_chart_marks_the_ceiling_and_the_best_peer():
    from dalitrain.benchmarks.bench_pipeline import pipeline_chart
    records = [{"name": "dalitrain (pyav)", "kind": "dalitrain", "clips_per_s": 40.0},
               {"name": "PySlowFast (pyav)", "kind": "peer", "clips_per_s": 20.0},
               {"name": "MMAction2 (decord)", "kind": "peer", "clips_per_s": 25.0},
               {"name": "decode only (pyav)", "kind": "ceiling", "clips_per_s": 50.0},
               {"name": "dalitrain (pyav) + released augment", "kind": "augment", "clips_per_s": 30.0}]
    ax = pipeline_chart({"records": records, "default": "dalitrain (pyav)", "cores": 2}).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "dalitrain (pyav) (default)"
    assert labels[-1] == "dalitrain (pyav) + released augment [samples/s]"  # its batches count samples
    assert [p.get_height() for p in ax.patches] == [40.0, 20.0, 25.0, 50.0, 30.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["best decode-only ceiling: 50.00",
                                                                       "best peer: 25.00"]


def test_scaling_turns_cpu_cost_per_clip_into_cores_per_gpu(tmp_path):
    from dalitrain.benchmarks import pipeline_scaling as scaling
    rows = {"frames": [{"frames": 16, "cpu_ms_per_clip": 100.0}, {"frames": 32, "cpu_ms_per_clip": 200.0}],
            "resolution": [{"short_side": 256, "cpu_ms_per_clip": 100.0}, {"short_side": 480, "cpu_ms_per_clip": 300.0}]}
    gpu = tmp_path / "gpu.json"
    gpu.write_text('{"train.step": {"rows": [{"checkpointing": true, "clips_per_s": 20.0}, '
                   '{"checkpointing": false, "clips_per_s": 30.0}]}}')
    lines = scaling.cores_per_gpu({"rows": rows}, str(gpu))
    # 9.4 clips/s x 0.2 CPU s per 32-frame clip = 1.88 cores; 3x the CPU cost at 480p: 5.64
    assert lines[0] == ("cores per GPU to feed MViTv2-B 32x3 at MultiTrain's 9.4 clips/s per V100: 1.9 at 256p, "
                        "5.6 at 480p (source short side)")
    assert lines[1] == f"cores per GPU to feed MViTv2-S 16x4 at 30.0 clips/s ({gpu}): 3.0 at 256p"  # 30 x 0.1
    assert "pass --gpu-json F" in scaling.cores_per_gpu({"rows": rows}, None)[1]
    gpu.write_text("{}")
    with pytest.raises(SystemExit, match=f"^{gpu}: no train.step result"):
        scaling.cores_per_gpu({"rows": rows}, str(gpu))


def test_scaling_measures_every_row_on_a_transcoded_variant(videos, tmp_path, monkeypatch, capsys):
    from dalitrain.benchmarks import pipeline_scaling as scaling
    monkeypatch.setattr(scaling, "RECIPES", ((4, 2), (16, 4), (32, 1)))
    monkeypatch.setattr(scaling, "RESOLUTIONS", (48, 96))
    result = scaling.run(videos, cores=2, cache=tmp_path, warmup=1, measured=1, decoder="pyav")
    for side in (48, 96):
        variant = sorted((tmp_path / f"corpus-{side}p").rglob("*.webm"))
        assert len(variant) == 2 and bench.av.open(str(variant[0])).streams.video[0].height == side
    rows = result["rows"]
    assert [(r["frames"], r["short_side"]) for r in rows["frames"]] == [(4, 256), (16, 256), (32, 256)]
    assert [r["short_side"] for r in rows["resolution"]] == [48, 96]
    assert [r["workers"] for r in rows["workers"]] == [1, 2]
    assert all(r["cpu_ms_per_clip"] > 0 and r["clips_per_s"] > 0 for group in rows.values() for r in group)
    assert result["decoder"] == "pyav"
    scaling.print_table(result, ["line"])
    assert "resolution  16x4      96p" in capsys.readouterr().out
