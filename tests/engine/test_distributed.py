"""Device decisions that the CPU can check without a GPU: bf16 only where it is native, per-device RNG state."""
import pytest
import torch

from dalitrain.engine.distributed import native_bf16
from dalitrain.engine.state import rng_state, set_rng_state


@pytest.mark.parametrize("capability, expected", [((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_bf16_autocast_only_from_ampere_on(monkeypatch, capability, expected):
    # torch.cuda.is_bf16_supported() says True on a V100 by emulation; the capability decides
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert native_bf16(torch.device("cuda", 1)) is expected
    assert native_bf16(torch.device("cpu")) is False


def test_rng_state_keeps_only_its_own_device(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls.append(device) or torch.zeros(8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append(("set", device)))
    state = rng_state(torch.device("cuda", 3))
    assert calls == [torch.device("cuda", 3)] and state["cuda"].shape == (8,)
    set_rng_state(state, torch.device("cuda", 1))  # resumed under another GPU layout: onto this rank's GPU
    assert calls[-1] == ("set", torch.device("cuda", 1))
    cpu = rng_state(torch.device("cpu"))
    assert cpu["cuda"] is None
    first = torch.rand(3)
    torch.rand(5)
    set_rng_state(cpu, torch.device("cpu"))  # the streams continue from where the state was taken
    assert torch.equal(torch.rand(3), first)
