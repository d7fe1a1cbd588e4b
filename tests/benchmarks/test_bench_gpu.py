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
