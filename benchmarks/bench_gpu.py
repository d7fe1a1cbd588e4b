"""`dalitrain bench gpu [--json FILE] [--only NAME ...]`: every CUDA path of dalitrain in one command, for the first
run on a GPU (none has been lent to the project so far, so these paths have only been compiled, never run).

Each check runs on its own, catches its own failure and reports ok / FAILED with numbers; the command exits 1 if any
failed. On a machine without CUDA it prints the checks it would run and exits 0 (CI tests that plumbing).

  kernels.attention    Triton pooling attention against the float64 reference, bf16 and fp16 (forward and backward)
                       at the MViTv2-S/B stage shapes (the same per stage; 4 time steps): error at most twice
                       PyTorch's own at the dtype
  kernels.routing      fp32 inputs go to SDPA (no kernel launch), bf16 under autocast reaches the kernel as bf16
  kernels.informative  the informative loss (Triton) against the d x d formula, bf16 and fp32
  kernels.compiled     `dalitrain info kernels` for this GPU's architecture: every kernel within shared memory
  attention.speed      TFLOP/s of the kernels against the explicit attention and SDPA's flash backend
                       (`dalitrain bench kernels` cases)
  bf16.native          bf16 autocast is on exactly when the GPU computes in bf16 (sm_80 and later)
  loader.nvdec         a synthetic VP9 corpus and its H.264 transcode through the GPU loader (NVDEC in the DALI
                       graph, on this GPU, output on the current stream) against CPU decoding with GPU augmentation:
                       the same clips within a few grey levels, no file quarantined, no batch decoded on the CPU
  train.step           MViTv2-S 16x4 training steps at 16x224x224, batch 8, bf16 autocast, AdamW: clips/s, peak
                       memory and MFU, with and without activation checkpointing (`dalitrain bench model`'s child)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from dalitrain.figures import bar_chart, save

CHECKS: dict[str, Callable[[], dict]] = {}


def check(name: str):
    def register(fn: Callable[[], dict]) -> Callable[[], dict]:
        CHECKS[name] = fn
        return fn
    return register


def _max_error(actual: torch.Tensor, exact: torch.Tensor) -> float:
    return (actual.double() - exact.double()).abs().max().item()


@check("kernels.attention")
def attention_matches_reference() -> dict:
    from dalitrain.benchmarks.bench_kernels import _MVIT_S_STAGES, attention_shapes
    from dalitrain.kernels.pooling_attention import pooling_attention, pooling_attention_ref

    rows, ok = [], True
    for shape in attention_shapes(4, _MVIT_S_STAGES):
        for dtype in (torch.bfloat16, torch.float16):
            gen = torch.Generator(device="cuda").manual_seed(0)
            q64, k64, v64 = (torch.randn(shape["B"], shape["h"], n, shape["dh"], device="cuda", generator=gen,
                                         dtype=torch.float64) for n in (shape["Lq"], shape["Lkv"], shape["Lkv"]))
            grad = torch.randn_like(q64)
            results = {}
            for name, fn, cast in (("triton", lambda q, k, v: pooling_attention(q, k, v, residual=q,
                                                                                backend="triton"), dtype),
                                   ("torch", lambda q, k, v: pooling_attention_ref(q, k, v, residual=q), dtype),
                                   ("exact", lambda q, k, v: pooling_attention_ref(q, k, v, residual=q),
                                    torch.float64)):
                leaves = [t.to(cast).requires_grad_() for t in (q64, k64, v64)]
                out = fn(*leaves)
                out.backward(grad.to(cast))
                results[name] = [out.detach()] + [t.grad for t in leaves]
            for part, ours, theirs, exact in zip(("out", "dq", "dk", "dv"), *results.values()):
                err, torch_err = _max_error(ours, exact), _max_error(theirs, exact)
                passed = err <= 2 * torch_err + 1e-3 * (1 + exact.abs().max().item())
                ok &= passed
                rows.append(dict(shape=shape, dtype=str(dtype), part=part, error=err, torch_error=torch_err,
                                 ok=passed))
    return dict(ok=ok, rows=rows)


@check("kernels.routing")
def attention_routing() -> dict:
    import dalitrain.kernels.pooling_attention as module

    seen = []
    real = module._PoolingAttention.apply
    module._PoolingAttention.apply = lambda *args: seen.append(args[0].dtype) or real(*args)
    try:
        q, k, v = (torch.randn(1, 2, n, 96, device="cuda") for n in (784, 49, 49))
        module.pooling_attention(q, k, v, residual=q)  # fp32: SDPA, no launch
        fp32_launches = len(seen)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            module.pooling_attention(q, k, v, residual=q)
    finally:
        module._PoolingAttention.apply = real
    capability = torch.cuda.get_device_capability()
    expected = [torch.bfloat16] if capability >= (8, 0) else []
    return dict(ok=fp32_launches == 0 and seen == expected, fp32_launches=fp32_launches,
                autocast_dtypes=[str(d) for d in seen], capability=list(capability))


@check("kernels.informative")
def informative_matches_reference() -> dict:
    from dalitrain.kernels.informative_loss import informative_loss, informative_loss_ref

    rows, ok = [], True
    for B, d in ((64, 768), (512, 768), (512, 4096)):
        z64 = torch.randn(B, d, device="cuda", dtype=torch.float64, generator=torch.Generator("cuda").manual_seed(B))
        exact = [t.item() for t in informative_loss_ref(z64)]
        for dtype in (torch.bfloat16, torch.float32):
            got = [t.item() for t in informative_loss(z64.to(dtype), backend="triton")]
            errors = [abs(a - e) / max(abs(e), 1e-12) for a, e in zip(got, exact)]
            passed = max(errors) <= (2e-2 if dtype == torch.bfloat16 else 1e-4)
            ok &= passed
            rows.append(dict(B=B, d=d, dtype=str(dtype), relative_errors=errors, ok=passed))
    return dict(ok=ok, rows=rows)


@check("kernels.compiled")
def kernels_compile_for_this_gpu() -> dict:
    from dalitrain.kernel_info import SHARED_LIMIT_BYTES, kernel_rows

    major, minor = torch.cuda.get_device_capability()
    arch = 10 * major + minor
    if arch not in SHARED_LIMIT_BYTES:
        return dict(ok=True, skipped=f"sm_{arch} not in dalitrain info kernels' table")
    rows = kernel_rows(arch, ["bf16", "fp16"], [64, 96])
    return dict(ok=all(r["path"] == "sdpa" or r["fits"] for r in rows), rows=rows)


@check("attention.speed")
def attention_speed() -> dict:
    from dalitrain.benchmarks.bench_kernels import attention_shapes, measure

    rows = [measure("pooling_attention", shape, "cuda") for shape in attention_shapes(8)]
    return dict(ok=True, rows=[dict(shape={k: r[k] for k in ("B", "h", "Lq", "Lkv", "dh")},
                                    tflops={name: v["tflops"] for name, v in r["roofline"].items()},
                                    speedup=r["speedup"]) for r in rows])


@check("bf16.native")
def bf16_gate() -> dict:
    from dalitrain.engine.distributed import native_bf16

    capability = torch.cuda.get_device_capability()
    native = native_bf16(torch.device("cuda", torch.cuda.current_device()))
    return dict(ok=native == (capability >= (8, 0)), native=native, capability=list(capability),
                torch_says_supported=torch.cuda.is_bf16_supported())


@check("loader.nvdec")
def nvdec_loader_matches_cpu_decoding() -> dict:
    from dalitrain.config import DataConfig, DatasetConfig
    from dalitrain.data.prepare import prepare
    from dalitrain.data.synth import generate_corpus
    from dalitrain.pipelines.loader import train_loader

    work = Path(tempfile.mkdtemp(prefix="dalitrain-bench-gpu-"))
    generate_corpus(work / "corpus", preset="bench", seed=0)  # VP9, short side 256: inside NVDEC's sizes
    h264_manifest, _ = prepare(work / "corpus" / "kinetics_like" / "train.txt", work / "h264", "h264",
                               root=work / "corpus" / "kinetics_like")
    rows, ok = [], True
    for codec, manifest, root in (("vp9", "kinetics_like/train.txt", "kinetics_like"),
                                  ("h264", str(h264_manifest), str(work / "h264"))):
        dataset = DatasetConfig(name="k", manifest=manifest, root=root, num_classes=12)
        batches = {}
        for decoder in ("nvdec", "pyav"):
            data = DataConfig(datasets=[dataset], base_dir=str(work / "corpus"), batch_size=4, num_frames=16,
                              stride=4, short_side=[256, 320], crop_size=224, device="gpu", decoder=decoder)
            loader = train_loader(data, seed=0, device="gpu", device_id=torch.cuda.current_device())
            start = time.perf_counter()
            batches[decoder] = [b.video for b in loader]
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            clips = sum(v.shape[0] for v in batches[decoder])
            rows.append(dict(codec=codec, decoder=decoder, clips_per_s=clips / seconds,
                             quarantined=len(loader.quarantine), cpu_fallback_batches=loader.fallback_batches,
                             on_device=str(batches[decoder][0].device)))
            ok &= not loader.quarantine and not loader.fallback_batches and batches[decoder][0].is_cuda
        # normalised values: 0.05 is about 3 grey levels at the demo's std
        difference = max((a - b).abs().mean().item() for a, b in zip(batches["nvdec"], batches["pyav"]))
        rows.append(dict(codec=codec, mean_abs_difference=difference))
        ok &= difference < 0.05
    return dict(ok=ok, rows=rows)


@check("train.step")
def training_step() -> dict:
    from dalitrain.benchmarks.children import run_child
    from dalitrain.models.info import describe_model

    gmacs = describe_model("mvitv2_s_16x4", num_frames=16, crop_size=224)["gmacs"]
    peak_tflops = {(8, 0): 312, (9, 0): 989}.get(torch.cuda.get_device_capability())  # dense bf16
    rows = []
    for checkpointing in (False, True):
        spec = dict(model="mvitv2_s_16x4", frames=16, size=224, batch=8, attention="fused",
                    checkpointing=checkpointing, device="cuda", warmup=2, steps=5)
        result = run_child("dalitrain.benchmarks.bench_model", spec, f"train.step checkpointing={checkpointing}")
        achieved = 3 * 2 * gmacs * 1e9 * result["clips_per_s"] / 1e12  # a step ~ 3x the forward's FLOPs
        rows.append(dict(checkpointing=checkpointing, **result, tflops=achieved,
                         mfu=achieved / peak_tflops if peak_tflops else None))
    return dict(ok=True, rows=rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dalitrain bench gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write every check's result here")
    parser.add_argument("--only", nargs="+", choices=list(CHECKS), default=None, help="run only these checks")
    parser.add_argument("--png", type=Path, default=None,
                        help="chart the attention kernels' TFLOP/s against SDPA and the training step's MFU here")
    args = parser.parse_args(argv)
    names = args.only or list(CHECKS)
    if not torch.cuda.is_available():
        print("dalitrain bench gpu: no CUDA device here; on a GPU it runs:")
        for name in names:
            print(f"  {name}")
        return 0
    print(f"dalitrain bench gpu on {torch.cuda.get_device_name()} (sm_"
          f"{''.join(map(str, torch.cuda.get_device_capability()))}), torch {torch.__version__}")
    results = {}
    for name in names:
        start = time.perf_counter()
        try:
            results[name] = CHECKS[name]()
        except Exception as err:  # one check's failure must not hide the others'
            results[name] = dict(ok=False, error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
        results[name]["seconds"] = time.perf_counter() - start
        print(f"{'ok    ' if results[name]['ok'] else 'FAILED'} {name} ({results[name]['seconds']:.0f} s)"
              + (f": {results[name]['error']}" if "error" in results[name] else ""), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    chart = gpu_chart(results, torch.cuda.get_device_name()) if args.png is not None else None
    if chart is not None:
        save(chart, args.png)
    return 0 if all(r["ok"] for r in results.values()) else 1


def gpu_chart(results: dict, device: str):
    """TFLOP/s of each attention shape per implementation (`attention.speed`) and the training step's MFU in
    percent (`train.step`) as grouped bars; None when neither check ran."""
    labels, series = [], {}
    for row in results.get("attention.speed", {}).get("rows", []):
        shape = row["shape"]
        labels.append(f"attention B{shape['B']} h{shape['h']} Lq{shape['Lq']} Lkv{shape['Lkv']} dh{shape['dh']}")
        for name, tflops in row["tflops"].items():
            series.setdefault(f"{name} TFLOP/s", {})[labels[-1]] = tflops
    for row in results.get("train.step", {}).get("rows", []):
        if row.get("mfu") is not None:
            labels.append(f"MViTv2-S step{' + ckpt' if row['checkpointing'] else ''}")
            series.setdefault("MFU (%)", {})[labels[-1]] = 100.0 * row["mfu"]
    if not labels:
        return None
    return bar_chart(labels, {name: [values.get(label, 0.0) for label in labels] for name, values in series.items()},
                     title=f"dalitrain bench gpu on {device}", ylabel="TFLOP/s, or MFU in percent")


if __name__ == "__main__":
    sys.exit(main())
