"""What makes figures comparable between runs, read in the measuring process."""

from __future__ import annotations

import os
import sys
from typing import Any

from ..results.jsonio import valid_text
from .installed import (
    UNKNOWN_BACKEND,
    alloc_conf_from_env,
    backend_conf_from_env,
    backend_from_settings,
    cpu_only_torch,
    installed_version_fields,
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
    Where no torch is installed, the torch keys are null too. Where the process has not
    imported torch (figures given to ``cgmem_record`` by a test that never did), it is not
    imported here either: a test's import of it, seconds long, in the middle of a run would
    change what the tests after it see. The identity is read as pytest-benchmark's is, and
    the graph keys are null: this process measured no graph.
    """
    cpu_version = cpu_only_torch()
    if cpu_version is None and torch_installed() and "torch" not in sys.modules:
        return {
            **identity_without_torch(),
            "graph_tracking": None,
            "graph_pools": None,
            "nvml": nvml().ok,
        }
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
        "alloc_conf": valid_text(settings),  # the environment's undecodable bytes: written out
        "alloc_conf_source": source,
        "graph_tracking": tracking,
        "graph_pools": pools,
        "nvml": meter.ok,
    }


def identity_without_torch() -> dict[str, Any]:
    """The machine's identity (GPUs, driver, torch, CUDA, allocator backend and settings)
    read without importing torch: NVML, the installed torch's version file and the
    environment. pytest-benchmark's ``machine_info`` takes it, so that a run that saves
    and one that compares say the same whether or not either imported torch."""
    fields = installed_version_fields() or {}
    version = fields.get("__version__")
    cuda, hip = fields.get("cuda"), fields.get("hip")
    settings, source, backend_settings = "", "", ""
    if isinstance(version, str):
        release, rocm = version_tuple(version), hip is not None
        settings, source = alloc_conf_from_env(os.environ, release, rocm=rocm)
        backend_settings = backend_conf_from_env(os.environ, release, rocm=rocm)
    gpu_build = cuda is not None or hip is not None
    meter = nvml()
    return {
        "gpus": meter.visible_names(),
        "driver": meter.driver_version(),
        "torch": version if isinstance(version, str) else None,
        "cuda": cuda if isinstance(cuda, str) else None,
        "allocator_backend": (
            backend_from_settings(backend_settings, rocm=hip is not None)
            if gpu_build
            else UNKNOWN_BACKEND
        ),
        "alloc_conf": valid_text(settings),  # the environment's undecodable bytes: written out
        "alloc_conf_source": source,
    }
