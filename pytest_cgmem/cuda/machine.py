"""What makes figures comparable between runs, read in the measuring process."""

from __future__ import annotations

from typing import Any

from . import allocator
from .nvml import nvml


def machine_info() -> dict[str, Any]:
    """GPUs, driver, torch, CUDA and allocator settings; creates no CUDA context."""
    meter = nvml()
    torch_version, cuda_version = allocator.versions()
    settings, source = allocator.allocator_settings()
    return {
        "gpus": meter.visible_names(),
        "driver": meter.driver_version(),
        "torch": torch_version,
        "cuda": cuda_version,
        "allocator_backend": allocator.backend(),
        "alloc_conf": settings,
        "alloc_conf_source": source,
        "nvml": meter.ok,
    }
