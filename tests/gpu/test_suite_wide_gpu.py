"""--cgmem-all over a suite on a real GPU: the same verdicts as PyTorch's leak check."""

from __future__ import annotations

import json
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from pytest_cgmem.cuda import allocator  # noqa: E402


def skip_unless_own_pool() -> None:
    """The warm-up's workspaces stay out of the default pool only where torch can route
    them to a pool of the plugin's own (docs/measuring.md)."""
    if not allocator.routes_to_own_pool(torch, allocator.backend()):
        pytest.skip("this torch cannot route the warm-up to a pool of its own (before 2.8)")


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


SUITE_WIDE = ("--cgmem-all", "--cgmem-budget=leak=0", "--cgmem-json=run.json", "-p", "no:randomly")


def measured_tests(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    """The run file's tests by name (the node id less its file)."""
    run = json.loads((pytester.path / "run.json").read_text())
    return {t["nodeid"].split("::", 1)[1]: t for t in run["tests"]}


def test_suite_under_cgmem_all(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(*SUITE_WIDE)
    result.assert_outcomes(passed=6, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*--cgmem-all: 6 test(s) measured, 2 over budget, 1 opted out, 1 never used CUDA*",
            "FAILED test_suite.py::test_leaks - *",
            "FAILED test_suite.py::Legacy::test_case_leaks - *",
        ],
        consecutive=False,
    )
    measured = measured_tests(pytester)
    assert "test_cpu_only" not in measured and "test_opted_out_leak" not in measured
    first = measured["test_first_cuda_user_is_no_leak"]["regions"][0]["devices"][0]
    assert first["leak"] == 0 and first["device"] is None  # the context is not the test's
    assert first["reserved"] > 0  # counted from CUDA's start: the test's own, cache kept or not
    clean = measured["Legacy::test_case_clean"]["regions"][0]
    assert clean["devices"][0]["reserved"] is None  # the cache it found was kept
    assert "kept torch's cache" in clean["extra"]["unavailable"]["reserved"]
    assert measured["test_cyclic_garbage_is_no_leak"]["regions"][0]["devices"][0]["gc_freed"] > 0


SPIED_SUITE = """
import traceback

import pytest
import torch


def test_a_starts_cuda():
    torch.ones(1, device="cuda")


SEEN = []


@pytest.fixture
def callers(monkeypatch):
    is_initialized = torch.cuda.is_initialized

    def spy():
        SEEN.append("".join(traceback.format_stack(limit=6)))
        return is_initialized()

    monkeypatch.setattr(torch.cuda, "is_initialized", spy)
    return SEEN


def test_b_spied(callers):  # the process's first region (the warm-up's) is this test's
    torch.ones(1, device="cuda").sum().item()
    assert callers == []


class Node:
    pass


def test_b2_spied_through_a_leak_check(callers):  # its region's stop confirms no leak
    a, b = Node(), Node()
    a.other, b.other = b, a
    a.tensor = torch.empty(4096, device="cuda")


def test_b3_the_spies_saw_no_call_of_the_plugin_s():
    assert SEEN == []


def test_c_told_cuda_has_not_started(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    torch.ones(1, device="cuda").sum().item()
"""


def test_a_patched_is_initialized_neither_sees_the_plugin_nor_hides_cuda(
    pytester: pytest.Pytester,
) -> None:
    """Measured tests whose ``torch.cuda.is_initialized`` a test spied on or patched to
    say False: the spy sees no call of the plugin's, in the warm-up, a region's start and
    stop or a leak check (before, torch functions the plugin called each called it), and
    the test that was told CUDA had not started is measured (before, it was counted as
    never having used CUDA)."""
    pytester.makepyfile(test_spied=SPIED_SUITE)
    result = pytester.runpytest_subprocess(*SUITE_WIDE)
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*--cgmem-all: 5 test(s) measured, 0 over budget*"])
    measured = measured_tests(pytester)
    assert sorted(measured) == [
        "test_a_starts_cuda",
        "test_b2_spied_through_a_leak_check",
        "test_b3_the_spies_saw_no_call_of_the_plugin_s",
        "test_b_spied",
        "test_c_told_cuda_has_not_started",
    ]
    garbage = measured["test_b2_spied_through_a_leak_check"]["regions"][0]["devices"][0]
    assert garbage["gc_freed"] > 0 and garbage["leak"] == 0


RAISING_SUITE = """
import pytest
import torch

kept = []


def test_warm():
    torch.ones(1, device="cuda").sum().item()


def test_fails_holding_a_tensor():
    held = torch.empty(2**20, dtype=torch.uint8, device="cuda")
    assert held.numel() == 0


def test_a_measured_block_that_raises(cgmem):
    with pytest.raises(ValueError):
        with cgmem.measure("raised") as m:
            held = torch.empty(2**20, dtype=torch.uint8, device="cuda")
            raise ValueError("boom")
    assert m.leak is None and m.peak == 2**20


def test_leaks():
    kept.append(torch.empty(2**20, dtype=torch.uint8, device="cuda"))
"""

FULL_COLLECTIONS = """
import gc
import json

import pytest

FULL = {}
_counting = []


def _on_gc(phase, info):
    if phase == "stop" and info["generation"] == 2 and _counting:
        FULL[_counting[-1]] = FULL.get(_counting[-1], 0) + 1


gc.callbacks.append(_on_gc)


@pytest.hookimpl(wrapper=True, tryfirst=True)  # around the plugin's, and its leak check
def pytest_runtest_call(item):
    _counting.append(item.name)
    FULL.setdefault(item.name, 0)
    try:
        return (yield)
    finally:
        _counting.pop()


def pytest_sessionfinish(session):
    with open("full.json", "w") as f:
        json.dump(FULL, f)
"""


def test_a_test_that_raised_is_not_checked_for_a_leak(pytester: pytest.Pytester) -> None:
    """As PyTorch's check: a failing test's traceback holds its tensors, so confirming a
    leak would pay a full collection to call them leaked. Its region reports no leak
    (null), is not over budget and collects no full generation; a real leak still is."""
    pytester.makepyfile(test_raising=RAISING_SUITE)
    pytester.makeconftest(FULL_COLLECTIONS)
    result = pytester.runpytest_subprocess(*SUITE_WIDE)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError*",
            "*- cgmem -*",
            "  leak  * n/a   budget        0 B  n/a",
            "  note: no leak figure: the region ended by an exception*",
            "  region ended by AssertionError*",
            "*--cgmem-all: 4 test(s) measured, 1 over budget, 0 opted out*",
        ]
    )
    tests = measured_tests(pytester)
    failing = tests["test_fails_holding_a_tensor"]
    assert failing["outcome"] == "failed" and failing["violations"] == []
    call = failing["regions"][0]["devices"][0]
    assert call["leak"] is None and call["peak"] >= 2**20 and call["gc_freed"] == 0
    regions = tests["test_a_measured_block_that_raises"]["regions"]
    assert [r["devices"][0]["leak"] for r in regions if r["label"] == "raised"] == [None]
    assert [v["metric"] for v in tests["test_leaks"]["violations"]] == ["leak"]
    full = json.loads((pytester.path / "full.json").read_text())
    assert full["test_fails_holding_a_tensor"] == 0
    assert full["test_a_measured_block_that_raises"] == 0
    assert full["test_leaks"] >= 1  # the real leak's confirmation, which the counter sees


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


FIRST_LIBRARY_USERS = """
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def attention(backend):
    q, k, v = (torch.randn(2, 8, 128, 64, device="cuda", dtype=torch.float16) for _ in range(3))
    with sdpa_kernel(backend):
        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().item()


def test_a_starts_cuda():
    torch.ones(8, device="cuda").sum().item()


def test_b_first_cudnn_convolution():
    assert torch.backends.cudnn.is_available()
    x, w = torch.randn(1, 3, 32, 32, device="cuda"), torch.randn(8, 3, 3, 3, device="cuda")
    F.conv2d(x, w).sum().item()


def test_c_first_flash_attention():
    attention(SDPBackend.FLASH_ATTENTION)


def test_d_first_memory_efficient_attention():
    attention(SDPBackend.EFFICIENT_ATTENTION)


def test_e_first_bfloat16_linear():
    x, w = (torch.randn(64, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    F.linear(x, w, w[0]).sum().item()
"""


@pytest.mark.parametrize(
    ("selected", "measured"),
    [
        pytest.param("test_first.py", 5, id="each-library-after-cuda-started"),
        pytest.param("test_first.py::test_c_first_flash_attention", 1, id="flash-starts-cuda"),
    ],
)
def test_first_library_users_are_no_leak(
    pytester: pytest.Pytester, selected: str, measured: int
) -> None:
    """The first test to use cuDNN, flash or memory-efficient attention, or cuBLASLt in
    bfloat16 (each makes handles or loads kernels once per process) is no leak; nor is a
    test that starts CUDA with flash attention."""
    pytester.makepyfile(test_first=FIRST_LIBRARY_USERS)
    result = pytester.runpytest_subprocess(
        "--cgmem-all", "--cgmem-budget=leak=0", "--cgmem-json=run.json", selected
    )
    result.assert_outcomes(passed=measured)
    run = json.loads((pytester.path / "run.json").read_text())
    leaks = {t["nodeid"]: t["regions"][0]["devices"][0]["leak"] for t in run["tests"]}
    assert len(leaks) == measured and set(leaks.values()) == {0}, leaks


WORKER_REPORT = """
import json
import os

import pytest
import torch

ran = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    ran.append(item.nodeid)
    return (yield)


def pytest_sessionfinish(session):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        with open(f"worker-{worker}.json", "w") as f:
            json.dump({"ran": ran, "cuda": torch.cuda.is_initialized()}, f)
"""


def test_cpu_only_xdist_worker_creates_no_context(pytester: pytest.Pytester) -> None:
    """Under xdist, --cgmem-all and one GPU: the worker given only CPU tests (``loadfile``
    hands each of the two files to its own worker) never starts CUDA."""
    pytester.makeconftest(WORKER_REPORT)
    pytester.makepyfile(
        test_cpu="""
        import torch

        def test_cpu_tensor():
            assert torch.ones(3).sum() == 3

        def test_cpu_matmul():
            assert (torch.eye(4) @ torch.eye(4)).trace() == 4
        """,
        test_gpu="""
        import torch

        def test_gpu_tensor():
            torch.ones(3, device="cuda").sum().item()
        """,
    )
    result = pytester.runpytest_subprocess(
        "--cgmem-all", "--cgmem-budget=leak=0", "-n", "2", "--dist", "loadfile"
    )
    result.assert_outcomes(passed=3)
    workers = [json.loads(p.read_text()) for p in pytester.path.glob("worker-*.json")]
    by_file = {w["ran"][0].split("::")[0]: w for w in workers if w["ran"]}
    assert sorted(by_file) == ["test_cpu.py", "test_gpu.py"], workers
    assert all(n.startswith("test_cpu.py") for n in by_file["test_cpu.py"]["ran"]), workers
    assert by_file["test_cpu.py"]["cuda"] is False
    assert by_file["test_gpu.py"]["cuda"] is True


CACHE_SUITE = """
import pytest
import torch

MiB = 2**20


@pytest.fixture
def warmed():
    x = torch.empty(64 * MiB, dtype=torch.uint8, device="cuda")
    del x
    torch.cuda.synchronize()


def test_cache_a_fixture_warmed_is_kept(warmed):
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_reserved()
    x = torch.empty(64 * MiB, dtype=torch.uint8, device="cuda")
    del x
    assert base >= 64 * MiB, f"reserved at the body's start: {base}"
    assert torch.cuda.max_memory_reserved() == base, "the body reserved more"
"""


def test_a_cache_a_fixture_warmed_reaches_the_body(pytester: pytest.Pytester) -> None:
    """--cgmem-all leaves torch's cache as the test found it: the body reuses the cache
    its fixture warmed, as it does without the plugin, and the figures counted from an
    emptied cache are unavailable, with the reason, rather than order-dependent numbers."""
    skip_unless_own_pool()
    pytester.makepyfile(test_cache=CACHE_SUITE)
    pytester.runpytest_subprocess("-p", "no:cgmem").assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess(*SUITE_WIDE)
    result.assert_outcomes(passed=1)
    test = measured_tests(pytester)["test_cache_a_fixture_warmed_is_kept"]
    region = test["regions"][0]
    figures = region["devices"][0]
    assert figures["leak"] == 0 and figures["peak"] == 64 * 2**20
    assert figures["reserved"] is None and figures["device"] is None
    assert figures["reserved_ratio"] is None and figures["non_torch"] is not None
    assert sorted(region["extra"]["unavailable"]) == ["device", "reserved", "reserved_ratio"]
    assert "kept torch's cache" in region["extra"]["unavailable"]["reserved"]


def test_the_warm_up_takes_nothing_from_the_cache_it_finds(pytester: pytest.Pytester) -> None:
    """The first region's warm-up makes the cuBLAS/cuBLASLt workspaces in the plugin's own
    pool: a fixture that warmed the cache before the process's first GEMM leaves it whole
    for the body, and the default pool holds none of the plugin's blocks."""
    skip_unless_own_pool()
    pytester.makepyfile(
        test_cache=CACHE_SUITE
        + """

def test_the_default_pool_holds_no_workspace():
    from pytest_cgmem.cuda import allocator

    torch._C._cuda_getCurrentBlasHandle()
    own = allocator.own_pool_id(torch.cuda.current_device())
    assert own is not None and own != (0, 0)
    held = {pool for (_, pool) in allocator.pool_segments()}
    assert own in held, held
    default = [s for s in allocator.segments() if tuple(s["segment_pool_id"]) == (0, 0)]
    assert all(b["state"] != "active_allocated" for s in default for b in s["blocks"])
"""
    )
    result = pytester.runpytest_subprocess(*SUITE_WIDE)
    result.assert_outcomes(passed=2)


LAYOUT_SUITE = """
import json
import os

import pytest
import torch

MiB = 2**20


def layout(name):
    \"\"\"The default pool, block by block, relative to each segment's start.\"\"\"
    torch.cuda.synchronize()
    found = []
    for s in torch.cuda.memory_snapshot():
        if tuple(s["segment_pool_id"]) == (0, 0):
            blocks = [(b["address"] - s["address"], b["size"], b["state"]) for b in s["blocks"]]
            found.append((s["segment_type"], s["total_size"], blocks))
    with open(os.environ["LAYOUT_OUT"], "a") as out:
        out.write(json.dumps([name, sorted(found)]) + "\\n")


@pytest.fixture
def warmed():
    x = torch.empty(64 * MiB, dtype=torch.uint8, device="cuda")
    del x


def test_a_fixture_warmed_cache(warmed):
    a = torch.ones(10 * MiB, dtype=torch.uint8, device="cuda")
    b = torch.ones(MiB, dtype=torch.uint8, device="cuda")
    c = torch.ones(300 * 1024, dtype=torch.uint8, device="cuda")
    del b
    layout("warmed")
    del a, c


def test_a_resize():
    buf = torch.ones(3 * MiB, device="cuda")
    small = torch.ones(1000, device="cuda")
    buf = torch.ones(5 * MiB, device="cuda")
    layout("resized")
    del buf, small


def test_after_the_others():
    parts = [torch.ones(k * 100_000, device="cuda") for k in range(1, 9)]
    del parts[::2]
    layout("after")
"""


def test_a_gemm_free_test_finds_the_default_pool_as_without_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up's and the resets' workspaces live in the plugin's own pool: tests that run
    no GEMM find torch's default pool, block by block, as they do without the plugin, with
    the cache each one left kept for the next."""
    skip_unless_own_pool()
    pytester.makepyfile(test_layout=LAYOUT_SUITE)
    layouts = {}
    for side, args in (("plain", ("-p", "no:cgmem")), ("cgmem", SUITE_WIDE)):
        out = pytester.path / f"{side}.jsonl"
        monkeypatch.setenv("LAYOUT_OUT", str(out))
        pytester.runpytest_subprocess(*args).assert_outcomes(passed=3)
        layouts[side] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [name for name, _ in layouts["plain"]] == ["warmed", "resized", "after"]
    assert layouts["cgmem"] == layouts["plain"]


def test_a_budget_on_reserved_measures_from_an_emptied_cache(pytester: pytest.Pytester) -> None:
    """Naming ``reserved`` in --cgmem-budget buys the figure with the cache's emptying: the
    body then finds its fixture's cache given back (the documented trade-off)."""
    pytester.makepyfile(test_cache=CACHE_SUITE)
    result = pytester.runpytest_subprocess(
        "--cgmem-all", "--cgmem-budget=leak=0,reserved=1GiB", "--cgmem-json=run.json"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: reserved at the body's start: *"])
    test = measured_tests(pytester)["test_cache_a_fixture_warmed_is_kept"]
    figures = test["regions"][0]["devices"][0]
    assert figures["reserved"] == 64 * 2**20
    assert "unavailable" not in test["regions"][0]["extra"]
