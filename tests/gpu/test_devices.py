"""Several devices, and another process disturbing the driver's figures."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from pytest_cgmem import BudgetExceeded, CgmemFixture

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu
MiB = 2**20
N = 5 * MiB + 512
QUIET_TRIES = 50


def test_other_process_changing_device_memory_flags_the_region(cgmem: CgmemFixture) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import torch, sys; x = torch.empty(512 * 2**20, dtype=torch.uint8, device='cuda');"
            "torch.cuda.synchronize(); print('ready', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with cgmem.measure("while another process allocates") as m:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
    finally:
        child.communicate("\n", timeout=60)
    figures = m.per_device[torch.cuda.current_device()]
    assert figures.disturbed
    if figures.device_source == "nvml":
        assert abs(m.device) <= 2 * MiB  # our own figure is untouched by the other process


@pytest.mark.device_wide
def test_quiet_region_is_not_flagged(cgmem: CgmemFixture, others_moved: Any) -> None:
    """Under xdist the suite's other workers share the GPU and move memory at any moment:
    a region they disturbed is rightly flagged, so the check is made on a quiet one."""
    for _ in range(QUIET_TRIES):
        with others_moved() as moved, cgmem.measure() as m:
            torch.empty(N, dtype=torch.uint8, device="cuda")
        if moved.bytes == 0:
            assert not m.result.disturbed
            return
    pytest.skip(f"other processes moved GPU memory during each of {QUIET_TRIES} regions")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_figures_are_per_device_and_budgets_hold_on_each(cgmem: CgmemFixture) -> None:
    torch.empty(1, device="cuda:1")  # the process uses both devices before the region
    with cgmem.measure("two devices") as m:
        a = torch.empty(N, dtype=torch.uint8, device="cuda:0")
        b = torch.empty(2 * N, dtype=torch.uint8, device="cuda:1")
        del a, b
    assert m.per_device[0].peak == N
    assert m.per_device[1].peak == 2 * N
    assert m.peak == 2 * N
    with pytest.raises(BudgetExceeded) as info:
        m.check(peak=N)
    assert str(info.value) == (
        "cgmem: peak 10.00 MiB exceeds budget 5.00 MiB (+100.0%) on cuda:1 in 'two devices'"
    )


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_device_idle_at_the_start_has_no_driver_figure(cgmem: CgmemFixture) -> None:
    """Its driver figure was not read at the start: unknown, not 0 (and ``non_torch`` not
    minus the region's reserved bytes)."""
    from pytest_cgmem.cuda.region import IDLE_AT_START

    torch.empty(1, device="cuda:1")
    torch.cuda.empty_cache()  # a context on cuda:1, and no memory of ours there
    with cgmem.measure("second device") as m:
        block = torch.empty(N, dtype=torch.uint8, device="cuda:1")
    del block
    second = m.per_device[1]
    assert second.peak == N and second.leak == 0
    assert second.device is None and second.non_torch is None
    assert second.device_source == IDLE_AT_START


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_matmul_on_a_device_idle_at_the_start_is_no_leak(cgmem: CgmemFixture) -> None:
    """Its start figure holds no cuBLAS workspace, so the leak check's must not either: it
    drops the workspace the matmul made instead of recreating one."""
    torch.empty(1, device="cuda:1")
    torch.cuda.empty_cache()
    with cgmem.measure("a first matmul on cuda:1") as m:
        a = torch.ones(64, 64, device="cuda:1")
        (a @ a).sum().item()
        del a
    assert m.per_device[1].leak == 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_leak_on_another_device_survives_a_workspace_reset_on_this_one(
    cgmem: CgmemFixture,
) -> None:
    """Dropping this device's stale workspaces drops every device's: the other device's
    start figure must be read after its own workspace is back, or it hides a leak."""
    one = torch.ones(8, 8, device="cuda:1")
    (one @ one).sum().item()  # a cuBLAS workspace on cuda:1
    with cgmem.measure("both devices' workspaces made known"):
        pass
    with torch.cuda.stream(torch.cuda.Stream()):
        zero = torch.ones(8, 8, device="cuda")
        (zero @ zero).sum().item()  # another stream's workspace, on cuda:0 only
    torch.cuda.synchronize()
    kept = []
    with cgmem.measure("a leak on cuda:1") as m:
        kept.append(torch.empty(N, dtype=torch.uint8, device="cuda:1"))
    assert m.per_device[1].leak == N
    assert m.per_device[0].leak == 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_test_that_starts_cuda_makes_no_context_on_other_devices(
    pytester: pytest.Pytester,
) -> None:
    """Under --cgmem-all a test measured from CUDA's start is read on every device; only
    devices with a context are synchronized (that would make one, CUDA 12+)."""
    pytester.makepyfile(
        test_contexts="""
        import torch

        def test_starts_cuda_on_cuda_0():
            torch.ones(4, device="cuda:0").sum().item()

        def test_after_it():
            assert torch._C._cuda_hasPrimaryContext(0)
            assert not any(
                torch._C._cuda_hasPrimaryContext(i) for i in range(1, torch.cuda.device_count())
            )
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cgmem-all")
    result.assert_outcomes(passed=2)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
@pytest.mark.parametrize("conf", ["", "backend:cudaMallocAsync"], ids=["native", "async"])
def test_a_marked_test_makes_no_context_on_devices_it_never_used(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, conf: str
) -> None:
    """A region watches every device but resets the peaks only where a context is: under
    cudaMallocAsync resetting them switches to the device and makes one there."""
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", conf)
    pytester.makepyfile(
        test_contexts="""
        import pytest
        import torch

        @pytest.mark.cgmem(peak="1 GiB")
        def test_marked_on_cuda_0():
            torch.ones(4, device="cuda:0").sum().item()

        def test_after_it():
            assert torch._C._cuda_hasPrimaryContext(0)
            assert not any(
                torch._C._cuda_hasPrimaryContext(i) for i in range(1, torch.cuda.device_count())
            )
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_device_first_touched_inside_the_region_is_reported(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_second=f"""
        import pytest, torch

        @pytest.mark.cgmem(peak={N})
        def test_on_second_device():
            torch.empty({N + 512}, dtype=torch.uint8, device="cuda:1")
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cgmem: peak * exceeds budget * on cuda:1*"])
