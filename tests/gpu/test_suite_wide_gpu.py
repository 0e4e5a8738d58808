"""--cgmem-all over a suite on a real GPU: the same verdicts as PyTorch's leak check."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

SUITE = """
import gc
import unittest

import pytest
import torch

kept = []


def test_cpu_only():
    assert sum(range(10)) == 45


def test_first_cuda_user_is_no_leak():
    a = torch.randn(64, 64, device="cuda")
    (a @ a).sum().item()
    torch.nn.functional.conv2d(
        torch.randn(1, 3, 8, 8, device="cuda"), torch.randn(4, 3, 3, 3, device="cuda")
    )


def test_leaks():
    kept.append(torch.empty(4 * 2**20, dtype=torch.uint8, device="cuda"))


def test_cyclic_garbage_is_no_leak():
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a
    a.tensor = torch.empty(4096, device="cuda")


def test_side_stream_matmul_is_no_leak():
    side = torch.cuda.Stream()
    a = torch.randn(64, 64, device="cuda")
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        (a @ a).sum()
    torch.cuda.current_stream().wait_stream(side)


@pytest.mark.cgmem_off("keeps its tensor on purpose")
def test_opted_out_leak():
    kept.append(torch.empty(2**20, dtype=torch.uint8, device="cuda"))


class Legacy(unittest.TestCase):
    def test_case_leaks(self):
        kept.append(torch.empty(2**20, dtype=torch.uint8, device="cuda"))

    def test_case_clean(self):
        torch.ones(10, device="cuda").sum()
"""


def test_suite_under_cgmem_all(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(
        "--cgmem-all", "--cgmem-budget=leak=0", "--cgmem-json=run.json", "-p", "no:randomly"
    )
    result.assert_outcomes(passed=6, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*--cgmem-all: 6 test(s) measured, 2 over budget, 1 opted out, 1 never used CUDA*",
            "FAILED test_suite.py::test_leaks - *",
            "FAILED test_suite.py::Legacy::test_case_leaks - *",
        ],
        consecutive=False,
    )
    run = json.loads((pytester.path / "run.json").read_text())
    measured = {t["nodeid"].split("::", 1)[1]: t for t in run["tests"]}
    assert "test_cpu_only" not in measured and "test_opted_out_leak" not in measured
    first = measured["test_first_cuda_user_is_no_leak"]["regions"][0]["devices"][0]
    assert first["leak"] == 0 and first["device"] is None  # the context is not the test's
    assert measured["test_cyclic_garbage_is_no_leak"]["regions"][0]["devices"][0]["gc_freed"] > 0


def test_cuda_free_suite_creates_no_context(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_cpu="""
        import torch

        def test_cpu_tensor():
            assert torch.ones(3).sum() == 3
        """
    )
    pytester.makeconftest(
        """
        import torch

        def pytest_sessionfinish(session):
            with open("ctx.txt", "w") as f:
                f.write(str(torch.cuda.is_initialized()))
        """
    )
    result = pytester.runpytest_subprocess("--cgmem-all", "--cgmem-budget=leak=0")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "ctx.txt").read_text() == "False"
