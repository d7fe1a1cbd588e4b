import sys
from pathlib import Path

# The fakes module and the worker script live beside the tests; the worker also runs in subprocesses/torchrun.
sys.path.insert(0, str(Path(__file__).parent))
