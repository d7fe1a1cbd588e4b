"""The loader the engine iterates: sampling plan -> decode -> DALI graph -> `Batch` of torch tensors.

    loader = train_loader(cfg.data, shard_id=rank, num_shards=world, seed=cfg.train.seed, epoch=e, start_step=k,
                          device="gpu", device_id=local_rank)  # the DALI graph on this rank's GPU
    for batch in loader: ...          # len(loader) steps per epoch on every rank; the first epoch starts at k
    loader.skipped                    # {dataset name: files that failed to decode this epoch}
    loader.set_epoch(e + 1)           # re-plans in place (a new loader per epoch works as well)
    shard_from_env()                  # (rank, world size) under torchrun, for shard_id / num_shards

Determinism: everything a batch holds follows from (seed, epoch), so a run resumed with `start_step=k` gets
the same batches k, k+1, ... as the uninterrupted run (iterating again without set_epoch replays the epoch): every
random augmentation is drawn by the plan (dalitrain/data/augment.py), the erased boxes' noise from a generator of
(seed, epoch, rank, position). One exception: a file that failed before the resume point is only quarantined again
when it is met again.

Stages, each inside an NVTX range (`dalitrain.decode`, `dalitrain.dali`, `dalitrain.to_torch`):
1. the plan (dalitrain/data/sampling.py) fixes every sample of the epoch from (seed, epoch);
2. on the CPU, a thread pool decodes the next batches' clips (dalitrain.pipelines.decode, the fastest measured
   strategy by default; FFmpeg crops and scales each sample's window before converting colours) while DALI
   augments the current one; with NVDEC (the GPU's default) or `decoder: dali`, the pool only reads the files'
   bytes and the graph decodes; on a GPU with `decoder: pyav|torchcodec`, the CPU decodes and the graph augments
   on the GPU. Samples of the same clip (repeated augmentation's `data.num_samples` k, adjacent in the batch, and
   an evaluation's spatial views) share one decode, each converted through its own window;
3. the DALI graph (dalitrain.pipelines.graph) crops and resizes (unless the decoder did), runs `data.augment`'s
   ops, flips and normalises;
4. its output is copied into (pinned, with CUDA) torch tensors, on the current CUDA stream.
Steps 2-4 of batch k + 1 run in a background thread while the consumer trains on batch k.

Localisation samples (AVA) carry their keyframe's person boxes: each sample's boxes go through the crop window
and flip its plan gave the graph (dalitrain.data.boxes), with the box jitter drawn from a generator of (seed, epoch,
rank, position in the epoch), so a resumed run draws the same; the batch collates them into `boxes` and
`box_labels`.

Bad files: a file that fails to decode is quarantined for the rest of the run and its sample is replaced by
another video of the same dataset (chosen deterministically from the sample's position), so batch sizes and the
epoch's length never change. With in-loader decoding a failure is just a caught exception; when the graph
decodes, DALI's error ends the pipeline, so the loader finds the culprit with PyAV, rebuilds the pipeline and
re-runs the batch; when PyAV reads every file of the batch (a stream the graph's decoder cannot take, such as a
profile NVDEC lacks), that batch is augmented from PyAV's frames instead and nothing is quarantined. A decode past
`decode_timeout_s` counts as a failure (dalitrain.pipelines.workers). More than `max_skipped_fraction` of a dataset
failing in one epoch aborts with one line.
"""
from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import nvtx
import torch
from nvidia.dali.plugin.pytorch import feed_ndarray

from dalitrain.config import DataConfig, EvalConfig
from dalitrain.data.batch import Batch
from dalitrain.data.augment import RandAugmentSpec, ResizedCrop, erase_fill, geometry, pointwise
from dalitrain.data.boxes import batch_boxes, boxes_in_clip
from dalitrain.data.records import load_records
from dalitrain.data.sampling import (ClipRecipe, DatasetRecords, Sample, eval_plan, replacement_video,
                                     sample_frames, train_plan)
from dalitrain.errors import DalitrainError, UsageError
from dalitrain.pipelines.decode import (DECODERS, SHARED_DECODE, WINDOW_INTERPOLATIONS, DecodeError, Window,
                                        decode_pyav, torchcodec_available, torchcodec_window_problem)
from dalitrain.pipelines.graph import clip_pipeline
from dalitrain.pipelines.workers import DecodeWorkers

log = logging.getLogger(__name__)

# CPU strategies, fastest first as `dalitrain bench pipeline` measures them (README, Benchmarks); "default" takes
# the first available. PyAV stays the fallback because it is a runtime dependency, while torchcodec needs the
# system FFmpeg libraries (the `bench` extra).
CPU_DECODERS = ("torchcodec", "pyav", "dali")
PREFETCH = 2  # batches being decoded ahead of the one DALI augments


class SkippedFilesError(DalitrainError, RuntimeError):
    """Too many files of one dataset failed in one epoch."""


def shard_from_env() -> tuple[int, int]:
    """(shard_id, num_shards) from torchrun's RANK / WORLD_SIZE (0, 1 outside torchrun)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def resolve_device(requested: str, configured: str) -> str:
    device = requested if requested != "auto" else configured
    if device == "auto":
        device = "gpu" if torch.cuda.is_available() else "cpu"
    if device == "gpu" and not torch.cuda.is_available():
        raise RuntimeError("data.device is gpu but CUDA is not available")
    return device


def resolve_decoder(name: str, device: str, views_per_clip: int = 1) -> str:
    """The decode strategy. `default`: NVDEC in the graph on the GPU, the fastest measured CPU decoder on the CPU;
    when one decode feeds several samples (`views_per_clip`: repeated augmentation, spatial views), the fastest that
    converts one decode through each sample's window (decode.SHARED_DECODE: torchcodec would decode once per window
    or leave the resize to DALI). On the GPU, `pyav` or `torchcodec` decode on the CPU and the graph augments on the
    GPU (for codecs NVDEC does not read, or when the CPU decoders keep up); `dali` there is DALI's GPU decoder,
    NVDEC."""
    if name == "default":
        if device == "gpu":
            return "nvdec"
        usable = [d for d in CPU_DECODERS if d != "torchcodec" or _torchcodec_usable()]
        if views_per_clip > 1:
            usable.sort(key=lambda d: d not in SHARED_DECODE)  # stable: the measured order within each group
        return usable[0]
    if name == "nvdec":
        if device != "gpu":
            raise UsageError("data.decoder: nvdec decodes on the GPU, but the loader runs on the CPU "
                             "(data.device: cpu, or no CUDA here)")
        return name
    if name not in CPU_DECODERS:
        raise UsageError(f"data.decoder: unknown decoder {name!r} (known: default, nvdec, {', '.join(CPU_DECODERS)})")
    if name == "torchcodec" and not torchcodec_available():
        raise RuntimeError("data.decoder: torchcodec cannot load (it needs the system FFmpeg libraries)")
    if name == "torchcodec" and not _torchcodec_usable():
        return "pyav"
    return "nvdec" if name == "dali" and device == "gpu" else name


@functools.cache
def _torchcodec_usable() -> bool:
    """torchcodec loads and can crop as the loader asks; a torchcodec release whose crop interface changed is
    passed over for PyAV with one warning line per process."""
    if not torchcodec_available():
        return False
    problem = torchcodec_window_problem()
    if problem:
        log.warning("torchcodec %s: %s; decoding with PyAV instead", importlib.metadata.version("torchcodec"), problem)
    return problem is None


class VideoLoader:
    """Iterates one rank's batches of one epoch; see the module docstring."""

    def __init__(self, data: DataConfig, datasets: list[DatasetRecords], plan_fn, *, training: bool,
                 batch_size: int, seed: int, epoch: int, start_step: int, device: str, device_id: int = 0,
                 shard_id: int = 0, views_per_clip: int = 1):
        self.data, self.datasets, self.plan_fn = data, datasets, plan_fn
        self.training, self.batch_size, self.seed = training, batch_size, seed
        self.device = resolve_device(device, data.device)
        self.device_id, self.shard_id = device_id, shard_id
        self.decoder = resolve_decoder(data.decoder, self.device, views_per_clip)
        self.decode_in_graph = self.decoder in ("dali", "nvdec")
        self.repeats = data.num_samples if training else 1  # adjacent samples sharing one decoded clip
        augment = data.augment
        # the decoder crops and scales unless it lacks the interpolation, or its repeated samples would each cost
        # a decode (torchcodec): then one decode of whole frames feeds them all and the graph crops
        self.resize_in_graph = (augment.interpolation not in WINDOW_INTERPOLATIONS.get(self.decoder, ())
                                or (self.repeats > 1 and self.decoder not in SHARED_DECODE))
        # the training-only ops the graph has, and so the inputs this loader feeds it
        self.graph_ops = {"interpolation": augment.interpolation, "color": training and bool(augment.color_jitter),
                          "rand_augment_layers": 0, "erase": training and bool(augment.erase_prob)}
        if training and augment.rand_augment:
            self.graph_ops["rand_augment_layers"] = RandAugmentSpec.parse(augment.rand_augment).layers
        self.workers = DecodeWorkers(max(data.num_threads, 1), "dalitrain-decode")
        self.failed: list[set[int]] = [set() for _ in datasets]  # quarantined during this run, per dataset
        self.quarantine: dict[str, str] = {}  # path -> reason, for files that failed during this run
        self.pipe = None
        self.frames_pipe = None  # built on the first batch the graph's decoder fails on but PyAV reads
        self.fallback_batches = 0  # batches decoded on the CPU that way, this run
        self.set_epoch(epoch, start_step)

    # -- epochs ------------------------------------------------------------------------------------------

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Plan `epoch` (deterministic for (seed, epoch)); iteration starts at `start_step`."""
        with nvtx.annotate("dalitrain.plan", color="yellow"):
            self.epoch, self.start_step = epoch, start_step
            self.plan = self.plan_fn(self.seed, epoch)
            self.skipped = {d.name: 0 for d in self.datasets}

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[Batch]:
        # Decoding runs PREFETCH batches ahead, so the decode threads never wait for DALI or the consumer; and
        # one thread assembles batch k + 1 (collect, DALI graph, copy out) while the consumer trains on batch k,
        # since pipe.run() blocks its caller. Every DALI call of an epoch is made from that one thread.
        steps = range(self.start_step, len(self.plan))
        pending = {step: self._submit(self.plan[step]) for step in steps[:PREFETCH]}

        def assemble(step: int) -> Batch:
            with nvtx.annotate("dalitrain.decode", color="blue"):
                samples, clips = self._collect(step, self.plan[step], pending.pop(step))
            if step + PREFETCH < len(self.plan):
                pending[step + PREFETCH] = self._submit(self.plan[step + PREFETCH])
            return self._augment(step, samples, clips)

        with ThreadPoolExecutor(1, thread_name_prefix="dalitrain-assemble") as assembler:
            ahead = assembler.submit(assemble, steps[0]) if steps else None
            for step in steps:
                batch = ahead.result()
                if step + 1 < len(self.plan):
                    ahead = assembler.submit(assemble, step + 1)
                yield batch
        self.start_step = 0
        for d, count in self.skipped.items():
            if count:
                log.warning("epoch %d: dataset %s: skipped %d files that failed to decode", self.epoch, d, count)

    # -- decoding ----------------------------------------------------------------------------------------

    def _path(self, s: Sample) -> Path:
        return self.datasets[s.dataset].videos[s.video].path

    def _window(self, s: Sample) -> Window | ResizedCrop:
        """The sample's crop window: `.box(height, width)` gives it in source pixels."""
        if s.augment is not None and s.augment.resized_crop is not None:
            return s.augment.resized_crop
        return Window(s.short_side, s.crop_anchor, self.data.crop_size)

    def _load(self, clip: list[Sample]) -> list[np.ndarray]:
        """The decoded frames of each sample of one clip (the file's bytes when the graph decodes): one decode
        for all, each sample's window, or the whole frames (converted once) for the samples that need them."""
        path, frames = self._path(clip[0]), clip[0].frames
        if self.decode_in_graph:
            return [np.fromfile(path, dtype=np.uint8)] * len(clip)
        windows = [None if self._whole_frames(s) else self._window(s) for s in clip]
        asked = [w for w in windows if w is not None] + ([None] if None in windows else [])
        decoded = DECODERS[self.decoder](path, frames, asked, self.data.augment.interpolation)
        cropped = iter(decoded)
        return [decoded[-1] if w is None else next(cropped) for w in windows]

    def _whole_frames(self, s: Sample) -> bool:
        """Whether sample s reaches the graph as whole frames: the graph crops every sample, or s's RandAugment
        draw rotates, shears or translates, which the graph folds into the crop (reading beyond the window)."""
        return self.resize_in_graph or (self.graph_ops["rand_augment_layers"] > 0 and
                                        geometry(s.augment.ops, s.augment.values, self.data.crop_size) is not None)

    def _submit(self, samples: list[Sample]) -> list[tuple[Future, int]]:
        """One decode per distinct clip: a clip's repeated samples (and an evaluation's spatial views) share it.
        Sample i's frames are item `view` of its future's result."""
        clips: dict = {}
        for i, s in enumerate(samples):
            clips.setdefault((s.dataset, s.video, s.frames.tobytes()), []).append(i)
        pending: list = [None] * len(samples)
        for members in clips.values():
            future = self.workers.submit(self._load, [samples[i] for i in members])
            for view, i in enumerate(members):
                pending[i] = (future, view)
        return pending

    def _collect(self, step: int, samples: list[Sample], pending: list[tuple[Future, int]]
                 ) -> tuple[list[Sample], list]:
        """The batch's decoded clips, with failed or quarantined videos replaced by playable ones."""
        samples, clips = list(samples), []
        timeout = self.data.decode_timeout_s
        for i, (future, view) in enumerate(pending):
            try:
                clip = (self.workers.result(future, timeout, str(self._path(samples[i])))[view]
                        if samples[i].video not in self.failed[samples[i].dataset] else None)
            except (DecodeError, OSError) as err:  # DecodeTimeout included
                self._quarantine(samples[i], str(err))
                clip = None
            while clip is None:
                samples[i] = self._replacement(samples[i], step, i)
                try:
                    clip = self.workers.result(self.workers.submit(self._load, [samples[i]]), timeout,
                                               str(self._path(samples[i])))[0]
                except (DecodeError, OSError) as err:
                    self._quarantine(samples[i], str(err))
            clips.append(clip)
        return samples, clips

    def _quarantine(self, s: Sample, reason: str) -> None:
        ds = self.datasets[s.dataset]
        if s.video in self.failed[s.dataset]:  # the same file twice in one batch counts once
            return
        self.failed[s.dataset].add(s.video)
        self.quarantine[str(self._path(s))] = reason
        self.skipped[ds.name] += 1
        log.warning("quarantined %s", reason)
        if self.skipped[ds.name] > self.data.max_skipped_fraction * len(ds.videos):
            raise SkippedFilesError(
                f"dataset {ds.name}: {self.skipped[ds.name]} of {len(ds.videos)} files failed to decode in epoch "
                f"{self.epoch} (more than data.max_skipped_fraction={self.data.max_skipped_fraction}); last: {reason}")

    def _replacement(self, s: Sample, step: int, i: int) -> Sample:
        """A stand-in for sample i of batch `step`; chosen by the position of its clip's first sample, so that the
        repeated samples of a clip get the same stand-in (and keep sharing frames), each with its own augmentation."""
        position = step * self.batch_size + i - i % self.repeats
        ds = self.datasets[s.dataset]
        video = replacement_video(ds, self.failed[s.dataset], self.seed, self.epoch, position)
        rng = np.random.default_rng([self.seed, self.epoch, position]) if self.training else None
        frames = sample_frames(ds.videos[video], ds.sampling, self._recipe(), rng)
        # in eval the stand-in only fills the batch: metrics must not count another video's views
        return replace(s, video=video, frames=frames, valid=s.valid and self.training)

    def _recipe(self) -> ClipRecipe:
        return ClipRecipe(self.data.num_frames, self.data.stride, self.data.short_video)

    # -- augmentation ------------------------------------------------------------------------------------

    def pipeline_placement(self) -> dict:
        """Where the DALI graph runs and how it is seeded: on this rank's GPU (under torchrun, LOCAL_RANK's; not
        GPU 0 for every rank), with a seed of its own per (seed, rank, epoch). The graph draws no random numbers of
        its own (the plan draws them all); the seed keeps DALI's state reproducible all the same."""
        seed = int(np.random.SeedSequence([self.seed, self.shard_id, self.epoch]).generate_state(1)[0] >> 1)
        return {"device_id": self.device_id if self.device == "gpu" else None, "seed": seed}

    def _build_pipe(self, decode_in_graph: bool):
        pipe = clip_pipeline(batch_size=self.batch_size, num_threads=max(self.data.num_threads, 1),
                             prefetch_queue_depth=1, exec_dynamic=True, device=self.device,
                             decode_in_graph=decode_in_graph, training=self.training,
                             crop_size=self.data.crop_size, mean=self.data.mean, std=self.data.std,
                             resize_in_graph=self.resize_in_graph, **self.graph_ops, **self.pipeline_placement())
        pipe.build()
        return pipe

    def _run_pipe(self, step: int, samples: list[Sample], clips: list):
        if self.pipe is None:
            self.pipe = self._build_pipe(self.decode_in_graph)
        return self._feed_and_run(self.pipe, step, samples, clips, encoded=self.decode_in_graph)

    def _feed_and_run(self, pipe, step: int, samples: list[Sample], clips: list, *, encoded: bool):
        """One batch through `pipe`: `clips` are the files' bytes (`encoded`, the graph decodes) or decoded frames."""
        if encoded:
            pipe.feed_input("encoded", clips)
            pipe.feed_input("frame_ids", [s.frames.astype(np.int32) for s in samples])
        else:
            pipe.feed_input("frames", clips)
        windows = [self._crop_box(s, clip, encoded) if self._whole_frames(s) else None  # None: the decoder cropped
                   for s, clip in zip(samples, clips)]
        if self.resize_in_graph:
            pipe.feed_input("roi", [np.array([y, x, y + h, x + w], np.float32) for y, x, h, w in windows])
        pipe.feed_input("flip", [np.bool_(s.flip) for s in samples])
        if self.graph_ops["color"]:
            pipe.feed_input("color", [np.asarray(s.augment.color, np.float32) for s in samples])
        if self.graph_ops["rand_augment_layers"]:
            pipe.feed_input("ra_ops", [pointwise(s.augment.ops) for s in samples])
            pipe.feed_input("ra_values", [s.augment.values for s in samples])
            maps = [self._warp(s, window) for s, window in zip(samples, windows)]
            pipe.feed_input("warp", [np.bool_(m is not None) for m in maps])
            pipe.feed_input("matrix", [np.eye(3, dtype=np.float32)[:2] if m is None else m for m in maps])
        if self.graph_ops["erase"]:
            pipe.feed_input("erase_box", [np.asarray(s.augment.erase, np.int32) for s in samples])
            pipe.feed_input("erase_fill", [self._erase_fill(step, i, s) for i, s in enumerate(samples)])
        (video,) = pipe.run()
        return video

    def _crop_box(self, s: Sample, clip: np.ndarray, encoded: bool) -> tuple[int, int, int, int]:
        """The crop window (top, left, height, width) in source pixels, from the frame size: the decoded clip's,
        or the video's record when the graph decodes."""
        height, width = self.datasets[s.dataset].videos[s.video].size if encoded else clip.shape[1:3]
        return self._window(s).box(height, width)

    def _warp(self, s: Sample, box: Optional[tuple[int, int, int, int]]) -> Optional[np.ndarray]:
        """The inverse map [2, 3] from the output crop to the graph's input frames (whole: `_whole_frames`) of a
        sample whose RandAugment draw moves the picture (None otherwise): the draw's geometry, then the crop
        window's (`box`, in source pixels) scale and offset."""
        moved = geometry(s.augment.ops, s.augment.values, self.data.crop_size)
        if moved is None:
            return None
        top, left, box_h, box_w = box
        crop = self.data.crop_size
        return (np.array([[box_w / crop, 0, left], [0, box_h / crop, top], [0, 0, 1]]) @ moved)[:2].astype(np.float32)

    def _erase_fill(self, step: int, i: int, s: Sample) -> np.ndarray:
        """The values of sample i's erased box, from a generator of (seed, epoch, rank, position), so a resumed run
        draws the same; a placeholder when the sample is not erased (the graph does not read it)."""
        box = s.augment.erase
        if not box[2]:
            return np.zeros((3, 1, 1, 1), np.float32)
        rng = np.random.default_rng([self.seed, self.epoch, self.shard_id, step * self.batch_size + i, 1])
        return erase_fill(box, len(s.frames), self.data.augment.erase_mode, rng)

    def _augment(self, step: int, samples: list[Sample], clips: list) -> Batch:
        with nvtx.annotate("dalitrain.dali", color="green"):
            while True:
                try:
                    video = self._run_pipe(step, samples, clips)
                    break
                except RuntimeError as err:  # in-graph decoding failed: DALI's pipeline is dead
                    if not self.decode_in_graph:
                        raise
                    self.pipe = None
                    samples, clips, decoded = self._after_graph_failure(step, samples, err)
                    if decoded is not None:  # every file reads on the CPU: augment this batch from those frames
                        self.fallback_batches += 1
                        if self.frames_pipe is None:
                            self.frames_pipe = self._build_pipe(decode_in_graph=False)
                        video = self._feed_and_run(self.frames_pipe, step, samples, decoded, encoded=False)
                        break
        with nvtx.annotate("dalitrain.to_torch", color="red"):
            return self._to_batch(step, samples, video)

    def _after_graph_failure(self, step: int, samples: list[Sample], err: RuntimeError):
        """Find which files broke the graph (PyAV decodes them on the CPU), quarantine and replace them:
        (samples, clips to retry, None). When PyAV reads every file (a stream the graph's decoder does not take,
        e.g. a profile NVDEC lacks), nothing is quarantined: (samples, None, the frames PyAV decoded)."""
        culprits, decoded = [], []
        for i, s in enumerate(samples):
            try:
                decoded.append(decode_pyav(self._path(s), s.frames))
            except DecodeError as bad:
                culprits.append(i)
                self._quarantine(s, str(bad))
        if not culprits:
            log.warning("step %d: the %s decoder failed on a batch that PyAV decodes (%s): that batch was decoded "
                        "on the CPU", step, self.decoder, str(err).strip().splitlines()[0] if str(err) else err)
            return samples, None, decoded
        for i in culprits:
            samples[i] = self._replacement(samples[i], step, i)
        return (*self._collect(step, samples, self._submit(samples)), None)

    def _boxes(self, step: int, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        """The localisation samples' boxes moved with their clips, collated (`Batch.boxes`, `Batch.box_labels`)."""
        actions = next(d.num_classes for d in self.data.datasets if d.task == "localisation")
        per_clip = []
        for i, s in enumerate(samples):
            table = self.datasets[s.dataset].boxes
            if table is None:  # a classification sample: no boxes
                per_clip.append((np.zeros((0, 4)), np.zeros((0, actions))))
                continue
            keyframe = table[s.video]
            window = self._window(s).box(*keyframe.frame_hw)
            jitter = self.data.datasets[s.dataset].box_jitter if self.training else 0.0
            # per rank too: the same position on two ranks holds different clips, which must not share a draw
            rng = (np.random.default_rng([self.seed, self.epoch, self.shard_id, step * self.batch_size + i])
                   if jitter else None)
            boxes, kept = boxes_in_clip(keyframe.boxes, keyframe.frame_hw, window, s.flip, jitter=jitter, rng=rng)
            per_clip.append((boxes, keyframe.labels[kept]))
        boxes, labels = batch_boxes(per_clip)
        return torch.from_numpy(boxes), torch.from_numpy(labels)

    def _to_batch(self, step: int, samples: list[Sample], video) -> Batch:
        tensor = video.as_tensor()
        if self.device == "cpu" and not torch.cuda.is_available():
            # zero copy: DALI's dynamic executor gives every run fresh output memory that the tensor keeps alive
            out = torch.from_dlpack(tensor)
        else:  # pinned host memory for a fast upload, or straight into CUDA memory
            out = torch.empty(tensor.shape(), dtype=torch.float32,
                              device=torch.device("cuda", self.device_id) if self.device == "gpu" else "cpu",
                              pin_memory=self.device == "cpu")
            # on the current stream: ordered after the work PyTorch queued on this memory, and no host sync
            feed_ndarray(tensor, out, cuda_stream=torch.cuda.current_stream(out.device) if out.is_cuda else None)
        if self.data.output_dtype == "bfloat16":
            out = out.to(torch.bfloat16)
        datasets = self.datasets
        boxes, box_labels = self._boxes(step, samples) if any(d.boxes is not None for d in datasets) else (None, None)
        return Batch(
            video=out,
            label=torch.tensor([datasets[s.dataset].videos[s.video].label for s in samples], dtype=torch.int64),
            dataset=torch.tensor([s.dataset for s in samples], dtype=torch.int64),
            index=torch.tensor([datasets[s.dataset].videos[s.video].row for s in samples], dtype=torch.int64),
            valid=torch.tensor([s.valid for s in samples], dtype=torch.bool),
            boxes=boxes,
            box_labels=box_labels,
        )

    def close(self) -> None:
        self.workers.shutdown()
        self.pipe = self.frames_pipe = None


def _records(data: DataConfig, split: str, device: str) -> list[DatasetRecords]:
    """The split's records, its scan index checked against the decoder the loader will use on `device`."""
    return load_records(data, split, resolve_decoder(data.decoder, resolve_device(device, data.device)))[0]


def train_loader(data: DataConfig, *, shard_id: int = 0, num_shards: int = 1, seed: int = 0, epoch: int = 0,
                 start_step: int = 0, device: str = "auto", device_id: int = 0) -> VideoLoader:
    """Training batches of `data.batch_size` clips per rank; `len()` steps per epoch, equal on every rank."""
    datasets = _records(data, "train", device)
    recipe = ClipRecipe(data.num_frames, data.stride, data.short_video)

    def plan(seed_: int, epoch_: int) -> list[list[Sample]]:
        return train_plan(datasets, recipe, batch_size=data.batch_size, short_side=data.short_side,
                          mixing=data.mixing, batch_policy=data.batch_policy, epoch_size=data.epoch_size,
                          seed=seed_, epoch=epoch_, shard_id=shard_id, num_shards=num_shards,
                          augment=data.augment if data.augment.active() else None, crop_size=data.crop_size,
                          num_samples=data.num_samples)

    return VideoLoader(data, datasets, plan, training=True, batch_size=data.batch_size, seed=seed, epoch=epoch,
                       start_step=start_step, device=device, device_id=device_id, shard_id=shard_id,
                       views_per_clip=data.num_samples)


def eval_loader(data: DataConfig, eval: EvalConfig, *, shard_id: int = 0, num_shards: int = 1,
                device: str = "auto", device_id: int = 0) -> VideoLoader:
    """Every validation video once across ranks, as temporal x spatial views sharing its `index` and `dataset`."""
    datasets = _records(data, "val", device)
    recipe = ClipRecipe(data.num_frames, data.stride, data.short_video)

    def plan(seed_: int, epoch_: int) -> list[list[Sample]]:
        return eval_plan(datasets, recipe, batch_size=eval.batch_size, short_side=eval.short_side,
                         temporal_views=eval.temporal_views, spatial_views=eval.spatial_views,
                         shard_id=shard_id, num_shards=num_shards)

    return VideoLoader(data, datasets, plan, training=False, batch_size=eval.batch_size, seed=0, epoch=0,
                       start_step=0, device=device, device_id=device_id, shard_id=shard_id,
                       views_per_clip=eval.spatial_views)
