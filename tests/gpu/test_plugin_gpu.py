"""The mark and fixture end to end on a real GPU, through pytester."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.gpu
N = 3 * 2**20 + 512


def test_mark_budget_n_passes_n_minus_one_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_budget=f"""
        import pytest, torch

        @pytest.mark.cgmem(peak={N}, leak=0)
        def test_at_budget():
            torch.empty({N}, dtype=torch.uint8, device="cuda")

        @pytest.mark.cgmem(peak={N - 1})
        def test_over_budget():
            torch.empty({N}, dtype=torch.uint8, device="cuda")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*cgmem: peak {N} B exceeds budget {N - 1} B (+0.0%) on cuda:0*",
            "*- cgmem -*",
            "call on cuda:0 *",
            "  peak * budget * OVER",
            "FAILED test_budget.py::test_over_budget - pytest_cgmem.BudgetExceeded*",
        ]
    )


def test_leak_budget_catches_kept_tensor(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_leak=f"""
        import pytest, torch
        cache = []

        @pytest.mark.cgmem(leak=0)
        def test_keeps():
            cache.append(torch.empty({N}, dtype=torch.uint8, device="cuda"))

        @pytest.mark.cgmem(leak=0)
        def test_drops():
            x = torch.empty({N}, dtype=torch.uint8, device="cuda")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*cgmem: leak 3.00 MiB exceeds budget 0 B (over by 3.00 MiB) on cuda:0*"]
    )


def test_failing_test_keeps_its_own_failure_plus_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_own=f"""
        import pytest, torch

        @pytest.mark.cgmem(peak=1)
        def test_fails_itself():
            x = torch.empty({N}, dtype=torch.uint8, device="cuda")
            assert x.numel() == 0, "my own failure"
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: my own failure*", "*- cgmem -*", "  peak *OVER"])
    assert "exceeds budget" not in result.stdout.str()


def test_default_budget_from_ini_and_summary(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncgmem_budget = peak=1MiB\n")
    pytester.makepyfile(
        test_default="""
        import pytest, torch

        @pytest.mark.cgmem
        def test_small():
            torch.empty(2**19, dtype=torch.uint8, device="cuda")

        @pytest.mark.cgmem
        def test_big():
            torch.empty(2**21, dtype=torch.uint8, device="cuda")

        @pytest.mark.cgmem(peak="4 MiB")
        def test_big_allowed():
            torch.empty(2**21, dtype=torch.uint8, device="cuda")
        """
    )
    result = pytester.runpytest("--cgmem-summary=2")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "cgmem: GPUs: NVIDIA *; driver *",
            "*- cgmem -*",
            "3 test(s) with figures, largest peak first (top 2)",
            "test *peak*reserved*leak*device*non_torch",
            "test_default.py::test_big *2.00 MiB*",
            "test_default.py::test_big_allowed *2.00 MiB*",
        ]
    )


def test_an_unmarked_test_s_region_labelled_call_is_not_held_to_the_default_budget(
    pytester: pytest.Pytester,
) -> None:
    """Only a marked (or --cgmem-all) test's call phase is held to the budget; a
    ``cgmem.measure("call")`` region of an unmarked test is held only by its own
    ``m.check``, whatever its label, and a marked test's call region still is."""
    pytester.makeini("[pytest]\ncgmem_budget = peak=1MiB\n")
    pytester.makepyfile(
        test_label="""
        import pytest, torch

        def test_measured_call(cgmem):
            with cgmem.measure("call"):
                torch.empty(2**21, dtype=torch.uint8, device="cuda")

        @pytest.mark.cgmem
        def test_marked():
            torch.empty(2**21, dtype=torch.uint8, device="cuda")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*cgmem: peak 2.00 MiB exceeds budget 1.00 MiB * on cuda:0*",
            "FAILED test_label.py::test_marked - pytest_cgmem.BudgetExceeded*",
        ]
    )


def test_oom_is_reported_and_next_test_measures_cleanly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_oom=f"""
        import pytest, torch

        @pytest.mark.cgmem(peak="1 TiB")
        def test_oom():
            held = torch.empty(2**30, dtype=torch.uint8, device="cuda")
            free, total = torch.cuda.mem_get_info()
            torch.empty(total * 2, dtype=torch.uint8, device="cuda")

        @pytest.mark.cgmem(peak={N}, leak=0)
        def test_next(cgmem):
            assert torch.cuda.memory_allocated() < 2**30, "the OOM test's tensor is still alive"
            with cgmem.measure("after") as m:
                torch.empty({N}, dtype=torch.uint8, device="cuda")
            assert m.peak == {N}
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*OutOfMemoryError*",
            "*- cgmem -*",
            "  peak * 1.00 GiB*",
            "  note: CUDA out of memory (1x) inside the region*",
            "  region ended by OutOfMemoryError*",
        ]
    )


def test_an_unmeasured_test_s_oom_frees_its_frames_in_a_run_that_measures_others(
    pytester: pytest.Pytester,
) -> None:
    """An unmarked test that runs out of memory, in a run that keeps the per-test hooks for
    a marked test (so it takes their quiet path): its frames are released as a measured
    test's are, so its tensors do not outlive it."""
    pytester.makepyfile(
        test_oom="""
        import pytest, torch

        def test_oom():
            held = torch.empty(2**30, dtype=torch.uint8, device="cuda")
            free, total = torch.cuda.mem_get_info()
            torch.empty(total * 2, dtype=torch.uint8, device="cuda")

        def test_next():
            assert torch.cuda.memory_allocated() < 2**30, "the OOM test's tensor is still alive"

        @pytest.mark.cgmem(leak=0)
        def test_measured():
            torch.ones(4, device="cuda").sum().item()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_oom.py::test_oom*OutOfMemoryError*"])


def test_an_unmeasured_failing_test_keeps_its_frames_after_a_measured_one(
    pytester: pytest.Pytester,
) -> None:
    """Frames are released only for a test that measured or ran out of memory: an
    unmarked test that fails after a marked one (on the per-test hooks' quiet path) keeps
    its locals for debuggers and plugins, as it would without the plugin."""
    pytester.makeconftest(
        """
        FAILURES = []

        def pytest_exception_interact(node, call, report):
            FAILURES.append(call.excinfo.value)
        """
    )
    pytester.makepyfile(
        test_frames="""
        import pytest, torch
        from conftest import FAILURES

        @pytest.mark.cgmem(leak=0)
        def test_measured():
            torch.ones(4, device="cuda").sum().item()

        def test_fails():
            kept = "still here"
            assert kept is None

        def test_reads_the_failure():
            tb = FAILURES[-1].__traceback__
            while tb.tb_next is not None:
                tb = tb.tb_next
            assert tb.tb_frame.f_locals.get("kept") == "still here"
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_frames.py::test_fails*"])


def test_strict_xfail_sees_the_budget_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_xfail=f"""
        import pytest, torch
        from pytest_cgmem import BudgetExceeded

        @pytest.mark.xfail(strict=True, raises=BudgetExceeded)
        @pytest.mark.cgmem(peak={N - 1})
        def test_buggy():
            torch.empty({N}, dtype=torch.uint8, device="cuda")
        """
    )
    pytester.runpytest().assert_outcomes(xfailed=1)


def test_first_test_is_not_charged_for_context_and_cublas(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_first="""
        import pytest, torch

        @pytest.mark.cgmem(peak="1 MiB", leak=0, device="4 MiB")
        def test_first_matmul():
            a = torch.ones(16, 16, device="cuda")
            (a @ a).sum().item()
            half = a.half()
            torch.nn.functional.linear(half, half, half[0]).sum().item()
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_warm_up_warns_nothing_where_cuda_started_without_a_context(
    pytester: pytest.Pytester,
) -> None:
    """CUDA initialised but no context yet (the conftest only asks for the device): the
    warm-up must not make cuBLAS warn that no context is current, which ``-W error``
    would turn into the test's failure."""
    pytester.makeconftest("import torch\ntorch.cuda.init()\n")
    pytester.makepyfile(
        test_first="""
        import pytest, torch

        @pytest.mark.cgmem(leak=0)
        def test_first_tensor():
            torch.ones(8, device="cuda").sum().item()
        """
    )
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "no current CUDA context" not in result.stdout.str() + result.stderr.str()


def test_a_graph_patch_undone_at_teardown_leaves_torchs_own_method(
    pytester: pytest.Pytester,
) -> None:
    """A test that patches CUDAGraph.replay inside a region (over the plugin's wrapper) and
    has monkeypatch undo it at teardown gets torch's own method back, as without the
    plugin: the undo puts back the wrapper it saw, and the plugin takes that off."""
    pytester.makepyfile(
        test_patch="""
        import pytest, torch

        ORIGINAL = torch.cuda.CUDAGraph.__dict__.get("replay")

        def fake(self):
            pass

        def test_in_a_measured_block(cgmem, monkeypatch):
            with cgmem.measure():
                monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", fake)
            assert torch.cuda.CUDAGraph.__dict__["replay"] is fake

        def test_sees_torchs_own_method_after_the_block():
            assert torch.cuda.CUDAGraph.__dict__.get("replay") is ORIGINAL

        @pytest.mark.cgmem(leak=0)
        def test_in_a_marked_test(monkeypatch):
            monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", fake)

        def test_sees_torchs_own_method_after_the_marked_test():
            assert torch.cuda.CUDAGraph.__dict__.get("replay") is ORIGINAL

        def test_a_region_after_them_wraps_torchs_own_method(cgmem):
            with cgmem.measure():
                wrapper = torch.cuda.CUDAGraph.__dict__.get("replay")
                assert getattr(wrapper, "__wrapped__", wrapper) is ORIGINAL
            assert torch.cuda.CUDAGraph.__dict__.get("replay") is ORIGINAL
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=5)


def test_a_rerun_is_measured_afresh(pytester: pytest.Pytester) -> None:
    """pytest-rerunfailures runs the same item again: the second attempt gets its own region
    and verdict, and the run file keeps only it."""
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(
        test_rerun=f"""
        import pytest, torch

        cache = []

        @pytest.mark.cgmem(leak=0)
        def test_leaks_on_the_first_attempt_only():
            if not cache:
                cache.append(torch.empty({N}, dtype=torch.uint8, device="cuda"))
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--reruns=1", "--cgmem-json=run.json")
    assert result.parseoutcomes() == {"passed": 1, "rerun": 1}
    (test,) = json.loads((pytester.path / "run.json").read_text())["tests"]
    assert test["outcome"] == "passed" and test["violations"] == []
    assert [r["label"] for r in test["regions"]] == ["call"]
    assert test["regions"][0]["devices"][0]["leak"] == 0
