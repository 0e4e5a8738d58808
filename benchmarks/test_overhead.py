"""300 tiny GPU tests in several variants, side by side in one run.

- plain: no memory check at all
- marked: ``@pytest.mark.cgmem`` with a peak and leak budget
- leakcheck: PyTorch's ``CudaMemoryLeakCheck`` style (gc, cuBLAS workspace clear,
  empty cache, allocator and driver figures on each side)
- vllm: vLLM's ``memory_profiling`` style (gc, empty cache, reset peaks and a full
  memory snapshot on each side)
- synced: plain, then ``torch.cuda.synchronize()``: what waiting for the test's kernels costs
- emptied: plain, after ``torch.cuda.empty_cache()``: what a region's start costs the test's
  first allocation (the cache is emptied so that reserved figures are the region's own;
  the allocation then comes from the driver again)
- region: a bare ``Region`` started and stopped by a fixture, without the plugin's judging,
  record or report: the marked test's extra minus this is the pytest side
- floor: only the torch and driver calls a region makes (synchronize, empty cache, one
  allocator reading, a peak reset and ``cudaMemGetInfo`` at the start; synchronize, one
  reading and ``cudaMemGetInfo`` at the end), each through its cheapest binding and with
  no Python of the plugin's: what no trimming of the plugin can take away

Run: ``pytest benchmarks -p no:randomly -q`` on a GPU machine (see docs/performance.md).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("benchmarks need a CUDA device", allow_module_level=True)

COUNT = 300
RANGE = range(COUNT)
PEERS = range(60)  # the gc-based peers cost ~130 ms a test: fewer of them give the same ratio


def tiny_gpu_work() -> None:
    x = torch.ones(256, device="cuda")
    (x * 2 + 1).sum()


@pytest.fixture
def leakcheck() -> Iterator[None]:
    def figures() -> tuple[int, int]:
        gc.collect()
        torch._C._cuda_clearCublasWorkspaces()
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        free, _ = torch.cuda.mem_get_info()
        return torch.cuda.memory_allocated(), free

    before = figures()
    yield
    after = figures()
    assert after[0] == before[0], "leak"


@pytest.fixture
def vllm_profile() -> Iterator[None]:
    def snapshot() -> dict[str, int]:
        torch.cuda.synchronize()
        stats = torch.cuda.memory_stats()
        free, total = torch.cuda.mem_get_info()
        return {
            "torch_peak": stats.get("allocated_bytes.all.peak", 0),
            "torch_memory": torch.cuda.memory_reserved(),
            "cuda_memory": total - free,
        }

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = snapshot()
    yield
    gc.collect()
    torch.cuda.empty_cache()
    after = snapshot()
    non_torch = (after["cuda_memory"] - before["cuda_memory"]) - (
        after["torch_memory"] - before["torch_memory"]
    )
    assert after["torch_peak"] - before["torch_peak"] >= 0 and isinstance(non_torch, int)


@pytest.fixture
def floor() -> Iterator[None]:
    cudart = torch.cuda.cudart()
    torch._C._cuda_synchronize()
    torch._C._cuda_emptyCache()
    torch._C._cuda_memoryStats(0)
    torch._C._cuda_resetPeakMemoryStats(0)
    cudart.cudaMemGetInfo(0)
    yield
    torch._C._cuda_synchronize()
    torch._C._cuda_memoryStats(0)
    cudart.cudaMemGetInfo(0)


@pytest.fixture
def bare_region() -> Iterator[None]:
    from pytest_cgmem.cuda.region import Region

    region = Region("bench").start()
    yield
    region.stop()


@pytest.mark.parametrize("i", RANGE)
def test_plain(i: int) -> None:
    tiny_gpu_work()


@pytest.mark.parametrize("i", RANGE)
def test_synced(i: int) -> None:
    tiny_gpu_work()
    torch.cuda.synchronize()


@pytest.mark.parametrize("i", RANGE)
def test_emptied(i: int) -> None:
    torch.cuda.empty_cache()
    tiny_gpu_work()


@pytest.mark.parametrize("i", RANGE)
def test_floor(i: int, floor: None) -> None:
    tiny_gpu_work()


@pytest.mark.parametrize("i", RANGE)
def test_region(i: int, bare_region: None) -> None:
    tiny_gpu_work()


@pytest.mark.cgmem(peak="1 MiB", leak=0)
@pytest.mark.parametrize("i", RANGE)
def test_marked(i: int) -> None:
    tiny_gpu_work()


@pytest.mark.parametrize("i", PEERS)
def test_leakcheck(i: int, leakcheck: None) -> None:
    tiny_gpu_work()


@pytest.mark.parametrize("i", PEERS)
def test_vllm(i: int, vllm_profile: None) -> None:
    tiny_gpu_work()
