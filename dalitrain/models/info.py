"""`dalitrain info model NAME [--frames T --size S] [--freeze GROUP ...] [--json FILE]`: parameters, GMACs per
clip, stage shapes; with `--freeze`, trainable parameters and activation memory per frame of full training and of
the frozen model (SFA's stage 2: `--freeze spatial`, with the adapter unless `--adapter none`).
`dalitrain info kernels [--arch A ...] [--dtype D ...] [--head-dim N ...] [--json FILE]`: what each Triton kernel
needs on each GPU architecture (dalitrain.kernel_info).

Counted on the `meta` device (no memory, no compute: B 32x224x224 takes seconds) with PyTorch's own
`FlopCounterMode`; multiply-adds = FLOPs / 2, the unit the MViT papers and PySlowFast call "GFLOPs". The model is
built with the explicit attention (q k^T and attn v as two matmuls) because the counter does not count the CPU
kernel of scaled_dot_product_attention (`_scaled_dot_product_flash_attention_for_cpu`); the explicit form does
exactly the same multiply-adds. Softmax, norms and GELU are not counted (as in the published numbers' fvcore
counts, they are < 1%). Parameters are the backbone's (no classifier).

Activation memory: the bytes of the tensors autograd keeps for backward in one fp32 forward at batch 1 (each tensor
once), divided by the frames; on the meta device too. With the explicit attention the L x L attention
probabilities are among them, which a fused attention kernel does not keep, so this is an upper bound.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from dalitrain.errors import UsageError
from dalitrain.kernel_info import DTYPES, SHARED_LIMIT_BYTES
from dalitrain.kernel_info import report as kernel_report
from dalitrain.models.registry import create_backbone, list_models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["model", "kernels"], help="what to describe")
    parser.add_argument("name", nargs="?", help=f"model: a registered model ({', '.join(list_models())})")
    parser.add_argument("--frames", type=int, default=None, help="clip length T (default: the model's)")
    parser.add_argument("--size", type=int, default=None, help="crop size S of a TxSxS clip (default: the model's)")
    parser.add_argument("--freeze", nargs="+", default=None, metavar="GROUP",
                        help="model: compare full training with these module groups frozen (e.g. spatial)")
    parser.add_argument("--adapter", choices=["none", "mlp"], default="mlp",
                        help="model, with --freeze: the adapter of the frozen model (default mlp, as SFA)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--arch", type=int, nargs="+", choices=sorted(SHARED_LIMIT_BYTES), default=[80, 86, 89, 90],
                        help="kernels: compute capabilities to compile for (default 80 86 89 90)")
    parser.add_argument("--dtype", nargs="+", choices=list(DTYPES), default=list(DTYPES),
                        help="kernels: input dtypes (default all)")
    parser.add_argument("--head-dim", type=int, nargs="+", default=None,
                        help="kernels: attention head dims (default: those of the registered models)")


def run(args: argparse.Namespace) -> int:
    if args.what == "kernels":
        return kernel_report(args.arch, args.dtype, args.head_dim, args.json)
    if args.name is None:
        raise UsageError(f"dalitrain info model: name a model ({', '.join(list_models())})")
    info = describe_model(args.name, num_frames=args.frames, crop_size=args.size)
    print(f"{info['model']} at {info['frames']}x{info['size']}x{info['size']}: "
          f"{info['params'] / 1e6:.2f} M params, {info['gmacs']:.2f} GMACs per clip")
    for stage in info["stages"]:
        what = "C x T x H x W" if stage["grid"] else "tokens x C"
        print(f"  {stage['stage']}: {'x'.join(map(str, stage['shape']))}  ({what})")
    if args.freeze:
        info["training"] = [training_memory(args.name, num_frames=info["frames"], crop_size=info["size"]),
                            training_memory(args.name, num_frames=info["frames"], crop_size=info["size"],
                                            freeze=args.freeze, adapter=args.adapter)]
        for row in info["training"]:
            print(f"  {row['setting']}: {row['trainable_params'] / 1e6:.2f} M trainable params, "
                  f"{row['activation_mib_per_frame']:.2f} MiB of activations per frame (batch 1, fp32)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(info, indent=2) + "\n")
    return 0


def describe_model(name: str, *, num_frames: Optional[int] = None, crop_size: Optional[int] = None) -> dict:
    with torch.device("meta"):
        model = create_backbone(name, num_frames=num_frames, crop_size=crop_size, attention_impl="explicit")
    frames, size = model.config.num_frames, model.config.crop_size
    stage_shapes: list[tuple[list[int], bool]] = []
    hooks = [module.register_forward_hook(lambda _module, _inputs, output: stage_shapes.append(_shape(output)))
             for _, module in model.stages()]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.empty(1, 3, frames, size, size, device="meta"))
    for hook in hooks:
        hook.remove()
    return {
        "model": name, "frames": frames, "size": size,
        "params": sum(p.numel() for p in model.parameters()),
        "gmacs": counter.get_total_flops() / 2e9,
        "gmacs_by_op": {str(op): n / 2e9 for op, n in counter.get_flop_counts()["Global"].items()},
        "stages": [{"stage": name, "shape": shape, "grid": grid}
                   for (name, _), (shape, grid) in zip(model.stages(), stage_shapes)],
    }


def training_memory(name: str, *, num_frames: int, crop_size: int, freeze: Optional[list[str]] = None,
                    adapter: str = "none") -> dict:
    """Trainable parameters and the activations autograd keeps per frame (module docstring), full or frozen."""
    options = {"adapter": adapter} if adapter != "none" else {}
    with torch.device("meta"):
        model = create_backbone(name, num_frames=num_frames, crop_size=crop_size, attention_impl="explicit",
                                **options)
    if freeze:
        if not hasattr(model, "freeze"):
            raise UsageError(f"--freeze: {name} names no module groups to freeze")
        model.freeze(freeze)
    kept: dict[int, torch.Tensor] = {}  # by identity: a tensor saved by two operations is kept once
    weights = {id(p) for p in model.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        source = tensor if tensor._base is None else tensor._base
        if id(source) not in weights:  # a Linear keeps its weight (or a view of it): parameters, not activations
            kept[id(tensor)] = tensor
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.train()(torch.empty(1, 3, num_frames, crop_size, crop_size, device="meta"))
    kept_bytes = sum(t.numel() * t.element_size() for t in kept.values())
    setting = f"frozen {', '.join(freeze)}" + (f" + {adapter} adapter" if adapter != "none" else "") if freeze \
        else "full training"
    return {"setting": setting, "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "activation_mib_per_frame": kept_bytes / num_frames / 2**20}


def _shape(output) -> tuple[list[int], bool]:
    """A stage's output as the contract allows: (tokens [1, L, C], grid) -> [C, T, H, W]; tokens -> [L, C]."""
    if isinstance(output, tuple):
        tokens, grid = output
        return [tokens.shape[-1], *grid], True
    return list(output.shape[1:]), False
