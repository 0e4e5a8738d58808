"""GPU tests: skipped without a CUDA device, errors with --gpu (scripts/gpu-check runs them)."""

from __future__ import annotations

import os


def expandable_segments() -> bool:
    """Whether this process runs PyTorch's allocator with ``expandable_segments:True``."""
    conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "").replace(" ", "").lower()
    return "expandable_segments:true" in conf
