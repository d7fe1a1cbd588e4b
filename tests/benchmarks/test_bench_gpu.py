"""`dalitrain bench gpu` without a GPU: it lists its checks and exits 0; every check is documented."""
import pytest
import torch

from dalitrain.benchmarks import bench_gpu


@pytest.mark.skipif(torch.cuda.is_available(), reason="the plumbing test is for machines without CUDA")
def test_without_cuda_it_lists_the_checks_and_succeeds(capsys):
    assert bench_gpu.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dalitrain bench gpu: no CUDA device here")
    assert [line.strip() for line in lines[1:]] == list(bench_gpu.CHECKS)
    assert bench_gpu.main(["--only", "train.step"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["  train.step"]


def test_every_check_is_described_in_the_docstring():
    assert len(bench_gpu.CHECKS) >= 8
    for name in bench_gpu.CHECKS:
        assert f"\n  {name} " in bench_gpu.__doc__, name


def test_an_unknown_check_is_refused():
    with pytest.raises(SystemExit):
        bench_gpu.main(["--only", "kernels.nothing"])


def test_every_name_the_gpu_checks_import_exists():
    """The checks import lazily and only run on a GPU: a renamed function would first fail there."""
    import ast
    import importlib
    from pathlib import Path

    tree = ast.parse(Path(bench_gpu.__file__).read_text())
    lazy = [node for function in ast.walk(tree) if isinstance(function, ast.FunctionDef)
            for node in ast.walk(function) if isinstance(node, ast.ImportFrom)]
    assert lazy
    for node in lazy:
        module = importlib.import_module(node.module)
        for alias in node.names:
            assert hasattr(module, alias.name), f"{node.module}.{alias.name}"


def test_the_gpu_chart_shows_kernel_tflops_and_the_step_mfu():
    results = {"attention.speed": {"rows": [{"shape": {"B": 1, "h": 1, "Lq": 6272, "Lkv": 98, "dh": 96},
                                             "tflops": {"dalitrain": 120.0, "sdpa_flash": 100.0}}]},
               "train.step": {"rows": [{"checkpointing": False, "mfu": 0.25}, {"checkpointing": True, "mfu": 0.2}]}}
    ax = bench_gpu.gpu_chart(results, "H200").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "attention B1 h1 Lq6272 Lkv98 dh96", "MViTv2-S step", "MViTv2-S step + ckpt"]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [120.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 25.0, 20.0]  # per series: dalitrain, sdpa, MFU
    assert bench_gpu.gpu_chart({}, "H200") is None
