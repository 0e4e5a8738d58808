"""Demo: peak, leak, reserved, non-torch and device budgets on engine-style code.

Each buggy twin is a strict xfail raising the plugin's BudgetExceeded: the suite passes
only when pytest-cgmem catches the bug. Run on a GPU: ``pytest examples``.
"""

from __future__ import annotations

import ctypes

import pytest

from pytest_cgmem import BudgetExceeded, CgmemFixture

torch = pytest.importorskip("torch")

MiB = 2**20
caught = pytest.mark.xfail(strict=True, raises=BudgetExceeded, reason="the plugin catches it")


class BlockCache:
    """A per-request KV block cache, as a serving engine keeps one."""

    def __init__(self, release_on_finish: bool) -> None:
        self.blocks: dict[int, torch.Tensor] = {}
        self.release_on_finish = release_on_finish

    def serve(self, request_id: int, tokens: int) -> None:
        self.blocks[request_id] = torch.empty(tokens, 1024, dtype=torch.float16, device="cuda")
        if self.release_on_finish:
            del self.blocks[request_id]


SERVER_CACHE = BlockCache(release_on_finish=False)


@caught
@pytest.mark.cgmem(leak=0)
def test_finished_requests_keep_their_blocks() -> None:
    for request_id in range(4):
        SERVER_CACHE.serve(request_id, tokens=512)


@pytest.mark.cgmem(leak=0)
def test_finished_requests_release_their_blocks() -> None:
    cache = BlockCache(release_on_finish=True)
    for request_id in range(4):
        cache.serve(request_id, tokens=512)


def attention_scores_fp32(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Upcasts the whole score matrix to fp32 before softmax: 2x the fp16 bytes, twice."""
    return torch.softmax((q @ k.T).float(), dim=-1).half()


def attention_scores_chunked(q: torch.Tensor, k: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    out = torch.empty(q.shape[0], k.shape[0], dtype=q.dtype, device=q.device)
    for start in range(0, q.shape[0], chunk):
        scores = q[start : start + chunk] @ k.T
        out[start : start + chunk] = torch.softmax(scores.float(), dim=-1)
    return out


def _qk() -> tuple[torch.Tensor, torch.Tensor]:
    q = torch.randn(4096, 128, dtype=torch.float16, device="cuda")
    return q, q.clone()


# the output is 32 MiB (fp16 4096x4096); a 256-row fp32 chunk adds ~10 MiB of temporaries,
# while upcasting the whole matrix needs ~160 MiB
@caught
@pytest.mark.cgmem(peak="64 MiB")
def test_scores_materialised_in_fp32() -> None:
    q, k = _qk()
    attention_scores_fp32(q, k)


@pytest.mark.cgmem(peak="64 MiB")
def test_scores_in_chunks() -> None:
    q, k = _qk()
    attention_scores_chunked(q, k)


@caught
def test_prefill_phase_over_its_budget(cgmem: CgmemFixture) -> None:
    q, k = _qk()
    with cgmem.measure("prefill") as m:
        attention_scores_fp32(q, k)
    m.check(peak="64 MiB")


def test_prefill_phase_within_its_budget(cgmem: CgmemFixture) -> None:
    q, k = _qk()
    here = torch.cuda.current_device()
    with cgmem.measure("prefill", devices=[here]) as m:  # the devices to watch (default: all)
        attention_scores_chunked(q, k)
    m.check(peak="64 MiB", leak=0)
    assert m.peak >= 32 * MiB  # the output itself
    assert m.per_device[here].peak == m.peak  # each watched device's own figures


class GrowingBuffer:
    """A buffer that grows with the longest sequence seen so far."""

    def __init__(self, capacity: int = 0) -> None:
        self.buffer = torch.empty(capacity, dtype=torch.uint8, device="cuda")

    def fit(self, nbytes: int) -> torch.Tensor:
        if nbytes > self.buffer.numel():
            self.buffer = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        return self.buffer[:nbytes]


# 32 sequences, 2 MiB longer each: every outgrown buffer stays cached (no later, larger
# request fits in it), so reserved bytes grow far past what is ever allocated at once
@caught
@pytest.mark.cgmem(reserved="96 MiB")
def test_buffer_grown_a_step_at_a_time() -> None:
    buffer = GrowingBuffer()
    for step in range(1, 33):
        buffer.fit(step * 2 * MiB).zero_()


@pytest.mark.cgmem(reserved="96 MiB")
def test_buffer_sized_for_the_longest_sequence() -> None:
    buffer = GrowingBuffer(capacity=64 * MiB)
    for step in range(1, 33):
        buffer.fit(step * 2 * MiB).zero_()


class RawScratch:
    """A scratch buffer taken from the CUDA driver itself (``cuMemAlloc``, as NCCL, cuDNN or
    a kernel library takes one): invisible to torch's figures."""

    def __init__(self, free_after: bool) -> None:
        self.free_after = free_after
        self.pointers: list[int] = []

    def run(self, nbytes: int) -> None:
        torch.cuda.synchronize()  # the process's CUDA context, which the driver call uses
        driver = ctypes.CDLL("libcuda.so.1")
        pointer = ctypes.c_uint64()
        status = driver.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(nbytes))
        assert status == 0, f"cuMemAlloc_v2 failed: CUresult {status}"
        if self.free_after:
            assert driver.cuMemFree_v2(pointer) == 0
        else:
            self.pointers.append(pointer.value)


HELD_SCRATCH = RawScratch(free_after=False)


@caught
@pytest.mark.cgmem(non_torch="16 MiB")
def test_scratch_outside_torch_is_kept() -> None:
    HELD_SCRATCH.run(128 * MiB)


@pytest.mark.cgmem(non_torch="16 MiB")
def test_scratch_outside_torch_is_returned() -> None:
    RawScratch(free_after=True).run(128 * MiB)


@caught
@pytest.mark.cgmem(device="16 MiB")
def test_device_memory_kept_by_another_library() -> None:
    """``device`` is what the driver saw this process take, torch's and everyone else's."""
    HELD_SCRATCH.run(128 * MiB)


@pytest.mark.cgmem(device="16 MiB")
def test_device_memory_returned_by_another_library() -> None:
    RawScratch(free_after=True).run(128 * MiB)
