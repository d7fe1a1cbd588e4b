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
