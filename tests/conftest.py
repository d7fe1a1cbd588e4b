import os

# Triton kernels run on the CPU through the interpreter in tests (no GPU on development or CI machines).
os.environ.setdefault("TRITON_INTERPRET", "1")
