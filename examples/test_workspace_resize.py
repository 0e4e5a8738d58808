"""A vLLM-style workspace manager, resized at run time (vLLM PR 39226).

Kernels ask the manager for several scratch tensors at once (``get_simultaneous``); they
are carved out of one byte buffer per micro-batch, which grows when a bigger batch
arrives. Growing it with ``del old; new = torch.empty(bigger)`` hands the old buffer
back to PyTorch's caching allocator, not to the device: the new, bigger buffer cannot
reuse it, so for a while both are resident (1 -> 2 -> 4 GiB leaves 7 GiB reserved for a
4 GiB buffer), memory the KV cache was sized to have.

Each buggy example is a strict xfail that must raise the plugin's error; its fixed twin
passes. They need a CUDA device and run under the default allocator (with
``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` the grow leaves no 2x; see
docs/resize.md).
"""

from __future__ import annotations

import os
import re
from itertools import accumulate
from math import prod

import pytest

pytest.importorskip("torch")

import torch

from pytest_cgmem import BudgetExceeded, ResizeCheckFailed, SteadyStateFailed

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

GiB, MiB = 2**30, 2**20
EXPANDABLE = bool(
    re.search(r"expandable_segments:\s*true", os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""), re.I)
)
# with expandable segments the freed range is reused: the grow leaves no 2x to catch
default_allocator_only = pytest.mark.skipif(
    EXPANDABLE, reason="expandable segments reuse the freed buffer: no 2x resident to show"
)
HIDDEN = 4096
ALIGN = 256
Spec = tuple[tuple[int, ...], torch.dtype]


def _nbytes(spec: Spec) -> int:
    shape, dtype = spec
    return -(-prod(shape) * dtype.itemsize // ALIGN) * ALIGN


class WorkspaceManager:
    """One growing byte buffer per micro-batch; views of it are handed to kernels."""

    def __init__(self, release_on_grow: bool, ubatches: int = 2) -> None:
        self.release_on_grow = release_on_grow
        self._buffers: list[torch.Tensor | None] = [None] * ubatches

    def get_simultaneous(self, *specs: Spec, ubatch: int = 0) -> list[torch.Tensor]:
        sizes = [_nbytes(s) for s in specs]
        buffer = self._ensure(sum(sizes), ubatch)
        offsets = [0, *accumulate(sizes)]
        return [
            buffer[start : start + prod(shape) * dtype.itemsize].view(dtype).view(shape)
            for (shape, dtype), start in zip(specs, offsets, strict=False)
        ]

    def reserve(self, nbytes: int, ubatch: int = 0) -> None:
        """Allocate the worst case up front, so that no later call grows the buffer."""
        self._ensure(nbytes, ubatch)

    def _ensure(self, nbytes: int, ubatch: int) -> torch.Tensor:
        current = self._buffers[ubatch]
        if current is not None and current.numel() >= nbytes:
            return current
        # the pattern from the PR: drop the old buffer, allocate the bigger one
        self._buffers[ubatch] = None
        del current
        if self.release_on_grow:
            # the fix: hand the freed buffer back to the device before allocating
            torch.cuda.empty_cache()
        buffer = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        self._buffers[ubatch] = buffer
        return buffer


def forward(manager: WorkspaceManager, num_tokens: int) -> list[torch.Tensor]:
    """A layer asking for its two scratch tensors: 16 KiB per token."""
    spec = ((num_tokens, HIDDEN), torch.float16)
    gate, up = manager.get_simultaneous(spec, spec)
    gate.fill_(1)
    up.fill_(2)
    return [gate, up]


TOKENS = [64 * 1024, 128 * 1024, 256 * 1024]  # a 1 GiB, 2 GiB, then 4 GiB workspace


@default_allocator_only
@pytest.mark.xfail(strict=True, raises=ResizeCheckFailed, reason="2x resident after a grow")
def test_workspace_grow_without_release(cgmem):
    manager = WorkspaceManager(release_on_grow=False)
    cgmem.resize_check(lambda n: forward(manager, n), TOKENS)


def test_workspace_grow_with_release(cgmem):
    manager = WorkspaceManager(release_on_grow=True)
    steps = cgmem.resize_check(lambda n: forward(manager, n), TOKENS)
    assert [s.live for s in steps] == [GiB, 2 * GiB, 4 * GiB]


@default_allocator_only
@pytest.mark.xfail(strict=True, raises=BudgetExceeded, reason="7 GiB reserved for 4 GiB")
@pytest.mark.cgmem(reserved_ratio=1.2)
def test_reserved_ratio_of_a_grow_without_release():
    manager = WorkspaceManager(release_on_grow=False)
    for n in TOKENS:
        forward(manager, n)


@pytest.mark.cgmem(reserved_ratio=1.2)
def test_reserved_ratio_of_a_grow_with_release():
    manager = WorkspaceManager(release_on_grow=True)
    for n in TOKENS:
        forward(manager, n)


class Sampler:
    """Another consumer of the workspace: it keeps the last two steps' first logits."""

    def __init__(self, manager: WorkspaceManager, keep_on_host: bool) -> None:
        self.manager = manager
        self.keep_on_host = keep_on_host
        self.previous: torch.Tensor | None = None
        self.current: torch.Tensor | None = None

    def step(self, num_tokens: int) -> None:
        gate, _ = forward(self.manager, num_tokens)
        head = gate[-1, :8]
        # the bug: `head` is a view, so keeping it keeps the whole workspace allocated;
        # the fix: keep a host copy (or .clone() it) instead
        self.previous, self.current = self.current, head.cpu() if self.keep_on_host else head


@pytest.mark.xfail(strict=True, raises=ResizeCheckFailed, reason="a view keeps the old buffer")
def test_retained_view_keeps_the_old_workspace(cgmem):
    sampler = Sampler(WorkspaceManager(release_on_grow=True), keep_on_host=False)
    cgmem.resize_check(sampler.step, TOKENS)


def test_host_copy_releases_the_old_workspace(cgmem):
    sampler = Sampler(WorkspaceManager(release_on_grow=True), keep_on_host=True)
    cgmem.resize_check(sampler.step, TOKENS)


class Decoder:
    """A decode loop whose attention scratch follows the growing sequence length."""

    def __init__(self, manager: WorkspaceManager) -> None:
        self.manager = manager
        self.tokens = 4 * 1024

    def step(self) -> None:
        self.tokens += 4 * 1024  # +64 MiB of scratch per step
        forward(self.manager, self.tokens)


@pytest.mark.xfail(strict=True, raises=SteadyStateFailed, reason="grows 64 MiB every step")
def test_decode_loop_grows_its_workspace(cgmem):
    cgmem.steady(Decoder(WorkspaceManager(release_on_grow=True)).step, warmup=1, repeat=3)


def test_decode_loop_with_the_worst_case_reserved(cgmem):
    manager = WorkspaceManager(release_on_grow=True)
    manager.reserve(_nbytes(((64 * 1024, HIDDEN), torch.float16)) * 2)
    cgmem.steady(Decoder(manager).step, warmup=1, repeat=3)
