"""What the installed torch is and how it reads its allocator settings, without importing it.

Importing torch costs 2-3 s a process. Where the installed torch is a build without CUDA or
ROCm, nothing the plugin measures can run, and its version file says so: marked tests skip
and the machine is recorded without that import. Pure (reads one file); imports no torch.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from . import _genuine

ALLOC_CONF_VARS = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_HIP_ALLOC_CONF", "PYTORCH_ALLOC_CONF")
"""In the order torch reads them (the first that is set wins)."""
SHARED_CONF_SINCE = (2, 10)
"""The torch that reads ``PYTORCH_ALLOC_CONF``, and ``PYTORCH_HIP_ALLOC_CONF`` in a CUDA
build (a ROCm build reads the HIP variable in every version)."""
ASYNC_BACKEND = "cudaMallocAsync"
ROCM_ASYNC_BACKEND = "hipMallocAsync"
"""What a ROCm build calls its async backend: it takes either name in the settings and
``torch.cuda.get_allocator_backend()`` answers this one (c10's allocator config)."""
ASYNC_BACKENDS = frozenset((ASYNC_BACKEND, ROCM_ASYNC_BACKEND))
UNKNOWN_BACKEND = "unknown"
"""The allocator backend where torch cannot say (a CPU build among them)."""


def version_tuple(version: str) -> tuple[int, int]:
    """``"2.13.0+cpu"`` -> ``(2, 13)``; ``(0, 0)`` when it can't be read."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def alloc_conf_from_env(
    environ: Mapping[str, str], version: tuple[int, int], *, rocm: bool = False
) -> tuple[str, str]:
    """The allocator settings torch takes from ``environ``, and the variable they came from
    (``""`` when none is set).

    As torch reads them (c10's allocator configs, checked in the wheels of 2.4 to 2.15 and
    on 2.11, 2.13 and 2.14 builds): the first variable that is *set* is used whole, even
    when empty, ``PYTORCH_CUDA_ALLOC_CONF`` first, then ``PYTORCH_HIP_ALLOC_CONF``, then
    ``PYTORCH_ALLOC_CONF``. Before 2.10 a CUDA build reads only the CUDA variable, and a
    ROCm build the CUDA and HIP ones.
    """
    cuda, hip, shared = ALLOC_CONF_VARS
    if version >= SHARED_CONF_SINCE:
        names: tuple[str, ...] = (cuda, hip, shared)
    else:
        names = (cuda, hip) if rocm else (cuda,)
    for name in names:
        if name in environ:
            return environ[name], name
    return "", ""


def backend_conf_from_env(
    environ: Mapping[str, str], version: tuple[int, int], *, rocm: bool = False
) -> str:
    """The settings torch reads the allocator's backend from: ``alloc_conf_from_env``'s,
    but a CUDA build of 2.10 and later reads its CUDA-only keys (``backend`` among them)
    from ``PYTORCH_CUDA_ALLOC_CONF``, then ``PYTORCH_ALLOC_CONF``, never from the HIP
    variable that its general keys read (c10/cuda/CUDAAllocatorConfig.h)."""
    if rocm or version < SHARED_CONF_SINCE:
        return alloc_conf_from_env(environ, version, rocm=rocm)[0]
    cuda, _, shared = ALLOC_CONF_VARS
    for name in (cuda, shared):
        if name in environ:
            return environ[name]
    return ""


def version_file_fields(text: str) -> dict[str, object] | None:
    """A torch ``version.py``'s ``__version__``, ``cuda`` and ``hip`` (None where a file is
    not as expected)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    values: dict[str, object] = {}
    for node in tree.body:
        target: ast.expr | None = None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            values[target.id] = value.value
    version = values.get("__version__")
    if not isinstance(version, str) or "cuda" not in values or "hip" not in values:
        return None
    return {name: values[name] for name in ("__version__", "cuda", "hip")}


def version_file_build(text: str) -> str | None:
    """The version a torch ``version.py`` names when it is a build without CUDA or ROCm
    (``cuda`` and ``hip`` both None); None for a GPU build or a file not as expected."""
    return _cpu_build_version(version_file_fields(text))


def _cpu_build_version(fields: Mapping[str, object] | None) -> str | None:
    if fields is None or fields["cuda"] is not None or fields["hip"] is not None:
        return None
    return str(fields["__version__"])


@functools.cache
def installed_version_fields() -> dict[str, object] | None:
    """The installed torch's ``version.py`` fields, read without importing torch (None
    where torch is not installed or its file is not as expected)."""
    try:
        spec = importlib.util.find_spec("torch")
        locations = None if spec is None else spec.submodule_search_locations
        if not locations:
            return None
        text = (Path(next(iter(locations))) / "version.py").read_text(encoding="utf-8")
    except (OSError, ValueError, ImportError, UnicodeDecodeError):
        return None
    return version_file_fields(text)


def _installed_cpu_build() -> str | None:
    return _cpu_build_version(installed_version_fields())


def backend_from_settings(settings: str, *, rocm: bool = False) -> str:
    """The allocator backend an allocator settings string asks for (``native`` unless
    ``backend:cudaMallocAsync``), named as a GPU build names it once CUDA starts: a ROCm
    build also takes ``hipMallocAsync`` and calls either that."""
    accepted = ASYNC_BACKENDS if rocm else {ASYNC_BACKEND}
    for item in settings.split(","):
        key, _, value = item.partition(":")
        if key.strip() == "backend" and value.strip() in accepted:
            return ROCM_ASYNC_BACKEND if rocm else ASYNC_BACKEND
    return "native"


@functools.cache
def _torch_found() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def torch_installed() -> bool:
    """Whether torch can be imported here (torch is no dependency of the plugin): not where
    a stand-in (a bare module, a MagicMock) took its place in ``sys.modules``, where the
    plugin's own ``import torch`` would get the stand-in."""
    if "torch" in sys.modules:
        return _genuine(sys.modules["torch"])
    return _torch_found()


def cpu_only_torch() -> str | None:
    """The installed torch's version when it is a build without CUDA or ROCm, read from its
    ``version.py``; None when torch is imported already (ask it instead), is not
    installed, is a GPU build, or its version file is not as expected."""
    if "torch" in sys.modules:
        return None
    return _installed_cpu_build()
