"""What the GPU tests share."""

from __future__ import annotations

import pytest

from pytest_cgmem.cuda.nvml import nvml


class OthersMoved:
    """``with OthersMoved() as moved:``: the bytes other processes took on device ``index``
    while the block ran, as NVML counts them (0 where it can't say).

    ``cudaMemGetInfo`` is device-wide, so a driver figure taken meanwhile includes them: on
    the GPU machine the suite's other xdist workers share the one GPU. NVML's net figure
    misses memory another process gave back and took again within the block, so the tests
    that use it are marked ``device_wide``, and ``scripts/gpu-check`` runs them alone.
    """

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.bytes = 0
        self._before = 0
        from pytest_cgmem.cuda import allocator  # torch: only where a GPU test runs

        nvml().handle(index, allocator.device_uuid(index))  # looked up once per device

    def _others(self) -> int:
        meter = nvml()
        return meter.others(meter.processes(self.index))

    def __enter__(self) -> OthersMoved:
        self._before = self._others()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bytes = self._others() - self._before


@pytest.fixture
def others_moved() -> type[OthersMoved]:
    return OthersMoved
