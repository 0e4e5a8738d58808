"""torch's door: every reading of PyTorch's CUDA caching allocator, each implemented once.

Regions, graph tracking, the resize checks and diagnostics read the allocator through
these functions and nothing else. Imported lazily: only when a test asks for GPU memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

PoolId = tuple[int, int]
Stats = dict[str, Any]


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def device_count() -> int:
    return int(torch.cuda.device_count())


def current_device() -> int:
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
    torch.cuda.synchronize(index)


def reset_peaks(index: int) -> None:
    torch.cuda.reset_peak_memory_stats(index)


def empty_cache() -> None:
    torch.cuda.empty_cache()


def settle_and_empty_cache() -> None:
    """Wait for every device holding memory, then give cached blocks back to the driver."""
    for index in range(device_count()):
        if current(stats(index), "reserved_bytes"):
            torch.cuda.synchronize(index)
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


def mem_info(index: int) -> tuple[int, int]:
    """(free, total) device bytes as ``cudaMemGetInfo`` sees them."""
    free, total = torch.cuda.mem_get_info(index)
    return int(free), int(total)


def free_bytes(index: int) -> int | None:
    try:
        return mem_info(index)[0]
    except Exception:
        return None


def snapshot() -> dict[str, Any]:
    """The allocator's state (segments, blocks) and recorded history, as plain data."""
    return dict(torch.cuda.memory._snapshot())


def segments(device: int | None = None) -> list[dict[str, Any]]:
    """The allocator's segments (every device, or one), from one snapshot."""
    found: list[dict[str, Any]] = snapshot()["segments"]
    return found if device is None else [s for s in found if s.get("device") == device]


def pool_id(pool: object) -> PoolId | None:
    """A pool handle (``graph_pool_handle()``, ``g.pool()``, a pair) as a plain int pair."""
    if pool is None:
        return None
    try:
        first, second = pool  # type: ignore[misc]
        return (int(first), int(second))  # type: ignore[has-type]
    except (TypeError, ValueError):
        return None


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


def pool_total(pid: PoolId) -> int:
    """Bytes one pool's segments hold now: torch's snapshot of that pool only."""
    found: list[dict[str, Any]] = torch.cuda.memory_snapshot(mempool_id=pid)  # type: ignore[no-untyped-call]
    return sum(int(segment["total_size"]) for segment in found)


def backend() -> str:
    try:
        return str(torch.cuda.get_allocator_backend())
    except Exception:
        return "unknown"


def version_tuple(version: str) -> tuple[int, int]:
    """``"2.13.0+cpu"`` -> ``(2, 13)``; ``(0, 0)`` when it can't be read."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


ALLOC_CONF_VARS = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")
RUNTIME_SETTINGS = "set at runtime"


def alloc_conf_from_env(environ: Mapping[str, str], version: tuple[int, int]) -> tuple[str, str]:
    """The allocator settings torch takes from ``environ``, and the variable they came from
    (``""`` when none is set). Pure.

    As torch reads them (c10's allocator configs, checked in the wheels of 2.4 to 2.15 and
    on 2.13 and 2.14 builds): the first variable that is *set* is used whole, even when
    empty, ``PYTORCH_CUDA_ALLOC_CONF`` first; torch 2.10 and newer fall back to
    ``PYTORCH_ALLOC_CONF`` when it is unset, while before 2.10 the CUDA allocator reads
    only ``PYTORCH_CUDA_ALLOC_CONF``.
    """
    names = ALLOC_CONF_VARS if version >= (2, 10) else ALLOC_CONF_VARS[:1]
    for name in names:
        if name in environ:
            return environ[name], name
    return "", ""


def allocator_settings() -> tuple[str, str]:
    """(settings, source) as this torch uses them: its own getter where it has one
    (``torch._C._accelerator_getAllocatorSettings``, 2.12+: the last settings string it
    parsed), else the environment read as torch reads it. ``source`` names the variable,
    ``"set at runtime"`` when the getter's string differs from the environment's, or
    ``""`` when nothing is set."""
    value, source = alloc_conf_from_env(os.environ, version_tuple(str(torch.__version__)))
    getter: Callable[[], object] | None = getattr(
        torch._C, "_accelerator_getAllocatorSettings", None
    )
    if getter is not None:
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
    return isinstance(exc, torch.cuda.OutOfMemoryError)


def torch_dir() -> str:
    return os.path.dirname(os.path.abspath(torch.__file__))


def versions() -> tuple[str, str | None]:
    """(torch, CUDA) versions."""
    return str(torch.__version__), torch.version.cuda


def torch_segment_summary(data: dict[str, Any]) -> str | None:
    """torch's own text rendering of the segments (``_memory_viz.segsum``), where it works."""
    try:
        from torch.cuda import _memory_viz

        segsum: Callable[[dict[str, Any]], str] = _memory_viz.segsum
        return str(segsum(data))
    except Exception:
        return None
