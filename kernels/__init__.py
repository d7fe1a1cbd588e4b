"""Triton kernels, each beside its PyTorch reference. Never imports the rest of dalitrain."""
