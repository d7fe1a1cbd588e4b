"""The pipeline benchmark compares like with like: every peer decodes the same frames of the same clips."""
import numpy as np
import pytest

from dalitrain.benchmarks import bench_pipeline as bench
from dalitrain.pipelines.decode import decode_pyav


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    videos = bench.stand_in_corpus(1, tmp_path_factory.mktemp("bench"))
    return bench.clip_schedule(videos, 3, seed=1)


def test_stand_in_corpus_has_the_bench_properties(clips):
    info = bench.probe_video(clips[0][0])
    assert (info.codec, info.width, info.height, info.frames, info.fps) == ("vp9", 320, 256, 250, 25.0)
    for _, frames in clips:
        assert np.all(np.diff(frames) == bench.STRIDE) and len(frames) == bench.NUM_FRAMES and frames[-1] < 250


@pytest.mark.parametrize("peer, library", [("decode_pyslowfast", "pyav"), ("decode_decord", "decord")])
def test_peers_decode_the_same_frames_as_dalitrain(clips, peer, library):
    if bench.missing_library(library):
        pytest.skip(bench.missing_library(library))
    decode = getattr(bench, peer)
    for path, frames in clips:
        ours = decode_pyav(path, frames).astype(np.float32)
        theirs = decode(str(path), frames).astype(np.float32)
        assert theirs.shape == ours.shape
        # same frames (the scene pans 3-5 pixels a frame, so a frame off would differ by far more); colour
        # conversion may round differently
        assert np.abs(theirs - ours).mean() < 3


def test_peer_augmentation_gives_the_recipe_shape(clips):
    path, frames = clips[0]
    video = bench.torch_augment(decode_pyav(path, frames), np.random.default_rng(0))
    assert tuple(video.shape) == (3, bench.NUM_FRAMES, bench.CROP, bench.CROP)
    assert -2.5 < float(video.min()) and float(video.max()) < 2.5  # (x / 255 - 0.45) / 0.225
