"""What makes figures comparable between runs, read in the measuring process."""

from __future__ import annotations

from typing import Any

from . import allocator, graphs
from .nvml import nvml


def machine_info() -> dict[str, Any]:
    """GPUs, driver, torch, CUDA, allocator settings and how graphs are measured; creates
    no CUDA context."""
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
        "graph_tracking": graphs.mechanism().name,
        "graph_pools": allocator.describe_pool_source(),
        "nvml": meter.ok,
    }
