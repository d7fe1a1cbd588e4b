"""The loader end to end on tiny coded videos: frames, augmentation, eval views, bad files, resume."""
import dataclasses
import shutil
import threading

import numpy as np
import pytest
import torch

from dalitrain.config import AugmentConfig, DataConfig, DatasetConfig, EvalConfig
from dalitrain.data.scan import ScanIndexError, ScanTarget, scan, write_index
from dalitrain.pipelines import loader as loader_module
from dalitrain.pipelines.decode import torchcodec_available
from dalitrain.pipelines.loader import (SkippedFilesError, eval_loader, resolve_decoder, shard_from_env,
                                         train_loader)
from tests.data.coded import frame_index

MEAN, STD = 0.5, 0.25


def data_config(root, specs, names, **overrides):
    fields = dict(datasets=[DatasetConfig(**specs[n]) for n in names], base_dir=str(root), batch_size=4,
                  num_frames=4, stride=2, short_side=[48, 56], crop_size=32, device="cpu", decoder="pyav",
                  mean=[MEAN] * 3, std=[STD] * 3, max_skipped_fraction=0.5)
    fields.update(overrides)
    return DataConfig(**fields)


def write_scan_index(root, dataset: str, path, quarantine=(), decoder="pyav") -> None:
    """Scan one dataset of the corpus as `dalitrain scan` does; `quarantine` names videos to mark unreadable."""
    records, _ = scan([ScanTarget(dataset, root / f"{dataset}.txt", root / dataset, 2, 1)], decoder, deep=False,
                      workers=1)
    records = [dataclasses.replace(r, ok=False, reason="codec_unsupported") if r.path in quarantine else r
               for r in records]
    assert all(r.ok for r in records if r.path not in quarantine)
    write_index(path, records, decoder=decoder, deep=False)


def levels(video: torch.Tensor) -> np.ndarray:
    """[B, C, T, H, W] normalised -> [B, T] mean 0-255 level per frame."""
    return ((video.float() * STD + MEAN) * 255).mean(dim=(1, 3, 4)).numpy()


@pytest.mark.parametrize("decoder", ["pyav", "dali"] + (["torchcodec"] if torchcodec_available() else []))
def test_frames_match_the_plan_for_every_policy(corpus, decoder):
    root, specs = corpus
    data = data_config(root, specs, ["clipset", "ssv2", "trimmed"], decoder=decoder)
    loader = train_loader(data, seed=0)
    policies = {0: "clip", 1: "uniform", 2: "segment"}
    for step, batch in enumerate(loader):
        got = frame_index(levels(batch.video))
        for i, sample in enumerate(loader.plan[step]):
            assert got[i].tolist() == sample.frames.tolist()
            policy = policies[int(batch.dataset[i])]
            if policy == "clip":
                assert np.all(np.diff(got[i]) == 2)
            elif policy == "uniform":  # 30 frames in 4 segments of 7.5: one frame from each
                assert (got[i] // 7.5).astype(int).tolist() == [0, 1, 2, 3]
            else:
                assert 8 <= got[i].min() and got[i].max() < 20
    assert batch.video.shape == (4, 3, 4, 32, 32) and batch.video.dtype == torch.float32


def test_short_videos_pad_or_loop(corpus):
    root, specs = corpus
    for policy, expected in (("pad", [0, 7, 14, 21, 28, 29]), ("loop", [0, 7, 14, 21, 28, 5])):  # 30 frames
        data = data_config(root, specs, ["clipset"], num_frames=6, stride=7, short_video=policy, batch_size=2)
        batch = next(iter(eval_loader(data, EvalConfig(temporal_views=1, spatial_views=1, short_side=48,
                                                       batch_size=2))))
        assert frame_index(levels(batch.video)[0]).tolist() == expected


def test_crop_and_flip_are_identical_across_a_clips_frames(corpus):
    root, specs = corpus
    data = data_config(root, specs, ["ramps"], batch_size=4)
    for batch in train_loader(data, seed=1):
        video = batch.video.float()
        diff = video - video[:, :, :1]  # frame t minus frame 0 of the same clip
        # same crop and flip on every frame: the static ramp cancels, leaving a flat level change
        assert diff.std(dim=(3, 4)).max() < 0.05


@pytest.mark.parametrize("decoder", ["pyav"] + (["torchcodec"] if torchcodec_available() else []))
@pytest.mark.parametrize("short_side, crop", [([48, 56], 32), ([20, 24], 16)])  # upscaling and downscaling
def test_decoder_side_window_equals_the_graphs_crop_and_resize(corpus, decoder, short_side, crop):
    """The CPU decoders crop and scale in FFmpeg; with DALI's decoder the graph crops and resizes whole frames;
    both over the same box: the same plan must give the same pixels, up to the two scalers' interpolation."""
    root, specs = corpus
    batches = {name: list(train_loader(data_config(root, specs, ["ramps"], decoder=name, short_side=short_side,
                                                   crop_size=crop), seed=3))
               for name in (decoder, "dali")}
    assert not train_loader(data_config(root, specs, ["ramps"], decoder=decoder)).resize_in_graph
    for ours, theirs in zip(batches[decoder], batches["dali"]):
        assert ours.video.shape == theirs.video.shape == (4, 3, 4, crop, crop)
        error = (ours.video - theirs.video).abs().mean(dim=(1, 2, 3, 4)) * STD * 255  # per clip, in levels
        # a box one pixel off moves the 120-level ramp by ~2 levels; a wrong anchor or flip by tens
        assert error.max() < 2.5, error


@pytest.mark.parametrize("decoder, in_graph", [("pyav", False)] + ([("torchcodec", True)] if torchcodec_available()
                                                                    else []))
def test_a_bicubic_crop_is_scaled_where_bicubic_exists(corpus, decoder, in_graph):
    """FFmpeg's scale through PyAV has bicubic; torchcodec's Resize has not, so the graph crops its whole frames."""
    root, specs = corpus
    batches = {name: list(train_loader(data_config(root, specs, ["ramps"], decoder=name,
                                                   augment=AugmentConfig(interpolation="cubic")), seed=2))
               for name in (decoder, "dali")}
    assert train_loader(data_config(root, specs, ["ramps"], decoder=decoder,
                                    augment=AugmentConfig(interpolation="cubic"))).resize_in_graph == in_graph
    for ours, theirs in zip(batches[decoder], batches["dali"]):
        assert ((ours.video - theirs.video).abs().mean(dim=(1, 2, 3, 4)) * STD * 255).max() < 2.5


def test_a_randaugment_warp_reads_the_whole_frame_while_the_others_arrive_cropped(corpus, monkeypatch):
    """With the decoder cropping, a sample whose RandAugment draw rotates, shears or translates still gets whole
    frames (the graph folds the warp into the crop, reading beyond the window): the same pixels as with DALI's
    decoder, where the graph crops every sample."""
    root, specs = corpus
    fed = []
    real = loader_module.VideoLoader._feed_and_run

    def feed(self, pipe, step, samples, clips, *, encoded):
        fed.extend((self._warp(s, (0, 0, 1, 1)) is not None, None if encoded else clip.shape[1:3])
                   for s, clip in zip(samples, clips))
        return real(self, pipe, step, samples, clips, encoded=encoded)

    monkeypatch.setattr(loader_module.VideoLoader, "_feed_and_run", feed)
    augment = AugmentConfig(rand_augment="rand-m9-n2-mstd0.5-inc1")
    batches = {name: list(train_loader(data_config(root, specs, ["ramps"], decoder=name, augment=augment,
                                                   epoch_size=24), seed=3))
               for name in ("pyav", "dali")}
    pyav = fed[:len(fed) // 2]
    assert {warped for warped, _ in pyav} == {True, False}  # both kinds were drawn
    assert all(shape == ((48, 64) if warped else (32, 32)) for warped, shape in pyav)
    for ours, theirs in zip(batches["pyav"], batches["dali"]):
        error = (ours.video - theirs.video).abs().mean(dim=(1, 2, 3, 4)) * STD * 255  # per clip, in levels
        assert error.max() < 2.5, error


def test_a_clips_whole_frames_are_converted_once_however_many_of_its_samples_warp(corpus, monkeypatch):
    root, specs = corpus
    asked = []
    real = loader_module.DECODERS["pyav"]
    monkeypatch.setitem(loader_module.DECODERS, "pyav", lambda *args: asked.append(list(args[2])) or real(*args))
    augment = AugmentConfig(rand_augment="rand-m9-n4-mstd0.5-inc1")  # 4 layers: most draws warp
    loader = train_loader(data_config(root, specs, ["ramps"], num_samples=4, augment=augment, epoch_size=32),
                          seed=5)  # batches of 4: one clip's 4 samples
    batches = list(loader)
    warped = [sum(loader._whole_frames(s) for s in batch) for batch in loader.plan]
    assert max(warped) >= 2  # some clip had several warped samples
    # one decode per clip (in any order: the workers run in parallel): the cropped samples' windows, and None once
    expected = sorted((min(n, 1), 4 - n + min(n, 1)) for n in warped)
    assert sorted((windows.count(None), len(windows)) for windows in asked) == expected
    assert all(b.video.shape == (4, 3, 4, 32, 32) for b in batches)


def test_flip_only_where_the_dataset_allows_it(corpus):
    root, specs = corpus
    directions = {}
    for flip in (True, False):
        spec = {**specs["ramps"], "flip": flip}
        data = data_config(root, {"ramps": spec}, ["ramps"], batch_size=4)
        slopes = []
        for epoch in range(3):
            for batch in train_loader(data, seed=2, epoch=epoch):
                row = batch.video.float().mean(dim=(1, 2, 3))  # [B, W]
                slopes += torch.sign(row[:, -1] - row[:, 0]).tolist()
        directions[flip] = set(slopes)
    assert directions[False] == {1.0}  # the ramp always rises left to right
    assert directions[True] == {1.0, -1.0}


def test_eval_views_share_the_video_index_and_cover_each_video_once(corpus):
    root, specs = corpus
    data = data_config(root, specs, ["clipset", "ssv2"])
    views = {}
    for shard in range(2):
        loader = eval_loader(data, EvalConfig(temporal_views=2, spatial_views=3, short_side=48, batch_size=5),
                             shard_id=shard, num_shards=2)
        for batch in loader:
            for d, i, ok in zip(batch.dataset.tolist(), batch.index.tolist(), batch.valid.tolist()):
                if ok:
                    views[(d, i)] = views.get((d, i), 0) + 1
    assert views == {(d, i): 6 for d, n in ((0, 5), (1, 3)) for i in range(n)}


def test_an_eval_clips_spatial_views_share_one_decode(corpus, monkeypatch):
    root, specs = corpus
    calls = []
    real = loader_module.DECODERS["pyav"]
    monkeypatch.setitem(loader_module.DECODERS, "pyav", lambda *args: calls.append(len(args[2])) or real(*args))
    loader = eval_loader(data_config(root, specs, ["ramps"]), EvalConfig(temporal_views=2, spatial_views=3,
                                                                         short_side=48, batch_size=6))
    batches = list(loader)
    assert sum(calls) == sum(len(b.label) for b in batches) == 4 * 2 * 3  # a window per view
    assert len(calls) == 4 * 2  # a decode per (video, temporal view): batches of 6 hold whole clips
    for batch in batches:  # the three spatial views of a clip: same frames, different crops of the ramp
        assert not torch.equal(batch.video[0], batch.video[1])


def test_resume_at_a_step_replays_the_same_batches(corpus):
    root, specs = corpus
    data = data_config(root, specs, ["clipset", "ramps"], batch_size=3)
    full = list(train_loader(data, seed=4, epoch=1))
    resumed = list(train_loader(data, seed=4, epoch=1, start_step=1))
    assert len(resumed) == len(full) - 1
    for a, b in zip(full[1:], resumed):
        assert torch.equal(a.video, b.video) and torch.equal(a.index, b.index)


RELEASED = AugmentConfig(crop="resized", color_jitter=0.4, rand_augment="rand-m7-n4-mstd0.5-inc1", erase_prob=0.5)


@pytest.mark.parametrize("decoder", ["pyav", "dali"])
def test_resume_replays_repeated_and_augmented_batches_exactly(corpus, decoder):
    root, specs = corpus
    data = data_config(root, specs, ["clipset", "ramps"], batch_size=4, num_samples=2, augment=RELEASED,
                       decoder=decoder)
    full = list(train_loader(data, seed=4, epoch=1))
    resumed = list(train_loader(data, seed=4, epoch=1, start_step=2))
    assert len(resumed) == len(full) - 2
    for a, b in zip(full[2:], resumed):
        assert torch.equal(a.video, b.video) and torch.equal(a.index, b.index)


def test_a_clips_repeated_samples_share_one_decode_but_not_their_augmentation(corpus, monkeypatch):
    root, specs = corpus
    calls = []
    real = loader_module.DECODERS["pyav"]
    monkeypatch.setitem(loader_module.DECODERS, "pyav", lambda *args: calls.append(args[0]) or real(*args))
    data = data_config(root, specs, ["clipset", "ramps"], batch_size=4, num_samples=2,
                       augment=AugmentConfig(crop="resized"))
    loader = train_loader(data, seed=1)
    assert not loader.resize_in_graph  # PyAV converts the one decode through each sample's window
    batches = list(loader)
    assert len(calls) == 2 * len(batches) == 9 + 1  # 9 videos in 5 batches of 2 clips (one clip pads)
    for step, batch in enumerate(batches):
        plan = loader.plan[step]
        assert torch.equal(batch.index[0::2], batch.index[1::2])
        for first in (0, 2):
            if plan[first].dataset == 0:  # flat-coded frames: the levels say which frame, whatever the crop
                got = frame_index(levels(batch.video[first:first + 2]))
                assert got[0].tolist() == got[1].tolist() == plan[first].frames.tolist()
            else:  # ramps: two crops of the same frames differ
                assert not torch.equal(batch.video[first], batch.video[first + 1])


@pytest.mark.parametrize("decoder", ["pyav", "dali"])  # caught per sample / DALI's pipeline dies and is rebuilt
def test_a_file_corrupted_mid_epoch_is_skipped_and_counted(corpus, tmp_path, decoder):
    root, specs = corpus
    shutil.copytree(root, tmp_path / "c")
    root = tmp_path / "c"
    videos = sorted((root / "clipset").glob("*.webm"))
    write_scan_index(root, "clipset", root / "scan.json", decoder=decoder)
    videos[2].write_bytes(b"\x1a\x45\xdf\xa3 not a video any more")  # broken after the scan
    data = data_config(root, specs, ["clipset"], scan_index=str(root / "scan.json"), batch_size=2, decoder=decoder)
    loader = train_loader(data, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) == 3 and all(len(b.label) == 2 for b in batches)
    assert loader.skipped == {"clipset": 1}
    assert str(videos[2]) in loader.quarantine
    strict = data_config(root, specs, ["clipset"], scan_index=str(root / "scan.json"), batch_size=2,
                         max_skipped_fraction=0.0, decoder=decoder)
    with pytest.raises(SkippedFilesError, match=r"^dataset clipset: 1 of 5 files failed to decode.*v2\.webm"):
        list(train_loader(strict, seed=0))


def test_an_index_made_for_another_decoder_is_refused_in_one_line(corpus, tmp_path):
    root, specs = corpus
    write_scan_index(root, "clipset", tmp_path / "scan.json", decoder="dali")  # DALI's CPU decoder: VP8/VP9/MJPEG
    data = data_config(root, specs, ["clipset"], scan_index=str(tmp_path / "scan.json"), decoder="pyav")
    with pytest.raises(ScanIndexError, match=r"scan.json: scan index made for the dali decoder, but the loader "
                                             r"decodes with pyav: rescan with `dalitrain scan --decoder pyav`"):
        train_loader(data)
    torchcodec_index = tmp_path / "tc.json"
    write_scan_index(root, "clipset", torchcodec_index, decoder="torchcodec")  # the same FFmpeg verdicts
    assert len(train_loader(data_config(root, specs, ["clipset"], scan_index=str(torchcodec_index)))) > 0


def test_every_rank_takes_the_same_steps(corpus):
    root, specs = corpus
    data = data_config(root, specs, ["clipset", "trimmed"], batch_size=2)  # 7 videos over 2 ranks x 2
    lengths = [len(train_loader(data, shard_id=r, num_shards=2)) for r in range(2)]
    assert lengths == [2, 2]


def test_scan_quarantine_is_honoured(corpus, tmp_path):
    root, specs = corpus
    write_scan_index(root, "clipset", tmp_path / "scan.json", quarantine={str(root / "clipset" / "v1.webm")})
    data = data_config(root, specs, ["clipset"], scan_index=str(tmp_path / "scan.json"))
    seen = {int(i) for b in train_loader(data) for i, ok in zip(b.index, b.valid) if ok}
    assert seen == {0, 2, 3, 4}


def test_shard_comes_from_the_torchrun_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert shard_from_env() == (3, 4)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert shard_from_env() == (0, 1)


def test_each_rank_places_its_dali_graph_on_its_own_gpu_with_its_own_seed(corpus, monkeypatch):
    """Under torchrun, rank r's graph runs on LOCAL_RANK's GPU (not GPU 0) and draws its own augmentations.
    Nothing here touches CUDA: the loader is only asked where its graph would go."""
    root, specs = corpus
    data = data_config(root, specs, ["clipset"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    placements = {(shard, epoch): train_loader(data, seed=3, shard_id=shard, num_shards=2, epoch=epoch,
                                               device="gpu", device_id=shard).pipeline_placement()
                  for shard in (0, 1) for epoch in (0, 1)}
    assert [placements[(shard, 0)]["device_id"] for shard in (0, 1)] == [0, 1]
    seeds = [p["seed"] for p in placements.values()]
    assert len(set(seeds)) == 4 and all(0 <= s < 2**31 for s in seeds)
    monkeypatch.undo()
    cpu = train_loader(data, seed=3, shard_id=1, num_shards=2, device="cpu", device_id=1).pipeline_placement()
    assert cpu == {"device_id": None, "seed": placements[(1, 0)]["seed"]}


@pytest.mark.parametrize("name, device, expected", [
    ("default", "gpu", "nvdec"), ("pyav", "gpu", "pyav"), ("dali", "gpu", "nvdec"), ("nvdec", "gpu", "nvdec"),
    ("pyav", "cpu", "pyav"), ("dali", "cpu", "dali"),
])
def test_the_configured_decoder_is_honoured_on_the_gpu_too(name, device, expected):
    """A GPU run may decode on the CPU (codecs NVDEC lacks) and still augment on the GPU."""
    assert resolve_decoder(name, device) == expected


def test_the_default_decoder_shares_one_decode_among_a_clips_samples(monkeypatch):
    """torchcodec, first when it loads, decodes once per window: with several samples per clip PyAV goes first."""
    monkeypatch.setattr(loader_module, "torchcodec_available", lambda: True)
    monkeypatch.setattr(loader_module, "_torchcodec_usable", lambda: True)
    assert resolve_decoder("default", "cpu") == "torchcodec"
    assert resolve_decoder("default", "cpu", views_per_clip=2) == "pyav"
    assert resolve_decoder("torchcodec", "cpu", views_per_clip=2) == "torchcodec"  # asked for by name
    assert resolve_decoder("default", "gpu", views_per_clip=3) == "nvdec"
    monkeypatch.setattr(loader_module, "_torchcodec_usable", lambda: False)
    assert resolve_decoder("default", "cpu") == resolve_decoder("default", "cpu", views_per_clip=3) == "pyav"


def test_nvdec_on_the_cpu_and_an_unknown_decoder_are_one_line_errors():
    with pytest.raises(ValueError, match="^data.decoder: nvdec decodes on the GPU"):
        resolve_decoder("nvdec", "cpu")
    with pytest.raises(ValueError, match="^data.decoder: unknown decoder 'ffmpeg'"):
        resolve_decoder("ffmpeg", "gpu")


def test_a_torchcodec_whose_crop_interface_changed_is_passed_over_for_pyav_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(loader_module, "torchcodec_available", lambda: True)
    monkeypatch.setattr(loader_module, "torchcodec_window_problem",
                        lambda: "its DecoderTransform interface changed (_make_transform_spec('self',) -> '')")
    monkeypatch.setattr(loader_module.importlib.metadata, "version", lambda name: "0.99.0")
    loader_module._torchcodec_usable.cache_clear()
    try:
        assert resolve_decoder("default", "cpu") == resolve_decoder("torchcodec", "cpu") == "pyav"
    finally:
        loader_module._torchcodec_usable.cache_clear()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["torchcodec 0.99.0: its DecoderTransform interface changed (_make_transform_spec('self',) "
                        "-> ''); decoding with PyAV instead"]


def test_a_decode_that_hangs_is_abandoned_and_its_file_quarantined(corpus, monkeypatch):
    """A decoder that never returns on one file: the epoch completes with that sample replaced."""
    import dalitrain.pipelines.loader as loader_module
    root, specs = corpus
    hanging = str(root / "clipset" / "v1.webm")
    real = loader_module.DECODERS["pyav"]

    def decode(path, frames, windows, interpolation):
        if str(path) == hanging:
            threading.Event().wait()  # forever
        return real(path, frames, windows, interpolation)

    monkeypatch.setitem(loader_module.DECODERS, "pyav", decode)
    data = data_config(root, specs, ["clipset"], batch_size=2, decode_timeout_s=1.0)
    loader = train_loader(data, seed=0)
    batches = list(loader)
    assert len(batches) == len(loader) and all(len(b.label) == 2 for b in batches)
    assert "did not finish within 1.0 s" in loader.quarantine[hanging]
    assert loader.skipped == {"clipset": 1}


def test_a_batch_the_graphs_decoder_rejects_but_pyav_reads_is_decoded_on_the_cpu(corpus, monkeypatch, caplog):
    """As NVDEC on a profile it lacks: the in-graph decode fails although every file is fine. The batch is
    augmented from PyAV's frames (the planned ones), nothing is quarantined and the epoch completes."""
    from dalitrain.pipelines.loader import VideoLoader
    root, specs = corpus
    real = VideoLoader._feed_and_run
    failures = []

    def graph_decoder_fails_once(self, pipe, step, samples, clips, *, encoded):
        if encoded and not failures:
            failures.append(True)
            raise RuntimeError("Assert on \"nvdec_supported\" failed: codec profile not supported")
        return real(self, pipe, step, samples, clips, encoded=encoded)

    monkeypatch.setattr(VideoLoader, "_feed_and_run", graph_decoder_fails_once)
    data = data_config(root, specs, ["clipset"], decoder="dali", batch_size=2)
    loader = train_loader(data, seed=0)
    batches = list(loader)
    assert failures and len(batches) == len(loader) and not loader.quarantine and loader.fallback_batches == 1
    assert frame_index(levels(batches[0].video))[0].tolist() == loader.plan[0][0].frames.tolist()
    assert "decoded on the CPU" in caplog.text
