"""The torch door: the only package that imports torch or pynvml (each module lazily,
when a test asks for GPU memory figures). Importing this package itself imports neither."""

from __future__ import annotations

import sys


def cuda_started() -> bool:
    """Whether this process has a CUDA context already (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and bool(torch.cuda.is_initialized())
