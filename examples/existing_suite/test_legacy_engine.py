"""Demo: an existing suite nobody marked, under ``cgmem_all = true`` (see pytest.ini here).

Plain pytest functions, a parametrized class and a unittest ``TestCase`` in PyTorch's
style. Every test that uses CUDA is measured against ``leak=0``; the buggy ones are strict
xfails raising the plugin's BudgetExceeded, so the suite passes only when the plugin
catches them. Run on a GPU: ``pytest examples/existing_suite``.
"""

from __future__ import annotations

import unittest

import pytest

from pytest_cgmem import BudgetExceeded

torch = pytest.importorskip("torch")
# each test that uses CUDA skips without it (not the module): the CPU-only one runs anyway
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

caught = pytest.mark.xfail(strict=True, raises=BudgetExceeded, reason="the plugin catches the leak")
_step_outputs: list[torch.Tensor] = []


class Engine:
    """A toy engine: ``keep_outputs`` is the bug (outputs kept for a debug hook)."""

    def __init__(self, keep_outputs: bool) -> None:
        self.weight = torch.randn(256, 256, device="cuda")
        self.keep_outputs = keep_outputs

    def step(self, batch: int) -> torch.Tensor:
        out = torch.randn(batch, 256, device="cuda") @ self.weight
        if self.keep_outputs:
            _step_outputs.append(out)
        return out.sum()


@needs_cuda
def test_step_is_clean() -> None:
    engine = Engine(keep_outputs=False)
    for batch in (1, 8, 64):
        engine.step(batch)


@needs_cuda
@caught
def test_step_keeps_its_outputs() -> None:
    engine = Engine(keep_outputs=True)
    engine.step(64)


def test_cpu_only_helper() -> None:
    assert sorted([3, 1, 2]) == [1, 2, 3]  # never touches CUDA: not measured, costs nothing


@needs_cuda
class TestBatches:
    @pytest.mark.parametrize("batch", [1, 16])
    def test_batch(self, batch: int) -> None:
        Engine(keep_outputs=False).step(batch)


@needs_cuda
class LegacyEngineTest(unittest.TestCase):
    """PyTorch-style TestCases are measured the same way."""

    def test_clean(self) -> None:
        Engine(keep_outputs=False).step(4)

    @caught
    def test_leaky(self) -> None:
        Engine(keep_outputs=True).step(4)


@needs_cuda
@pytest.mark.cgmem_off("fills a process-wide cache on purpose")
def test_warms_a_global_cache() -> None:
    _step_outputs.append(torch.zeros(1024, device="cuda"))
