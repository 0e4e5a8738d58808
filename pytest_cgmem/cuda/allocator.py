"""torch's door: every reading of PyTorch's CUDA caching allocator, each implemented once.

Regions, graph tracking, the resize checks and diagnostics read the allocator through
these functions and nothing else. Imported lazily: only when a test asks for GPU memory.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch

from ..failures import FigureUnavailable
from ..units import as_whole
from . import cuda_started
from .installed import (
    ASYNC_BACKENDS,
    UNKNOWN_BACKEND,
    alloc_conf_from_env,
    version_tuple,
)

PoolId = tuple[int, int]
Stats = dict[str, Any]

# torch's own torch.cuda, where a fixture set up before this first import replaced the
# attribute (``monkeypatch.setattr(torch, "cuda", fake)``)
_CUDA_STATE: dict[str, Any] = vars(sys.modules["torch.cuda"])
_IN_BAD_FORK: Callable[[], bool] = getattr(torch._C, "_cuda_isInBadFork", lambda: False)


def cuda_available() -> bool:
    """Whether a CUDA device is visible, asked as ``device_count`` asks: through NVML
    where it answers, so the CUDA driver is not initialised before a test's fixtures
    (``is_available`` calls ``cuInit``, after which a forked child cannot use CUDA).
    ``cuda_usable`` confirms it once the fixtures are set up."""
    return int(torch.cuda.device_count()) > 0


def cuda_usable() -> bool:
    """Whether CUDA can start here: ``torch.cuda.is_available()``, which initialises the
    driver (NVML may see a device that a driver too old for torch's CUDA cannot use)."""
    return bool(torch.cuda.is_available())


def device_count() -> int:
    return int(torch.cuda.device_count())


def current_device() -> int:
    """The current CUDA device (straight to torch's binding once CUDA has started)."""
    if cuda_initialized():
        return int(torch._C._cuda_getDevice())
    return int(torch.cuda.current_device())


def stats(index: int) -> Stats:
    """The allocator's counters of one device (``memory_stats_as_nested_dict``'s data).

    ``torch._C._cuda_memoryStats`` is what that function returns, without its Python
    checks: a region reads it on each side and the capture sweep once per capture.
    """
    result: Stats = torch._C._cuda_memoryStats(index)
    return result


def current(reading: Stats, key: str, which: str = "current") -> int:
    """One counter of a reading: ``current(s, "allocated_bytes", "peak")``."""
    return int(reading[key]["all"][which])


def allocated_reserved(index: int) -> tuple[int, int]:
    """(allocated, reserved) bytes on ``index`` now: one reading."""
    reading = stats(index)
    return current(reading, "allocated_bytes"), current(reading, "reserved_bytes")


def synchronize(index: int | None = None) -> None:
    """Wait for ``index`` (default: the current device); once CUDA has started, straight to
    torch's binding (a region does this twice), as ``torch.cuda.synchronize`` does after
    its ``_lazy_init()``, which would call a test's patch of ``is_initialized``."""
    if not cuda_initialized():
        torch.cuda.synchronize(index)
    elif index is None or index == torch._C._cuda_getDevice():
        torch._C._cuda_synchronize()
    else:
        with torch.cuda.device(index):
            torch._C._cuda_synchronize()


def has_context(index: int) -> bool:
    """Whether this process has a CUDA context on ``index``; asking makes none, where
    synchronizing it would (cudaSetDevice makes the context since CUDA 12)."""
    probe: Callable[[int], bool] | None = getattr(torch._C, "_cuda_hasPrimaryContext", None)
    return True if probe is None else bool(probe(index))


def reset_peaks(index: int) -> None:
    """``torch.cuda.reset_peak_memory_stats(index)`` without its argument parsing."""
    torch._C._cuda_resetPeakMemoryStats(index)


def empty_cache() -> None:
    torch.cuda.empty_cache()


def settle_and_empty_cache() -> None:
    """Wait for every device holding memory, then give cached blocks back to the driver."""
    for index in range(device_count()):
        if current(stats(index), "reserved_bytes"):
            synchronize(index)
    torch.cuda.empty_cache()


def clear_cublas_workspaces() -> None:
    """Free the cuBLAS workspaces torch keeps per (handle, stream), where torch can.

    A workspace first used inside a capture lives in that graph's private pool and keeps
    it alive; one made for another stream hides a leak of its size. PyTorch's own leak
    check clears them the same way.
    """
    clear: Callable[[], None] | None = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None:
        clear()


def routes_to_own_pool(torch_module: Any, backend_name: str) -> bool:
    """Whether this torch can route one thread's allocations to a private pool
    (``torch.cuda.MemPool`` with ``use_mem_pool`` over the per-thread routing, torch 2.8+)
    under this allocator backend: torch's own caching allocator alone (cudaMallocAsync
    keeps no pools; an allocator plugged in may not route to one)."""
    cuda = getattr(torch_module, "cuda", None)
    return (
        backend_name == "native"
        and hasattr(cuda, "MemPool")
        and hasattr(cuda, "use_mem_pool")
        and hasattr(getattr(torch_module, "_C", None), "_cuda_beginAllocateCurrentThreadToPool")
    )


_own_pools: dict[int, Any] = {}
_own_pool_usable: bool | None = None


def own_pool(index: int) -> AbstractContextManager[Any]:
    """This thread's allocations on device ``index`` go to the plugin's own private pool,
    kept for the process, where torch can route them (else the default pool, as before).

    The warm-up makes the cuBLAS/cuBLASLt workspaces there, so they never take a block out
    of the cache the code under test warmed, nor move where its tensors land. The pool's
    blocks are counted in allocated and reserved bytes like any other, and
    ``empty_cache`` never gives its segments back.
    """
    global _own_pool_usable
    if _own_pool_usable is None:
        _own_pool_usable = routes_to_own_pool(torch, backend())
    if not _own_pool_usable:
        return contextlib.nullcontext()
    pool = _own_pools.get(index)
    if pool is None:
        if not cuda_initialized():  # a pool needs torch's CUDA state: this may be its start
            torch.cuda.init()  # type: ignore[no-untyped-call]
        with torch.cuda.device(index):
            pool = _own_pools[index] = torch.cuda.MemPool()
    return torch.cuda.use_mem_pool(pool, index)


def own_pool_id(index: int) -> PoolId | None:
    """The id of the plugin's pool on ``index``, None until the warm-up makes one there."""
    pool = _own_pools.get(index)
    return None if pool is None else pool_id(pool)


_cudart: Any = None


def mem_info(index: int) -> tuple[int, int]:
    """(free, total) device bytes as ``cudaMemGetInfo`` sees them: what
    ``torch.cuda.mem_get_info(index)`` returns, straight from ``torch.cuda.cudart()``."""
    global _cudart
    if _cudart is None:
        # once CUDA has started, torch.cuda's own binding: cudart() would call a test's
        # patch of torch.cuda.is_initialized
        _cudart = _CUDA_STATE.get("_cudart") if cuda_initialized() else None
        if _cudart is None:
            _cudart = torch.cuda.cudart()  # type: ignore[no-untyped-call]
    free, total = _cudart.cudaMemGetInfo(index)
    return int(free), int(total)


def device_uuid(index: int) -> Any:
    """The device's UUID (to find its NVML handle); call it outside a capture. Once CUDA
    has started, through the getter torch's CUDA start defines (``get_device_properties``
    would call a test's patch of ``torch.cuda.is_initialized``)."""
    getter = _CUDA_STATE.get("_get_device_properties") if cuda_initialized() else None
    if getter is None:
        return torch.cuda.get_device_properties(index).uuid
    return getter(index).uuid


def cuda_initialized() -> bool:
    """``torch.cuda.is_initialized()`` read as that function reads it, from torch's own
    state (``cuda_started`` says why), at a region's pace: no stand-in check is needed
    where torch itself is imported."""
    return _CUDA_STATE.get("_initialized") is True and not _IN_BAD_FORK()


def free_bytes(index: int) -> int | None:
    try:
        return mem_info(index)[0]
    except Exception:
        return None


def snapshot() -> dict[str, Any]:
    """The allocator's state (segments, blocks) and recorded history, as plain data.

    Raises under ``backend:cudaMallocAsync``, which keeps no blocks: ask
    ``snapshots_available()`` first.
    """
    return dict(torch.cuda.memory._snapshot())


def _has_parameter(fn: object, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def light_snapshots(torch_module: Any) -> bool:
    """Whether ``torch.cuda.memory_snapshot`` takes ``include_traces`` (torch 2.11+): a
    snapshot without the recorded history's trace entries."""
    fn = getattr(getattr(torch_module, "cuda", None), "memory_snapshot", None)
    return fn is not None and _has_parameter(fn, "include_traces")


_snapshot_params: tuple[bool, bool] | None = None


def _snapshot_takes() -> tuple[bool, bool]:
    """(include_traces, mempool_id): what this torch's memory_snapshot takes, read once."""
    global _snapshot_params
    if _snapshot_params is None:
        take = torch.cuda.memory_snapshot
        _snapshot_params = (light_snapshots(torch), _has_parameter(take, "mempool_id"))
    return _snapshot_params


def per_pool_stats(torch_module: Any) -> bool:
    """Whether this torch's ``memory_stats`` carry each private pool's reserved bytes
    (``reserved_bytes_by_private_pools``, torch 2.13+): torch documents the key in
    ``memory_stats``' docstring; without docstrings (``python -OO``), the version says."""
    fn = getattr(getattr(torch_module, "cuda", None), "memory_stats", None)
    doc = getattr(fn, "__doc__", None)
    if doc:
        return POOL_STATS_KEY in doc
    return version_tuple(str(getattr(torch_module, "__version__", ""))) >= (2, 13)


def choose_pool_source(torch_module: Any) -> str:
    """Where graph pool bytes come from on this torch (pure given its attributes):
    ``"stats"`` (per-pool reserved stats, 2.13+), ``"light snapshot"`` (snapshot
    segments without traces, 2.11+) or ``"snapshot"`` (older torch)."""
    if per_pool_stats(torch_module):
        return "stats"
    if light_snapshots(torch_module):
        return "light snapshot"
    return "snapshot"


POOL_SOURCE_NAMES = {
    "stats": "memory_stats reserved_bytes_by_private_pools",
    "light snapshot": "memory_snapshot(include_traces=False) segments",
    "snapshot": "memory_snapshot segments",
}

_pool_source: str | None = None


def pool_source() -> str:
    """This process's pool source (``choose_pool_source`` of the torch imported here);
    ``"unavailable"`` under ``backend:cudaMallocAsync``."""
    global _pool_source
    if _pool_source is None:
        _pool_source = "unavailable" if is_async_backend() else choose_pool_source(torch)
    return _pool_source


def describe_pool_source() -> str:
    source = pool_source()
    if source == "unavailable":
        return f"unavailable (backend:{backend()} keeps no graph pools)"
    return POOL_SOURCE_NAMES[source]


def _snapshot_segments(mempool: PoolId | None = None) -> list[dict[str, Any]]:
    """Segments of every device (or of one pool), without history traces where torch can."""
    take: Any = torch.cuda.memory_snapshot
    light, by_pool = _snapshot_takes()
    if light:
        if mempool is None:
            return list(take(include_traces=False))
        return list(take(mempool_id=mempool, include_traces=False))
    if mempool is not None and by_pool:  # torch 2.8 - 2.10
        return list(take(mempool_id=mempool))
    found: list[dict[str, Any]] = snapshot()["segments"]
    if mempool is None:
        return found
    return [s for s in found if pool_id(s.get("segment_pool_id")) == mempool]


def segments(device: int | None = None) -> list[dict[str, Any]]:
    """The allocator's segments and their blocks (every device, or one), from one
    snapshot without the history's trace entries where torch can."""
    found = _snapshot_segments()
    return found if device is None else [s for s in found if s.get("device") == device]


def pool_id(pool: object) -> PoolId | None:
    """A pool handle (``graph_pool_handle()``, ``g.pool()``, a ``MemPool``, a pair of
    integers) as a plain int pair; None for anything else: a string (``"12"`` would unpack
    as 1, 2), floats, bools."""
    if pool is None or isinstance(pool, (str, bytes)):
        return None
    if not isinstance(pool, (tuple, list)):
        pool = getattr(pool, "id", pool)  # torch.cuda.MemPool
    try:
        first, second = (as_whole(half) for half in pool)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return None if first is None or second is None else (first, second)


def pool_segments(device: int | None = None) -> dict[tuple[int, PoolId], int]:
    """Bytes of every pool's segments, keyed by (device, pool id), from one snapshot."""
    held: dict[tuple[int, PoolId], int] = {}
    for segment in segments(device):
        pid = pool_id(segment.get("segment_pool_id"))
        if pid is None:
            continue
        key = (int(segment["device"]), pid)
        held[key] = held.get(key, 0) + int(segment["total_size"])
    return held


POOL_STATS_KEY = "reserved_bytes_by_private_pools"
POOLS_UNAVAILABLE = "cgmem: CUDA graph pool bytes are unavailable here: {}"


def _stat_pool_id(key: object) -> PoolId | None:
    if isinstance(key, str):  # the flattened form joins the pair with "_"
        first, sep, second = key.partition("_")
        if not sep:
            return None
        try:
            return (int(first), int(second))
        except ValueError:
            return None
    return pool_id(key)


def parse_pool_stats(reading: Mapping[str, Any]) -> dict[PoolId, int] | None:
    """Each private pool's current reserved bytes from one device's memory stats, or
    None when the reading has no per-pool figures (torch before 2.13).

    Takes the nested form (``memory_stats_as_nested_dict``, ``_cuda_memoryStats``:
    ``{"reserved_bytes_by_private_pools": {(0, 1): {"all": {"current": n}}}}``) and the
    flat one of ``memory_stats()`` (``"reserved_bytes_by_private_pools.0_1.all.current"``).
    Pools whose memory is gone (current 0: torch keeps their entries until a reset) are
    left out, as they are from a snapshot.
    """
    result: dict[PoolId, int] = {}
    nested = reading.get(POOL_STATS_KEY)
    if isinstance(nested, Mapping):
        for key, value in nested.items():
            pid = _stat_pool_id(key)
            if pid is None or not isinstance(value, Mapping):
                continue
            size = int(value.get("all", {}).get("current", 0))
            if size:
                result[pid] = size
        return result
    prefix, suffix = POOL_STATS_KEY + ".", ".all.current"
    flat = [k for k in reading if isinstance(k, str) and k.startswith(prefix)]
    if not flat:
        return None
    for key in flat:
        if key.endswith(suffix):
            pid = _stat_pool_id(key[len(prefix) : -len(suffix)])
            size = int(reading[key])
            if pid is not None and size:
                result[pid] = size
    return result


def pool_reserved() -> dict[tuple[int, PoolId], int]:
    """Bytes each graph pool holds, keyed by (device, pool id): from the per-pool stats
    where torch has them (2.13+), else from snapshot segments (without traces where torch
    can). Raises ``FigureUnavailable`` under ``backend:cudaMallocAsync``."""
    source = pool_source()
    if source == "unavailable":
        raise FigureUnavailable(POOLS_UNAVAILABLE.format(unavailable_reason("graph_pool")))
    if source == "stats":
        held: dict[tuple[int, PoolId], int] = {}
        for index in range(device_count()):
            parsed = parse_pool_stats(stats(index))
            if parsed is None:  # no per-pool figures after all: read the snapshot
                break
            held.update({(index, pid): size for pid, size in parsed.items()})
        else:
            return held
    return {k: v for k, v in pool_segments().items() if k[1] != (0, 0)}


def pool_total(pid: PoolId) -> int:
    """Bytes one pool holds now, on every device: its per-pool stat where torch has one,
    else the snapshot of that pool only."""
    if pool_source() == "stats":
        return sum(v for (_, p), v in pool_reserved().items() if p == pid)
    if pool_source() == "unavailable":
        raise FigureUnavailable(POOLS_UNAVAILABLE.format(unavailable_reason("graph_pool")))
    return sum(int(segment["total_size"]) for segment in _snapshot_segments(pid))


# the allocator backend and its settings --------------------------------------------------
_backend: str | None = None


def backend() -> str:
    """``native`` or ``cudaMallocAsync`` (``hipMallocAsync`` on ROCm), read once: torch
    fixes it when CUDA starts."""
    global _backend
    if _backend is None:
        try:
            _backend = str(torch.cuda.get_allocator_backend())
        except Exception:
            return UNKNOWN_BACKEND
    return _backend


def is_async_backend() -> bool:
    return backend() in ASYNC_BACKENDS


def readable_in_capture() -> bool:
    """Whether the allocator's stats may be read while a CUDA graph capture is underway.

    Not under cudaMallocAsync: its stats query the driver's memory pool, and that call
    invalidates the capture (plain ``torch.cuda.memory_stats()`` fails the same way).
    """
    return not is_async_backend()


def snapshots_available() -> bool:
    """Whether the allocator keeps blocks a snapshot can list (not under cudaMallocAsync)."""
    return not is_async_backend()


def unavailable_figures() -> dict[str, str]:
    """The region metrics this process's allocator cannot give, each with its reason
    (docs/measuring.md): the async backend, by the name torch gives it here, keeps no
    graph pools."""
    if not is_async_backend():
        return {}
    return {
        "graph_pool": (
            f"backend:{backend()} keeps no graph pools: captured allocations become CUDA "
            "graph memory that neither the allocator's snapshot nor its stats list"
        )
    }


def unavailable_reason(metric: str) -> str:
    return unavailable_figures().get(metric) or f"{metric} is unavailable here"


RUNTIME_SETTINGS = "set at runtime"


def allocator_settings() -> tuple[str, str]:
    """(settings, source) as this torch uses them: once CUDA has started, its own getter
    where it has one (``torch._C._accelerator_getAllocatorSettings``, 2.12+: the last
    settings string it parsed), else the environment read as torch reads it. Before CUDA
    starts the getter is not called: its first call parses the environment once for good,
    and a suite's fixture may still set it. ``source`` names the variable,
    ``"set at runtime"`` when the getter's string differs from the environment's, or
    ``""`` when nothing is set."""
    value, source = alloc_conf_from_env(
        os.environ, version_tuple(str(torch.__version__)), rocm=torch.version.hip is not None
    )
    getter: Callable[[], object] | None = getattr(
        torch._C, "_accelerator_getAllocatorSettings", None
    )
    if getter is not None and cuda_started():
        try:
            got = str(getter())
        except Exception:
            return value, source
        if got != value:
            return got, RUNTIME_SETTINGS
    return value, source


def alloc_conf() -> str:
    """The allocator settings string torch uses (``allocator_settings``)."""
    return allocator_settings()[0]


def history_enabled() -> bool:
    """Whether the allocator records history now (someone else may have switched it on)."""
    probe = getattr(torch._C, "_cuda_isHistoryEnabled", None)
    return bool(probe()) if probe is not None else False


def start_history(max_entries: int) -> None:
    """Record alloc/free events with their Python stacks, forgetting earlier history."""
    record: Any = torch.cuda.memory._record_memory_history
    try:
        record("all", context="alloc", stacks="python", max_entries=max_entries, clear_history=True)
    except TypeError:  # a torch without clear_history
        record(None)
        record("all", context="alloc", stacks="python", max_entries=max_entries)


def stop_history() -> None:
    """Stop recording; torch drops the recorded events with it."""
    record: Any = torch.cuda.memory._record_memory_history
    record(None)


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's CUDA out-of-memory error (torch's own class, where a test
    patched ``torch.cuda``)."""
    error = getattr(sys.modules.get("torch.cuda"), "OutOfMemoryError", None)
    return isinstance(error, type) and isinstance(exc, error)


def torch_dir() -> str:
    return os.path.dirname(os.path.abspath(torch.__file__))


def versions() -> tuple[str, str | None]:
    """(torch, CUDA) versions."""
    return str(torch.__version__), torch.version.cuda


def gpu_build() -> bool:
    """Whether this torch was built with CUDA or ROCm (a CPU build can capture no graph)."""
    return torch.version.cuda is not None or getattr(torch.version, "hip", None) is not None


def torch_segment_summary(data: dict[str, Any]) -> str | None:
    """torch's own text rendering of the segments (``_memory_viz.segsum``), where it works."""
    try:
        from torch.cuda import _memory_viz

        segsum: Callable[[dict[str, Any]], str] = _memory_viz.segsum
        return str(segsum(data))
    except Exception:
        return None
