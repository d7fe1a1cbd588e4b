"""The training loop: one code path for one process and for torchrun (DDP, gloo on the CPU, NCCL on CUDA).

A step: data -> Mixup/CutMix within datasets -> forward -> loss -> backward, repeated `accumulation_steps` times
(gradients synchronised only on the last), then clip and optimizer step. Each stage is an NVTX range, so
`nsys profile` shows where a step's time goes. A non-finite loss or gradient skips the optimizer step (every
rank agrees, so DDP stays in lockstep) and is counted; `max_nonfinite_steps` of them in a row stop the run.

Resume: the newest loadable checkpoint restores model, loss parameters, optimizer, scheduler, step, every
rank's RNG streams and the data position (epoch and step within it; the loader starts there), so a run killed
at any point and resumed logs exactly the losses of the uninterrupted run on the CPU. SIGTERM or SIGUSR1 (SLURM,
Kubernetes) stops every rank at the next step boundary with one checkpoint there (dalitrain.engine.preemption).
"""
from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sized

import torch
from nvtx import annotate
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dalitrain.config import ExperimentConfig, config_to_dict, save_config
from dalitrain.data.batch import Batch
from dalitrain.engine.checkpoint import CheckpointDir, CheckpointWriteError
from dalitrain.engine.distributed import DistContext, all_ranks, gather_objects, mean_over_ranks, native_bf16
from dalitrain.engine.preemption import Preempted, PreemptionSignals
from dalitrain.engine.evaluate import DatasetAccuracy, evaluate
from dalitrain.engine.localisation import LocalisationTarget
from dalitrain.engine.metrics import MetricsLog, Throughput, memory_usage, progress_line
from dalitrain.engine.numerics import warm_up_mkl_vml
from dalitrain.engine.optim import build_optimizer, build_scheduler
from dalitrain.engine.state import rng_state, seed_everything, set_rng_state
from dalitrain.errors import DalitrainError, UsageError
from dalitrain.losses.classification import LossTerms, Targets
from dalitrain.losses.mixing import mix_within_datasets
from dalitrain.methods import box_dataset, build_criterion

TrainLoaderFactory = Callable[[int, int], Iterable[Batch]]  # (epoch, start_step) -> loader with len()
EvalLoaderFactory = Callable[[], Iterable[Batch]]


def _close(loader) -> None:
    """Loaders that hold decode threads release them when their epoch is done (a new loader per epoch)."""
    close = getattr(loader, "close", None)
    if close is not None:
        close()


class TrainingStopped(DalitrainError, RuntimeError):
    """The run cannot go on (e.g. repeated non-finite losses); one line saying why and what to change."""


def feature_spread(embedding: torch.Tensor) -> torch.Tensor:
    """[B, d] -> scalar: the std across the batch of each pooled feature, averaged over features. Not a loss: near
    0, every clip gets the same features and the heads can only predict a constant (README, "Design choices,
    measured", has the values of collapsed and healthy demo runs)."""
    return embedding.detach().float().std(dim=0).mean()


class TrainStep(nn.Module):
    """Model and loss as one module, so that DDP also synchronises the loss's own parameters (log sigma)."""

    def __init__(self, model: nn.Module, criterion: nn.Module):
        super().__init__()
        self.model = model
        self.criterion = criterion

    def forward(self, video: torch.Tensor, targets: Targets, dataset: torch.Tensor,
                boxes: Optional[torch.Tensor] = None) -> LossTerms:
        with annotate("forward"):
            out = self.model(video) if boxes is None else self.model(video, boxes)
        with annotate("loss"):
            losses = self.criterion(out, targets, dataset)
        if out.embedding.shape[0] > 1:  # every rank has the same batch size, so the same term names
            losses.terms["feature_std"] = feature_spread(out.embedding)
        return losses


@dataclass
class TrainResult:
    checkpoint: Optional[Path]  # the last checkpoint written
    evaluation: Optional[list[DatasetAccuracy]]  # the last evaluation
    clips_per_s: float  # global training throughput over the whole run
    global_step: int
    stopped_by_budget: bool


def projection_weights(model: nn.Module, num_datasets: int) -> dict[str, torch.Tensor]:
    """`"src->dst"` -> W [C_dst, C_src] for every ordered pair: what `dalitrain relations` reads."""
    projection = getattr(model, "projection", None)
    if projection is None:
        return {}
    # clone: on the CPU, detach/float/cpu return views of the live weights, and a snapshot must not follow them
    return {f"{src}->{dst}": projection.weight(src, dst).detach().float().cpu().clone()
            for src in range(num_datasets) for dst in range(num_datasets) if src != dst}


class Trainer:
    def __init__(self, cfg: ExperimentConfig, ctx: DistContext, model: nn.Module, *,
                 train_loader: TrainLoaderFactory, eval_loader: Optional[EvalLoaderFactory] = None,
                 expected_videos: Optional[list[int]] = None, localisation: Optional[LocalisationTarget] = None):
        warm_up_mkl_vml()  # before the loader's threads and the first parallel op: see numerics.py
        self.cfg = cfg
        self.ctx = ctx
        self.make_train_loader = train_loader
        self.make_eval_loader = eval_loader
        self.names = [d.name for d in cfg.data.datasets]
        self.expected_videos = expected_videos or [0] * len(self.names)
        self.localisation = localisation  # the localisation dataset's scoring (frame-mAP), if the run has one
        self.model = model.to(ctx.device)
        self.criterion = build_criterion(cfg).to(ctx.device)
        self.box_dataset = box_dataset(cfg)
        step_module = TrainStep(self.model, self.criterion)
        if ctx.distributed:
            # No unused-parameter search: the model builds only what the method's criterion uses, and every
            # head stays in the graph even when the batch holds none of its dataset (a zero gradient).
            self.step_module = DistributedDataParallel(
                step_module, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        else:
            self.step_module = step_module
        groups = model.param_groups(cfg.optim.weight_decay)
        loss_params = list(self.criterion.parameters())
        if loss_params:
            groups.append({"params": loss_params, "weight_decay": 0.0})
        self.params = [p for group in groups for p in group["params"]]
        self.optimizer = build_optimizer(groups, cfg.optim, ctx.device)
        self.scheduler: Optional[torch.optim.lr_scheduler.LambdaLR] = None
        self.bf16 = cfg.train.bf16 and native_bf16(ctx.device)  # autocast on CUDA only
        if cfg.train.bf16 and ctx.device.type == "cuda" and not self.bf16:
            self._say(f"train.bf16: off on {torch.cuda.get_device_name(ctx.device)} (sm_"
                      f"{''.join(map(str, torch.cuda.get_device_capability(ctx.device)))}: no native bf16); "
                      "training in fp32")
        self.checkpoints = CheckpointDir(Path(cfg.train.output_dir) / "checkpoints", cfg.train.keep_last)
        self.log = MetricsLog(cfg.train.output_dir) if ctx.is_main else None
        self.global_step = 0
        self.signals = PreemptionSignals()  # active during fit()
        self.stop: Optional[str] = None  # "budget" or "preempted", agreed by every rank at a step boundary
        self.nonfinite_total = 0
        self.nonfinite_in_a_row = 0
        self.best_top1 = -1.0
        self.last_eval: Optional[list[DatasetAccuracy]] = None
        self.last_checkpoint: Optional[Path] = None
        # The untrained projection, kept in every checkpoint: the relations report's chance baseline.
        self.initial_projection = projection_weights(self.model, len(self.names))
        # loss terms summed over the finite micro-steps since the last log, on the device (no host sync per step)
        self.term_sums: dict[str, torch.Tensor] = {}
        self.term_count = torch.zeros((), device=ctx.device)
        self.step_lr = cfg.optim.lr
        self.throughput = Throughput()  # for the progress lines, reset at each
        self.run_clips, self.train_seconds, self.run_start = 0, 0.0, time.perf_counter()  # for the whole run

    def autocast(self):
        return torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _say(self, line: str) -> None:
        if self.ctx.is_main:
            print(line, flush=True)

    # ---------------------------------------------------------------------------------------------------
    # Checkpoints

    def _state(self, epoch: int, step_in_epoch: int) -> dict:
        rng = gather_objects(rng_state(self.ctx.device))  # every rank's streams; rank 0 writes them all
        return {
            "format": 1,
            "model": self.model.state_dict(),
            "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "global_step": self.global_step,
            "nonfinite_total": self.nonfinite_total,
            "best_top1": self.best_top1,
            "rng": rng,
            "config": config_to_dict(self.cfg),
            "dataset_names": self.names,
            "projection": projection_weights(self.model, len(self.names)),
            "projection_init": self.initial_projection,
            "evaluation": [dataclasses.asdict(r) for r in self.last_eval] if self.last_eval else None,
        }

    def _save(self, epoch: int, step_in_epoch: int, *, best: bool) -> None:
        """Rank 0 writes; a failed write stops every rank (they agree through one collective) with one line."""
        state = self._state(epoch, step_in_epoch)
        failure = None
        if self.ctx.is_main:
            try:
                self.last_checkpoint = self.checkpoints.save(state, best=best)
                self._say(f"checkpoint {self.last_checkpoint}" + (" (best)" if best else ""))
            except CheckpointWriteError as err:
                failure = err
        (written,) = all_ranks(torch.tensor([failure is None], device=self.ctx.device))
        if not written:
            kept = [p.name for p in self.checkpoints.step_files()]
            raise TrainingStopped(f"{failure or 'rank 0 could not write a checkpoint'}; stopped at epoch {epoch + 1} "
                                  f"step {step_in_epoch}; kept in {self.checkpoints.directory}: "
                                  f"{', '.join(kept) or 'no checkpoint yet'}")

    def _restore(self, path: Path, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.criterion.load_state_dict(state["criterion"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.global_step = state["global_step"]
        self.nonfinite_total = state["nonfinite_total"]
        self.best_top1 = state["best_top1"]
        self.initial_projection = state["projection_init"]
        if len(state["rng"]) == self.ctx.world_size:
            set_rng_state(state["rng"][self.ctx.rank], self.ctx.device)
        else:
            self._say(f"warning: {path} was written by {len(state['rng'])} ranks, this run has "
                      f"{self.ctx.world_size}: random streams are re-seeded, so losses will not match the old run")
        self.last_checkpoint = path
        self._say(f"resumed from {path} (epoch {state['epoch'] + 1}, step {state['step_in_epoch']})")

    # ---------------------------------------------------------------------------------------------------
    # The loop

    def fit(self) -> TrainResult:
        """Train to the last epoch, or until the time budget; raises Preempted after saving when a preemption
        signal came (dalitrain.engine.preemption)."""
        with self.signals:
            return self._fit()

    def _fit(self) -> TrainResult:
        cfg = self.cfg
        if self.ctx.is_main:
            save_config(cfg, Path(cfg.train.output_dir) / "config.yaml")
        seed_everything(cfg.train.seed + self.ctx.rank)
        found = self.checkpoints.latest()
        epoch, start_step = (found[1]["epoch"], found[1]["step_in_epoch"]) if found else (0, 0)
        loader = self.make_train_loader(epoch, start_step)
        steps_per_epoch = len(loader) if isinstance(loader, Sized) else 0
        if steps_per_epoch == 0:
            raise UsageError("the training loader has no steps (empty manifests, or batch_size larger than a "
                             "dataset split across ranks)")
        accumulation = cfg.optim.accumulation_steps
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, epochs=cfg.train.epochs,
                                         steps_per_epoch=math.ceil(steps_per_epoch / accumulation))
        if found:
            self._restore(*found)
        self.throughput.reset()
        self.run_start = time.perf_counter()  # the time budget counts from here
        stopped_by_budget = False
        while epoch < cfg.train.epochs:
            if loader is None:
                loader = self.make_train_loader(epoch, 0)
            stop_step = self._train_epoch(epoch, loader, start_step, steps_per_epoch)
            _close(loader)
            loader = None
            if self.stop == "preempted":
                self._save(*((epoch, stop_step) if stop_step is not None else (epoch + 1, 0)), best=False)
                received = self.signals.received
                cause = signal.Signals(received).name if received else "a signal to another rank"
                raise Preempted(f"preempted ({cause}) at epoch {epoch + 1} step {stop_step or steps_per_epoch}: "
                                f"saved {self.last_checkpoint}; the same command resumes from it")
            stopped_by_budget = stop_step is not None
            last_epoch = epoch + 1 == cfg.train.epochs
            if stopped_by_budget or last_epoch or (epoch + 1) % cfg.eval.every_epochs == 0:
                self._evaluate(epoch)
            best = self._is_best()
            if stopped_by_budget:
                self._save(epoch, stop_step, best=best)
                self._say(f"stopped: time budget of {cfg.train.time_budget_minutes:.1f} minutes reached")
                break
            if last_epoch or (epoch + 1) % cfg.train.checkpoint_every_epochs == 0:
                self._save(epoch + 1, 0, best=best)
            epoch, start_step = epoch + 1, 0
        if loader is not None:
            _close(loader)  # resumed after the last epoch: nothing to train
        if self.last_eval is None:  # e.g. resumed after the last epoch: still report the final model
            self._evaluate(cfg.train.epochs - 1)
        if self.log:
            self.log.close()
        return TrainResult(self.last_checkpoint, self.last_eval, self.run_clips / max(self.train_seconds, 1e-9),
                           self.global_step, stopped_by_budget)

    def _train_epoch(self, epoch: int, loader: Iterable[Batch], start_step: int, steps: int) -> Optional[int]:
        """Train from `start_step` to the end of the epoch; returns the next step if the time budget stopped it."""
        started = time.perf_counter()
        try:
            return self._train_steps(epoch, loader, start_step, steps)
        finally:
            self.train_seconds += time.perf_counter() - started

    def _train_steps(self, epoch: int, loader: Iterable[Batch], start_step: int, steps: int) -> Optional[int]:
        cfg, ctx = self.cfg, self.ctx
        accumulation = cfg.optim.accumulation_steps
        batches = iter(loader)
        step = start_step
        while step < steps:
            window = min(accumulation, steps - step)  # the last window of an epoch may be shorter
            window_finite = torch.ones((), dtype=torch.bool, device=ctx.device)
            for micro in range(window):
                waited = time.perf_counter()
                with annotate("data"):
                    batch = next(batches).to(ctx.device)
                waited = time.perf_counter() - waited
                sync = micro + 1 == window
                window_finite = window_finite & self._forward_backward(batch, window, sync)
                clips = batch.video.shape[0] * ctx.world_size
                self.throughput.add(clips, waited)
                self.run_clips += clips
            step += window
            self._optimizer_step(window_finite, epoch, step)
            if self.global_step % cfg.train.log_every == 0:
                self._log_progress(epoch, step, steps)
            if self.stop and step < steps:
                return step
        return None

    def _forward_backward(self, batch: Batch, window: int, sync: bool) -> torch.Tensor:
        """One micro-step; returns whether its loss was finite on this rank, as a device flag: the host reads the
        flags once per optimizer step (`_optimizer_step`), not per micro-step."""
        no_sync = self.step_module.no_sync if self.ctx.distributed and not sync else nullcontext
        with no_sync():
            with annotate("mix"):
                video, targets = mix_within_datasets(batch.video, batch.label, batch.dataset,
                                                     mixup_alpha=self.cfg.loss.mixup_alpha,
                                                     cutmix_alpha=self.cfg.loss.cutmix_alpha,
                                                     alone=self.box_rows(batch))
                targets.box_labels = batch.box_labels
            with self.autocast():
                out = self.step_module(video, targets, batch.dataset, batch.boxes)
            finite = torch.isfinite(out.total.detach())
            with annotate("backward"):
                # A non-finite loss still goes backward (its gradients are discarded below): every rank must
                # run the same collectives, and skipping backward on some ranks would desynchronise DDP.
                (out.total / window).backward()
        for name, value in out.terms.items():
            self.term_sums[name] = self.term_sums.get(name, 0.0) + torch.where(finite, value, 0.0)
        self.term_count = self.term_count + finite
        return finite

    def box_rows(self, batch: Batch) -> Optional[torch.Tensor]:
        """[B] bool: the localisation clips of the batch (None without a localisation dataset)."""
        return batch.dataset == self.box_dataset if self.box_dataset is not None else None

    def _optimizer_step(self, finite: torch.Tensor, epoch: int, step: int) -> None:
        with annotate("optimizer"):
            max_norm = self.cfg.optim.clip_grad_norm or math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)  # also finds non-finite gradients
            # The step's one host sync: every rank takes the same branches, so DDP stays in lockstep. The flags: the
            # step is finite, the time budget is not spent, no preemption signal came (to any rank).
            budget = self.cfg.train.time_budget_minutes
            over_budget = budget is not None and time.perf_counter() - self.run_start > 60.0 * budget
            flags = torch.tensor([True, not over_budget, self.signals.received is None], device=self.ctx.device)
            flags[0] = finite & torch.isfinite(grad_norm)
            step_finite, within_budget, not_preempted = all_ranks(flags)
            if not not_preempted:
                self.stop = "preempted"
            elif not within_budget:
                self.stop = "budget"
            if step_finite:
                self.optimizer.step()
                self.nonfinite_in_a_row = 0
            else:
                self.nonfinite_total += 1
                self.nonfinite_in_a_row += 1
                self._say(f"warning: non-finite loss or gradient at epoch {epoch + 1} step {step}: step skipped "
                          f"({self.nonfinite_in_a_row} in a row, {self.nonfinite_total} in total)")
            self.optimizer.zero_grad(set_to_none=True)
            self.step_lr = self.optimizer.param_groups[0]["lr"]  # the lr this step used, for the log
            self.scheduler.step()
        self.global_step += 1
        limit = self.cfg.train.max_nonfinite_steps
        if self.nonfinite_in_a_row >= limit:
            raise TrainingStopped(
                f"stopped at epoch {epoch + 1} step {step}: {limit} non-finite losses or gradients in a row "
                f"(train.max_nonfinite_steps); the checkpoints in {self.checkpoints.directory} are intact; "
                f"lower optim.lr or set optim.clip_grad_norm")

    def _log_progress(self, epoch: int, step: int, steps: int) -> None:
        terms = {}
        if self.term_sums:  # every rank has the same term names, so one collective sums them all and the counts
            names = sorted(self.term_sums)
            totals = mean_over_ranks(torch.stack([*(self.term_sums[n] for n in names), self.term_count]).float())
            if totals[-1] > 0:  # the mean over the finite micro-steps of every rank
                terms = dict(zip(names, (totals[:-1] / totals[-1]).tolist()))
        self.term_sums, self.term_count = {}, torch.zeros((), device=self.ctx.device)
        clips_per_s, data_share = self.throughput.read()
        self.throughput.reset()
        lr = self.step_lr
        memory = memory_usage(self.ctx.device)
        self._say(progress_line(epoch=epoch, epochs=self.cfg.train.epochs, step=step, steps=steps, terms=terms,
                                lr=lr, clips_per_s=clips_per_s, data_share=data_share, memory=memory))
        if self.log:
            self.log.write({"kind": "train", "epoch": epoch + 1, "step": self.global_step, **terms, "lr": lr,
                            "clips_per_s": clips_per_s, "data_wait": data_share,
                            "nonfinite_total": self.nonfinite_total,
                            "elapsed_s": time.perf_counter() - self.run_start, **memory})

    # ---------------------------------------------------------------------------------------------------
    # Evaluation

    def _evaluate(self, epoch: int) -> None:
        if self.make_eval_loader is None:
            return
        with annotate("evaluate"):
            results = evaluate(self.model, self.make_eval_loader(), dataset_names=self.names,
                               num_classes=[d.num_classes for d in self.cfg.data.datasets],
                               expected=self.expected_videos, device=self.ctx.device, autocast=self.autocast,
                               localisation=self.localisation)
        self.last_eval = results
        for r in results:
            if r.frame_map is not None:
                self._say(f"eval epoch {epoch + 1} {r.name}: frame-mAP {100 * r.frame_map:.1f}% (random scores "
                          f"{100 * r.chance_map:.1f}%) on {r.videos}/{r.expected} keyframes")
                continue
            self._say(f"eval epoch {epoch + 1} {r.name}: top-1 {r.top1:.1f}% top-5 {r.top5:.1f}% "
                      f"(chance {r.chance_top1:.1f}%) on {r.videos}/{r.expected} videos")
            if not self.ctx.is_main:  # the results are the gathered, global ones: rank 0 reports them
                continue
            if r.predicted_classes == 1 and r.videos > 1:
                print(f"dalitrain: warning: {r.name}: every validation video gets the same class: the model "
                      f"predicts a constant (a collapsed representation shows as feature_std near 0 in the log)",
                      file=sys.stderr, flush=True)
            if r.videos != r.expected:
                print(f"dalitrain: warning: {r.name}: evaluated {r.videos} videos, the manifest has {r.expected}",
                      file=sys.stderr, flush=True)
        if self.log:
            self.log.write({"kind": "eval", "epoch": epoch + 1, "step": self.global_step,
                            **{f"{r.name}/{key}": getattr(r, key) for r in results
                               for key in ("top1", "top5", "videos", "expected", "predicted_classes")}})

    def _is_best(self) -> bool:
        if not self.last_eval:
            return False
        mean_top1 = sum(r.top1 for r in self.last_eval) / len(self.last_eval)
        if mean_top1 > self.best_top1:
            self.best_top1 = mean_top1
            return True
        return False
