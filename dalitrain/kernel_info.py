"""`dalitrain info kernels [--arch 80 86 ...] [--dtype bf16 ...] [--head-dim 96 ...] [--json FILE]`: what every
Triton kernel needs on each GPU architecture, compiled on this machine (Triton's bundled ptxas; no GPU needed).

For each kernel of dalitrain.kernels, each dtype the models use and each head dim of the registered models (padded
as the launcher pads it), one row: the tiles the launcher picks, `shared_bytes` (Triton's metadata) beside
`limit_bytes` (the architecture's opt-in maximum per block), `registers`, `spill_bytes` (spill stores) and
`stack_bytes` from ptxas's report, and `tensor_cores`: `wgmma` or `mma` when the PTX has those instructions, else
`fma`. Where backend "auto" does not launch a kernel (pooling attention in fp32 or below sm_80:
`pooling_attention.triton_supported`), the row says `sdpa` and why, and nothing is compiled. A first compile
takes seconds per kernel; Triton's cache is bypassed so that ptxas reports every time.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Optional

import torch

from dalitrain.errors import UsageError
from dalitrain.kernels._backend import HAVE_TRITON

# Opt-in maximum shared memory per block (CUDA C programming guide, compute capabilities table).
SHARED_LIMIT_BYTES = {70: 98304, 75: 65536, 80: 166912, 86: 101376, 89: 101376, 90: 232448}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_PTXAS_REGISTERS = re.compile(r"Used (\d+) registers")
_PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores")


def model_head_dims() -> list[int]:
    """Attention head dims of every registered model (built on the meta device: no memory, no compute)."""
    from dalitrain.models.registry import create_backbone, list_models

    dims = set()
    for name in list_models():
        with torch.device("meta"):
            model = create_backbone(name)
        dims |= {m.qkv.out_features // 3 // m.num_heads for m in model.modules()
                 if hasattr(m, "qkv") and hasattr(m, "num_heads")}
    return sorted(dims)


def _compile(kernel, types: dict, constexprs: dict, arch: int) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = {name: "constexpr" if name in constexprs else types.get(name, "i32") for name in kernel.arg_names}
    log = io.StringIO()
    with _ptxas_report(), contextlib.redirect_stdout(log):  # Triton prints ptxas's -v report to stdout
        compiled = triton.compile(ASTSource(kernel, signature, constexprs), target=GPUTarget("cuda", arch, 32))
    registers, frame = _PTXAS_REGISTERS.search(log.getvalue()), _PTXAS_FRAME.search(log.getvalue())
    if registers is None or frame is None:
        raise RuntimeError(f"{kernel.__name__} sm_{arch}: no ptxas report in Triton's output")
    ptx = compiled.asm["ptx"]
    return {"shared_bytes": compiled.metadata.shared, "registers": int(registers.group(1)),
            "stack_bytes": int(frame.group(1)), "spill_bytes": int(frame.group(2)),
            "tensor_cores": "wgmma" if "wgmma" in ptx else "mma" if "mma.sync" in ptx else "fma"}


@contextlib.contextmanager
def _ptxas_report():
    import triton

    knobs = (triton.knobs.nvidia, "dump_ptxas_log"), (triton.knobs.compilation, "always_compile")
    before = [getattr(obj, name) for obj, name in knobs]
    for obj, name in knobs:
        setattr(obj, name, True)
    try:
        yield
    finally:
        for (obj, name), value in zip(knobs, before):
            setattr(obj, name, value)


def kernel_rows(arch: int, dtypes: list[str], head_dims: list[int]) -> list[dict]:
    from dalitrain.kernels import informative_loss, pooling_attention

    limit = SHARED_LIMIT_BYTES[arch]
    rows = []
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        variants = [(head_dim, variant) for head_dim in head_dims
                    for variant in pooling_attention.compile_variants(dtype, head_dim)]
        variants += [(None, v) for v in informative_loss.compile_variants(dtype)]
        launched, reason = pooling_attention.triton_supported(dtype, (arch // 10, arch % 10))
        for head_dim, (name, kernel, types, constexprs) in variants:
            row = {"arch": arch, "kernel": name, "dtype": dtype_name, "head_dim": head_dim, "limit_bytes": limit,
                   "tiles": {k: v for k, v in constexprs.items() if k.startswith(("BLOCK", "DH_PAD"))}}
            if name.startswith("pooling_attention") and not launched:
                rows.append({**row, "path": "sdpa", "why": reason})
                continue
            row.update(path="triton", **_compile(kernel, types, constexprs, arch))
            row["fits"] = row["shared_bytes"] <= limit
            rows.append(row)
    return rows


def _dedupe_padded(head_dims: list[int]) -> list[int]:
    """One head dim per padded width: the kernels compile the same for 80 and 96 (both padded to 128)."""
    from dalitrain.kernels.pooling_attention import padded_head_dim

    padded: dict[int, int] = {}
    for d in head_dims:
        padded.setdefault(padded_head_dim(d), d)
    return sorted(padded.values())


def report(archs: list[int], dtypes: list[str], head_dims: Optional[list[int]], json_path: Optional[Path]) -> int:
    if not HAVE_TRITON:
        raise UsageError("dalitrain info kernels compiles the Triton kernels, and Triton is not installed "
                         "(pip install triton, Linux)")
    head_dims = _dedupe_padded(head_dims or model_head_dims())
    rows = [row for arch in archs for row in kernel_rows(arch, dtypes, head_dims)]
    print(f"{'sm':>3} {'kernel':<40} {'dtype':<5} {'dh':>4} {'path':<6} {'shared/limit KB':>16} {'regs':>5} "
          f"{'spill B':>8} {'cores':<6}")
    for r in rows:
        dh = "" if r["head_dim"] is None else str(r["head_dim"])
        if r["path"] == "sdpa":
            print(f"{r['arch']:>3} {r['kernel']:<40} {r['dtype']:<5} {dh:>4} sdpa   {r['why']}")
            continue
        shared = f"{r['shared_bytes'] / 1024:.1f}/{r['limit_bytes'] / 1024:.1f}" + ("" if r["fits"] else " OVER")
        print(f"{r['arch']:>3} {r['kernel']:<40} {r['dtype']:<5} {dh:>4} triton {shared:>16} {r['registers']:>5} "
              f"{r['spill_bytes']:>8} {r['tensor_cores']:<6}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["path"] == "sdpa" or r["fits"] for r in rows) else 1
