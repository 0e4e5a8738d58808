"""Ground-truth checks of the measuring core on a real GPU."""

from __future__ import annotations

import gc

import pytest

from pytest_cgmem import BudgetExceeded, CgmemFixture, CgmemUsageError
from pytest_cgmem.checks.resize import rounding_slack

from . import expandable_segments

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.gpu
MiB = 2**20
N = 3 * MiB + 512  # a multiple of 512: the allocator adds no rounding
kept: list[object] = []


def test_peak_is_exactly_the_bytes_allocated(cgmem: CgmemFixture) -> None:
    with cgmem.measure("alloc") as m:
        x = torch.empty(N, dtype=torch.uint8, device="cuda")
        del x
    assert m.peak == N
    assert m.leak == 0
    assert m.per_device[torch.cuda.current_device()].peak == N


def test_a_device_index_beyond_those_visible_is_a_usage_error(cgmem: CgmemFixture) -> None:
    count = torch.cuda.device_count()
    with pytest.raises(CgmemUsageError) as info, cgmem.measure(devices=[0, count]):
        pass
    assert str(info.value) == (
        f"cgmem.measure: devices must be indices of the {count} CUDA device(s) visible here "
        f"(0 to {count - 1}), got [0, {count}]"
    )


def test_budget_of_n_passes_and_n_minus_one_fails(cgmem: CgmemFixture) -> None:
    with cgmem.measure() as m:
        torch.empty(N, dtype=torch.uint8, device="cuda")
    m.check(peak=N)
    with pytest.raises(BudgetExceeded) as info:
        m.check(peak=N - 1)
    assert str(info.value) == (
        f"cgmem: peak {N} B exceeds budget {N - 1} B (+0.0%) on cuda:{torch.cuda.current_device()}"
    )


def test_kept_tensor_is_a_leak_and_dropped_one_is_not(cgmem: CgmemFixture) -> None:
    gc.collect()  # garbage from earlier in-process pytester runs would offset the leak
    with cgmem.measure("keeps") as m:
        kept.append(torch.empty(N, dtype=torch.uint8, device="cuda"))
    with cgmem.measure("drops") as n:
        torch.empty(N, dtype=torch.uint8, device="cuda")
    kept.clear()
    assert m.leak == N
    assert m.per_device[torch.cuda.current_device()].gc_freed == 0
    assert n.leak == 0


def test_first_matmul_creating_cublas_workspace_is_not_a_leak(cgmem: CgmemFixture) -> None:
    gc.collect()  # garbage from earlier tests in the worker would offset the last region's leak
    a = torch.randn(64, 64, device="cuda")
    for attempt in ("first side stream", "second side stream"):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with cgmem.measure(attempt) as m:
            with torch.cuda.stream(side):
                c = a @ a
                del c
            torch.cuda.current_stream().wait_stream(side)
        assert m.leak == 0, attempt
        assert m.peak >= 32 * MiB, attempt  # the new stream's workspace was really allocated
    with cgmem.measure("leak beside a new workspace") as n:
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            kept.append(a @ a)
        torch.cuda.current_stream().wait_stream(side)
    kept.clear()
    assert n.leak == 64 * 64 * 4


def test_memory_from_cudamalloc_shows_in_device_and_non_torch(cgmem: CgmemFixture) -> None:
    rt = pytest.importorskip("cuda.bindings.runtime")
    size = 64 * MiB
    with cgmem.measure("raw cudaMalloc") as m:
        err, ptr = rt.cudaMalloc(size)
        assert int(err) == 0
    try:
        figures = m.per_device[torch.cuda.current_device()]
        assert figures.device_source in ("nvml", "cudaMemGetInfo")
        assert size <= m.device <= size + 8 * MiB
        assert size <= m.non_torch <= size + 8 * MiB
        assert m.peak == 0
    finally:
        rt.cudaFree(ptr)


def test_memory_from_cupy_shows_in_non_torch(cgmem: CgmemFixture) -> None:
    cupy = pytest.importorskip("cupy")
    size = 256 * MiB
    with cgmem.measure("cupy") as m:
        buf = cupy.empty(size, dtype=cupy.uint8)
    del buf
    cupy.get_default_memory_pool().free_all_blocks()
    assert size <= m.non_torch <= size + 8 * MiB
    assert m.peak == 0 and m.leak == 0


def test_torch_memory_is_not_non_torch(cgmem: CgmemFixture) -> None:
    size = 256 * MiB
    with cgmem.measure() as m:
        x = torch.empty(size, dtype=torch.uint8, device="cuda")
    del x
    slack = rounding_slack([size], expandable_segments())  # 0, or one 20 MiB page
    assert size <= m.reserved <= size + slack
    assert size <= m.device <= size + slack + 4 * MiB
    assert abs(m.non_torch) <= 2 * MiB
    assert m.reserved_ratio == pytest.approx(m.reserved / size)


def test_regions_nest_and_inner_reset_does_not_hide_outer_peak(cgmem: CgmemFixture) -> None:
    with cgmem.measure("outer") as outer:
        a = torch.empty(4 * MiB, dtype=torch.uint8, device="cuda")
        b = torch.empty(8 * MiB, dtype=torch.uint8, device="cuda")
        del b
        with cgmem.measure("inner") as inner:
            c = torch.empty(2 * MiB, dtype=torch.uint8, device="cuda")
            del c
        del a
    assert inner.peak == 2 * MiB
    assert outer.peak == 12 * MiB
    assert outer.leak == 0


def test_figures_are_read_after_the_region(cgmem: CgmemFixture) -> None:
    with cgmem.measure("open") as m, pytest.raises(RuntimeError, match="still running"):
        _ = m.peak


def test_region_closed_and_recorded_when_body_raises(cgmem: CgmemFixture) -> None:
    from pytest_cgmem.cuda import region as measure

    with pytest.raises(ValueError), cgmem.measure("raises") as m:
        x = torch.empty(N, dtype=torch.uint8, device="cuda")
        raise ValueError("boom")
    del x
    assert m.peak == N
    assert m.result is not None and m.result.error == "ValueError: boom"
    assert measure._active == []
