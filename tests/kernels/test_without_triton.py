"""Where Triton cannot install, dalitrain still imports and every kernel runs its PyTorch reference."""
import subprocess
import sys

SCRIPT = r"""
import sys
sys.modules["triton"] = None  # `import triton` now raises ImportError, as on a machine without it
import torch
import dalitrain.models
from dalitrain.kernels._backend import HAVE_TRITON
from dalitrain.kernels.informative_loss import informative_loss, informative_loss_ref
from dalitrain.kernels.pooling_attention import pooling_attention, pooling_attention_ref
from dalitrain.errors import UsageError
assert not HAVE_TRITON
q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
torch.testing.assert_close(pooling_attention(q, k, v), pooling_attention_ref(q, k, v))
z = torch.randn(6, 4)
torch.testing.assert_close(informative_loss(z), informative_loss_ref(z))
model = dalitrain.models.create_backbone("vivit_fe_tiny")
assert model(torch.randn(1, 3, 8, 64, 64)).shape == (1, 96)
try:
    pooling_attention(q, k, v, backend="triton")
except UsageError as err:
    print(err)
"""


def test_import_and_kernels_without_triton():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "pooling_attention: backend='triton' but Triton is not installed (pip install " \
                                  "triton, Linux)"
