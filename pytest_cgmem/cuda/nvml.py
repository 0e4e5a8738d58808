"""The driver's view through NVML: per-process device memory, GPU names, device count.

The only module that imports pynvml. It never imports torch itself: the device's UUID
(to find its NVML handle) is passed in by the caller that has a CUDA context.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..pinning import UUID_PREFIXES, visible_entries


class Nvml:
    """NVML per-process and device-wide figures; ``ok`` is False where NVML can't say."""

    def __init__(self) -> None:
        self.ok = False
        self.pid = os.getpid()
        self._handles: dict[int, Any] = {}
        self._others: dict[int, tuple[float, bool]] = {}
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml: Any = pynvml
            self.ok = True
        except Exception:
            self._nvml = None

    def handle(self, index: int, uuid: Any = None) -> Any:
        """The NVML handle of CUDA device ``index`` (found once by its ``uuid``)."""
        if not self.ok:
            return None
        if index not in self._handles:
            try:
                self._handles[index] = self._nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
            except Exception:
                self._handles[index] = None
        return self._handles[index]

    def processes(self, index: int) -> dict[int, int] | None:
        """Used bytes by pid on this device, or None where NVML can't list them."""
        handle = self._handles.get(index) if self.ok else None
        if handle is None:
            return None
        try:
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except Exception:
            return None
        found = {p.pid: int(p.usedGpuMemory or 0) for p in procs}
        self._others[index] = (time.monotonic(), any(p != self.pid and v for p, v in found.items()))
        return found

    def others_present(self, index: int, max_age: float = 1.0) -> bool:
        """Whether another process holds memory on the device, as NVML said at most
        ``max_age`` seconds ago (read anew when older). False where NVML can't say."""
        seen = self._others.get(index)
        if seen is None or time.monotonic() - seen[0] > max_age:
            if self.processes(index) is None:
                return False
            seen = self._others[index]
        return seen[1]

    def device_free(self, index: int) -> int | None:
        """Free bytes of the whole device as the driver sees them (``cudaMemGetInfo``'s
        figure, read through NVML: safe while a CUDA graph capture is underway), or None
        where NVML can't say or the device's handle was not found yet."""
        handle = self._handles.get(index) if self.ok else None
        if handle is None:
            return None
        try:
            return int(self._nvml.nvmlDeviceGetMemoryInfo(handle).free)
        except Exception:
            return None

    def looked_up(self, index: int) -> bool:
        """Whether the handle of device ``index`` was looked for already (found or not)."""
        return not self.ok or index in self._handles

    def has_handle(self, index: int) -> bool:
        return self._handles.get(index) is not None

    def own(self, processes: dict[int, int] | None) -> int | None:
        return None if processes is None else processes.get(self.pid)

    def others(self, processes: dict[int, int] | None) -> int:
        return sum(v for p, v in (processes or {}).items() if p != self.pid)

    def driver_version(self) -> str | None:
        if not self.ok:
            return None
        try:
            return str(self._nvml.nvmlSystemGetDriverVersion())
        except Exception:
            return None

    def visible_names(self) -> list[str]:
        """GPU names in CUDA's visible order, without creating a CUDA context."""
        if not self.ok:
            return []
        try:
            count = self._nvml.nvmlDeviceGetCount()
            handles = [self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible is not None:
                chosen = []
                for entry in visible_entries(visible):
                    if entry.startswith(UUID_PREFIXES):
                        chosen.append(self._nvml.nvmlDeviceGetHandleByUUID(entry))
                    elif int(entry) < count:
                        chosen.append(handles[int(entry)])
                    else:
                        break
                handles = chosen
            return [str(self._nvml.nvmlDeviceGetName(h)) for h in handles]
        except Exception:
            return []


_state: Nvml | None = None


def nvml() -> Nvml:
    """The process's one NVML connection, opened on first use."""
    global _state
    if _state is None:
        _state = Nvml()
    return _state


def count_devices() -> int:
    """GPUs on this machine by NVML; 0 where NVML can't say. Opens and closes NVML, for
    the xdist pinning that must run before CUDA (and torch's view of it) exists."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0
