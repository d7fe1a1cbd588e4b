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
