"""What makes figures comparable between runs, read in the measuring process."""

from __future__ import annotations

import os
from typing import Any

from .installed import (
    UNKNOWN_BACKEND,
    alloc_conf_from_env,
    cpu_only_torch,
    torch_installed,
    version_tuple,
)
from .nvml import nvml


def machine_info() -> dict[str, Any]:
    """GPUs, driver, torch, CUDA, allocator settings and how graphs are measured; creates
    no CUDA context.

    Where the installed torch is a build without CUDA or ROCm, torch is not imported: its
    version file says what it is, the settings are those of the environment, and the
    graph keys are null (no graph can be captured), as they are when torch is imported.
    Where no torch is installed, the torch keys are null too.
    """
    cpu_version = cpu_only_torch()
    if not torch_installed():
        torch_version = cuda_version = tracking = pools = None
        backend, settings, source = UNKNOWN_BACKEND, "", ""
    elif cpu_version is not None:
        torch_version, cuda_version, backend = cpu_version, None, UNKNOWN_BACKEND
        settings, source = alloc_conf_from_env(os.environ, version_tuple(cpu_version))
        tracking = pools = None
    else:
        from . import allocator, graphs

        torch_version, cuda_version = allocator.versions()
        backend = allocator.backend()
        settings, source = allocator.allocator_settings()
        gpu_build = allocator.gpu_build()
        tracking = graphs.mechanism().name if gpu_build else None
        pools = allocator.describe_pool_source() if gpu_build else None
    meter = nvml()
    return {
        "gpus": meter.visible_names(),
        "driver": meter.driver_version(),
        "torch": torch_version,
        "cuda": cuda_version,
        "allocator_backend": backend,
        "alloc_conf": settings,
        "alloc_conf_source": source,
        "graph_tracking": tracking,
        "graph_pools": pools,
        "nvml": meter.ok,
    }
