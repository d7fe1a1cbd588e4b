"""`dalitrain bench kernels [--quick] [--json FILE]`: the dalitrain kernels against the formulas public code runs.

- informative_loss, forward + backward, B in {8, 64, 512} x d in {768, 2048, 4096}: dalitrain's path (Gram form;
  Triton on CUDA) against informative_loss_ref (builds the d x d covariance); also against the same Gram formula
  differentiated by plain autograd, which shows what the hand-written backward is worth.
- pooling_attention, forward + backward at MViTv2-S 16x4 stage shapes (T = 8 time steps, batch 1; --quick: stages 1 and 3 at T = 2):
  dalitrain's path (SDPA + residual on the CPU, the Triton kernels on CUDA) against the explicit attention that
  materialises the [Lq, Lkv] matrix.
Each case reports the best time of several forward + backward runs of both paths, alternating within one run
(background load only ever adds time, so the minimum is the estimator that survives a shared machine; the median
is in the JSON too), the peak extra memory of one forward + backward (gradients included, inputs excluded) and the
ratios. CPU memory is the peak resident set of a fresh child process (so no other case's pages or allocator state
count), with glibc told to hand freed blocks back to the OS and the peak reset after a warm-up run. On CUDA:
peak allocated bytes, plus TFLOP/s and GB/s of each path (and of SDPA's FlashAttention backend) beside each
algorithm's FLOPs and the minimum bytes any implementation must move (the roofline inputs).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F

from dalitrain.figures import bar_chart, save
from dalitrain.kernels.informative_loss import informative_loss, informative_loss_ref
from dalitrain.kernels.pooling_attention import pooling_attention, pooling_attention_ref

INFORMATIVE_SHAPES = [dict(B=B, d=d) for B in (8, 64, 512) for d in (768, 2048, 4096)]
QUICK_INFORMATIVE_SHAPES = [dict(B=64, d=2048)]
# MViTv2-S 16x4 stages at 224^2 after the 2x4x4 patch stride: (H = W, heads); keys and values pooled to 7x7.
_MVIT_S_STAGES = [(56, 1), (28, 2), (14, 4), (7, 8)]
_SECONDS_PER_PATH = 1.5  # timing budget of each path and case; repeats = budget / first run, within [3, 15]


def attention_shapes(time_steps: int, stages=_MVIT_S_STAGES) -> list[dict]:
    return [dict(B=1, h=heads, Lq=time_steps * side * side, Lkv=time_steps * 7 * 7, dh=96)
            for side, heads in stages]


# ----------------------------------------------------------------------------------------------------------
# Cases: each builder returns {path name: closure running one forward + backward and dropping the gradients}.
# ----------------------------------------------------------------------------------------------------------
def _forward_backward(forward: Callable[[], torch.Tensor], leaves: list[torch.Tensor],
                      upstream: torch.Tensor | None = None) -> Callable[[], None]:
    def run():
        forward().backward(upstream)
        for leaf in leaves:
            leaf.grad = None

    return run


def gram_loss_autograd(z: torch.Tensor) -> torch.Tensor:
    """var_loss + cov_loss (default weights) in the Gram form, left to autograd: the baseline for the backward."""
    B, d = z.shape
    zc = z.float() - z.float().mean(0)
    var = zc.square().sum(0) / (B - 1)
    gram = zc @ zc.T if B < d else zc.T @ zc
    var_loss = 25.0 * torch.relu(1.0 - torch.sqrt(var + 1e-4)).mean()
    return var_loss + (gram.square().sum() / (B - 1) ** 2 - var.square().sum()) / d


def informative_paths(shape: dict, device: str) -> dict[str, Callable[[], None]]:
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    z = torch.randn(shape["B"], shape["d"], device=device, dtype=dtype, requires_grad=True)
    return {"dalitrain": _forward_backward(lambda: sum(informative_loss(z)), [z]),
            "reference": _forward_backward(lambda: sum(informative_loss_ref(z)), [z]),
            "gram_autograd": _forward_backward(lambda: gram_loss_autograd(z), [z])}


def attention_paths(shape: dict, device: str) -> dict[str, Callable[[], None]]:
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    B, h, Lq, Lkv, dh = (shape[key] for key in ("B", "h", "Lq", "Lkv", "dh"))
    q, residual = (torch.randn(B, h, Lq, dh, device=device, dtype=dtype, requires_grad=True) for _ in range(2))
    k, v = (torch.randn(B, h, Lkv, dh, device=device, dtype=dtype, requires_grad=True) for _ in range(2))
    dout = torch.randn(B, h, Lq, dh, device=device, dtype=dtype)
    leaves = [q, k, v, residual]

    def path(fn):  # backward of a random upstream gradient
        return _forward_backward(lambda: fn(q, k, v, residual=residual), leaves, dout)

    paths = {"dalitrain": path(pooling_attention), "reference": path(pooling_attention_ref)}
    if device == "cuda":  # GPU only: PyTorch's FlashAttention backend as the speed reference
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def flash(q, k, v, *, residual):
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return F.scaled_dot_product_attention(q, k, v) + residual

        paths["sdpa_flash"] = path(flash)
    return paths


PATHS = {"informative_loss": informative_paths, "pooling_attention": attention_paths}


def roofline(kernel: str, shape: dict, path: str, element_bytes: int) -> tuple[float, float]:
    """(FLOPs of this path's algorithm, minimum bytes any implementation moves) for one forward + backward."""
    if kernel == "informative_loss":
        B, d = shape["B"], shape["d"]
        # Gram of the smaller side forward, one product with it backward; the reference: C and two products.
        flops = 4 * min(B, d) ** 2 * max(B, d) if path == "dalitrain" else 6 * B * d * d
        return flops, 3 * B * d * element_bytes  # read z forward and backward, write dz
    B, h, Lq, Lkv, dh = (shape[key] for key in ("B", "h", "Lq", "Lkv", "dh"))
    # Forward 2 matmuls, backward 5 (2.5x the forward, FlashAttention's convention).
    flops = 14 * B * h * Lq * Lkv * dh
    # Forward reads q, residual, k, v and writes out; backward reads q, out, dout, k, v, writes dq, dk, dv.
    return flops, B * h * dh * (7 * Lq + 6 * Lkv) * element_bytes


# ----------------------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------------------
def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def seconds_per_run(paths: dict[str, Callable[[], None]], device: str) -> dict[str, dict[str, float]]:
    """{path: {"best", "median"}} wall time of one run; paths alternate within each repeat so machine noise hits
    them alike."""
    first = {}
    for name, run in paths.items():  # warm-up (Triton compilation, allocator), also sizes the repeat count
        _synchronize(device)
        start = time.perf_counter()
        run()
        _synchronize(device)
        first[name] = time.perf_counter() - start
    repeats = max(3, min(15, int(_SECONDS_PER_PATH / max(first.values()))))
    times = {name: [] for name in paths}
    for _ in range(repeats):
        for name, run in paths.items():
            _synchronize(device)
            start = time.perf_counter()
            run()
            _synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: dict(best=min(values), median=statistics.median(values)) for name, values in times.items()}


def _read_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_rss_of_paths(kernel: str, shape: dict) -> dict[str, int]:
    """Run in a fresh process: peak resident bytes above the starting point of one forward + backward per path."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD fixed: blocks >= 64 KiB are mmapped and unmapped when freed
    libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD: give the heap's free top back to the OS too
    peaks = {}
    for name, run in PATHS[kernel](shape, "cpu").items():
        run()  # warm-up: thread pools and first-call buffers are not the kernel's memory
        gc.collect()
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")  # resets VmHWM (the peak resident set) to the current resident set
        start = _read_status_kib("VmRSS")
        run()
        # Linux keeps resident-set counters per thread and folds them in lazily (up to 64 pages each), so a path
        # that allocates almost nothing can read a little below its start: that is no memory, not negative memory.
        peaks[name] = max(_read_status_kib("VmHWM") - start, 0) * 1024
    return peaks


_CHILD = "import json, sys, torch; from dalitrain.benchmarks.bench_kernels import peak_rss_of_paths as f; " \
         "torch.set_num_threads(int(sys.argv[3])); print(json.dumps(f(sys.argv[1], json.loads(sys.argv[2]))))"


def peak_memory(kernel: str, shape: dict, paths: dict[str, Callable[[], None]], device: str) -> dict[str, int]:
    if device == "cuda":  # GPU only: the caching allocator's own peak counter
        peaks = {}
        for name, run in paths.items():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = torch.cuda.memory_allocated()
            run()
            torch.cuda.synchronize()
            peaks[name] = torch.cuda.max_memory_allocated() - start
        return peaks
    child = subprocess.run([sys.executable, "-c", _CHILD, kernel, json.dumps(shape), str(torch.get_num_threads())],
                           capture_output=True, text=True, check=True)
    return json.loads(child.stdout)


def measure(kernel: str, shape: dict, device: str) -> dict:
    paths = PATHS[kernel](shape, device)
    timings = seconds_per_run(paths, device)
    seconds = {name: timing["best"] for name, timing in timings.items()}
    peaks = peak_memory(kernel, shape, paths, device)
    record = dict(kernel=kernel, **shape, device=device, seconds=timings, peak_bytes=peaks,
                  speedup=seconds["reference"] / seconds["dalitrain"],
                  memory_ratio=peaks["dalitrain"] / max(peaks["reference"], 1))
    if device == "cuda":
        element_bytes = 2  # the CUDA cases run in bf16
        record["roofline"] = {}
        for name, value in seconds.items():
            flops, min_bytes = roofline(kernel, shape, "reference" if name == "reference" else "dalitrain",
                                        element_bytes)
            record["roofline"][name] = dict(flops=flops, min_bytes=min_bytes, tflops=flops / value / 1e12,
                                            gbps=min_bytes / value / 1e9)
    return record


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------
def _shape_text(record: dict) -> str:
    if record["kernel"] == "informative_loss":
        return f"B={record['B']} d={record['d']}"
    return f"B={record['B']} h={record['h']} Lq={record['Lq']} Lkv={record['Lkv']} dh={record['dh']}"


def print_record(record: dict) -> None:
    s, peaks = {name: t["best"] for name, t in record["seconds"].items()}, record["peak_bytes"]
    print(f"{record['kernel']:<18} {_shape_text(record):<38} {s['dalitrain'] * 1e3:>9.2f} {s['reference'] * 1e3:>10.2f}"
          f" {record['speedup']:>8.1f}x {peaks['dalitrain'] / 2**20:>9.1f} {peaks['reference'] / 2**20:>9.1f}"
          f" {record['memory_ratio']:>8.3f}", flush=True)
    for name in set(s) - {"dalitrain", "reference"}:
        print(f"{'':<20}vs {name}: {s[name] * 1e3:.2f} ms, {peaks[name] / 2**20:.1f} MiB: dalitrain "
              f"{s[name] / s['dalitrain']:.2f}x faster")
    for name, line in record.get("roofline", {}).items():
        print(f"{'':<20}{name:<12} {line['tflops']:7.2f} TFLOP/s {line['gbps']:8.1f} GB/s   "
              f"(roofline: {line['flops'] / 1e9:.2f} GFLOP, min {line['min_bytes'] / 2**20:.1f} MiB, "
              f"{line['flops'] / line['min_bytes']:.0f} FLOP/B)")


def run(cases: list[tuple[str, dict]], device: str) -> list[dict]:
    print(f"{'kernel':<18} {'shape':<38} {'ours ms':>9} {'ref ms':>10} {'speedup':>9} {'ours MiB':>9} "
          f"{'ref MiB':>9} {'mem ratio':>8}")
    records = []
    for kernel, shape in cases:
        records.append(measure(kernel, shape, device))
        print_record(records[-1])
    return records


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dalitrain bench kernels",
                                     description="The dalitrain kernels against the formulas public code runs.")
    parser.add_argument("--quick", action="store_true", help="B=64 d=2048 only; attention stages 1 and 3 at T=2 (under a minute)")
    parser.add_argument("--json", metavar="FILE", help="write the records (a JSON list) here")
    parser.add_argument("--png", metavar="FILE", help="chart each case's speedup and memory ratio here")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: on a shared machine a descheduled OpenMP thread stalls every "
                             "parallel region for a scheduler slice, which swamps small kernels)")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.threads)
    cases = [("informative_loss", s) for s in (QUICK_INFORMATIVE_SHAPES if args.quick else INFORMATIVE_SHAPES)]
    attention = attention_shapes(2, _MVIT_S_STAGES[0::2]) if args.quick else attention_shapes(8)
    cases += [("pooling_attention", s) for s in attention]
    print(f"device: {device}, torch threads: {torch.get_num_threads()}; times are the best of alternating runs, "
          f"ratios are against the reference measured in this run")
    if device == "cpu":
        print("no CUDA device: TFLOP/s, GB/s and roofline of the Triton kernels (and SDPA FlashAttention) skipped")
    records = run(cases, device)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(records, out, indent=1)
        print(f"wrote {len(records)} records to {args.json}")
    if args.png:
        save(bar_chart([f"{r['kernel']} {_shape_text(r)}" for r in records],
                       {"speedup (reference time / ours)": [r["speedup"] for r in records],
                        "memory (ours / reference)": [r["memory_ratio"] for r in records]},
                       title=f"dalitrain kernels against their references ({device})", ylabel="ratio", log=True,
                       lines={"parity": 1.0}), args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
