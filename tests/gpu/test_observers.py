"""The plugin never changes what the code under test observes: each body runs plain and
inside a region, and what it saw must be the same.

The history bodies are PyTorch's own checks (test_cuda.py's snapshot tests, reduced);
they failed under the plugin while it kept warm-up tensors alive, which pinned the small
segment the body's tensor went into.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from pytest_cgmem import CgmemFixture

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu
MiB = 2**20


def history_contexts() -> dict[str, Any]:
    """Whether empty_cache's frames reach the snapshot, for each history context."""
    seen = {}
    for context in ["alloc", "all", "state"]:
        try:
            torch._C._cuda_clearCublasWorkspaces()
            torch.cuda.memory.empty_cache()
            torch.cuda.memory._record_memory_history(context=context)
            x = torch.rand(3, 4, device="cuda")
            del x
            torch.cuda.memory.empty_cache()
            seen[context] = "empty_cache" in json.dumps(torch.cuda.memory._snapshot())
        finally:
            torch.cuda.memory._record_memory_history(None)
    return seen


def history_frames_name_the_caller() -> dict[str, Any]:
    """The innermost Python frame of a block allocated under recorded history."""
    try:
        torch.cuda.memory.empty_cache()
        torch.cuda.memory._record_memory_history("all", stacks="python")
        x = torch.rand(311, 411, device="cuda")
        snapshot = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(None)
    names = []
    for segment in snapshot["segments"]:
        for block in segment["blocks"]:
            if block.get("requested_size") == 311 * 411 * 4 and block.get("frames"):
                names.append(block["frames"][0]["name"])
    trace_names = {
        f["name"]
        for e in snapshot.get("device_traces", [[]])[torch.cuda.current_device()]
        if e.get("action") == "alloc"
        for f in e.get("frames", ())
    }
    del x
    return {"innermost": names, "caller_in_trace": "history_frames_name_the_caller" in trace_names}


def own_peak_reset() -> dict[str, Any]:
    """max_memory_allocated after the body resets the peaks itself."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    x = torch.empty(8 * MiB, dtype=torch.uint8, device="cuda")
    del x
    return {"peak_over_base": torch.cuda.max_memory_allocated() - base}


def stream_and_device() -> dict[str, Any]:
    return {
        "device": torch.cuda.current_device(),
        "stream": torch.cuda.current_stream().cuda_stream,
        "default": torch.cuda.current_stream() == torch.cuda.default_stream(),
    }


def allocator_settings() -> dict[str, Any]:
    getter = getattr(torch._C, "_accelerator_getAllocatorSettings", None)
    return {
        "backend": torch.cuda.get_allocator_backend(),
        "settings": getter() if getter is not None else None,
        "env": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
        "fraction_api": hasattr(torch.cuda, "get_per_process_memory_fraction"),
    }


def random_state_and_flags() -> dict[str, Any]:
    """The CUDA generator's state (a region that drew from it would move it) and the
    numerics flags a warm-up GEMM could be tempted to touch."""
    return {
        "rng": torch.cuda.get_rng_state().tolist(),
        "tf32": torch.backends.cuda.matmul.allow_tf32,
        "precision": torch.get_float32_matmul_precision(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }


BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "history contexts": history_contexts,
    "history frames": history_frames_name_the_caller,
    "own peak reset": own_peak_reset,
    "stream and device": stream_and_device,
    "allocator settings": allocator_settings,
    "random state and flags": random_state_and_flags,
}


@pytest.mark.parametrize("name", list(BODIES))
def test_a_region_changes_nothing_the_body_observes(cgmem: CgmemFixture, name: str) -> None:
    body = BODIES[name]
    body()  # warm: the first run of a body may initialise what later runs reuse
    plain = body()
    with cgmem.measure(name):
        inside = body()
    assert inside == plain
    if name == "history contexts":
        assert plain == {"alloc": False, "all": True, "state": False}
    if name == "history frames":
        assert plain["caller_in_trace"]


OBSERVED_SUITE = """
import pytest
import torch

from test_observers_bodies import BODIES

EXPECTED = {}


@pytest.mark.parametrize("name", list(BODIES))
def test_body(name):
    BODIES[name]()
    seen = BODIES[name]()
    if name == "history contexts":
        assert seen == {"alloc": False, "all": True, "state": False}
    if name == "history frames":
        assert seen["caller_in_trace"]
    if name == "own peak reset":
        assert seen["peak_over_base"] == 8 * 2**20
"""


@pytest.mark.parametrize("mode", [[], ["--cgmem-all"], ["--cgmem-all", "--cgmem-history"]])
def test_observer_bodies_pass_under_the_plugin(pytester: pytest.Pytester, mode: list[str]) -> None:
    import inspect
    import sys

    module = sys.modules[__name__]
    source = inspect.getsource(module)
    bodies = source[source.index("def history_contexts") : source.index("@pytest.mark.parametrize")]
    pytester.makepyfile(
        test_observers_bodies="import json, os\nfrom typing import Any\nfrom collections.abc import"
        " Callable\nimport torch\nMiB = 2**20\n" + bodies,
        test_observed=OBSERVED_SUITE,
    )
    result = pytester.runpytest_subprocess(*mode, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=len(BODIES))


HANDED_ON = """
import sys

import pytest
import torch


@pytest.fixture(scope="module")
def backend():
    try:
        raise ConnectionError("backend not reachable")
    except ConnectionError as exc:
        error = exc  # its traceback starts in this generator's frame
    try:
        yield error
    finally:
        print("SPY backend torn down")


@pytest.mark.cgmem(peak="1 GiB")
def test_reports_backend_error(backend):
    x = torch.empty(2**20, device="cuda")
    raise backend


def test_after(backend):
    print("SPY test_after runs")
"""


def test_a_failing_marked_test_does_not_close_a_suspended_fixture(
    pytester: pytest.Pytester,
) -> None:
    """Releasing a failing marked test's frames leaves a yield fixture in its traceback
    suspended: its teardown runs at the module's end, as without the plugin (before, it
    ran right after the failing test, and the next test got a torn-down fixture)."""
    pytester.makepyfile(test_handed_on=HANDED_ON)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*SPY test_after runs*", "*SPY backend torn down*"])


AFTER_A_FAILURE = """
import sys

import torch

seen = {}


def test_fails_holding_a_tensor():
    scratch = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
    del scratch  # its block stays in torch's cache
    kept = torch.empty(2**20, dtype=torch.uint8, device="cuda")
    seen["frame"] = sys._getframe()
    seen["reserved"] = torch.cuda.memory_reserved()
    assert kept is None, "the test's own failure"


def test_after_it():
    frame_kept = "kept" in seen["frame"].f_locals
    cache_kept = torch.cuda.memory_reserved() >= seen["reserved"]
    print(f"SPY frame kept {frame_kept}, cache kept {cache_kept}")
"""


@pytest.mark.parametrize("mode", [[], ["--cgmem-all"], ["--cgmem-all", "--cgmem-budget=leak=0"]])
@pytest.mark.parametrize("cuda", ["started in the failing test", "started at import"])
def test_the_test_after_a_failure_finds_what_pytest_leaves(
    pytester: pytest.Pytester, mode: list[str], cuda: str
) -> None:
    """A test --cgmem-all measured keeps its frames when it fails, and torch's cache stays
    as it left it, as without the plugin. Released and emptied, the next test found
    another memory layout: kornia's ``TestResize::test_gradcheck`` (float atomic additions,
    ``nondet_tol=0``) failed 389-392 of 600 repetitions under --cgmem-all against plain's
    6, and 6 with the frames kept (docs/suite.md). A test that starts CUDA itself is
    measured from CUDA's start, by a region of its own kind: both are covered."""
    source = AFTER_A_FAILURE
    if cuda == "started at import":
        source = source.replace("seen = {}", 'seen = {}\ntorch.ones(1, device="cuda")')
    pytester.makepyfile(test_after_a_failure=source)
    result = pytester.runpytest_subprocess(
        *mode, "-p", "no:cacheprovider", "-p", "no:randomly", "-s"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*SPY frame kept True, cache kept True*"])


def test_a_marked_failing_test_still_has_its_frames_released(pytester: pytest.Pytester) -> None:
    """A mark measures from an emptied cache: there the next test still starts from a
    clean allocator, the failed test's frames released and the cache emptied."""
    pytester.makepyfile(
        test_after_a_failure=AFTER_A_FAILURE.replace(
            "def test_fails_holding",
            "import pytest\n\n\n@pytest.mark.cgmem(leak=0)\ndef test_fails_holding",
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", "-s")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*SPY frame kept False, cache kept False*"])


GRAPHS_ONLY = """
import weakref

import pytest
import torch

seen = []


@pytest.mark.parametrize("how", ["graphs", "capture_sweep"])
@pytest.mark.xfail(strict=True, raises=AssertionError)
def test_fails_holding_its_graphs(cgmem, how):
    x = torch.zeros(2**20, device="cuda")
    if how == "graphs":
        graph = torch.cuda.CUDAGraph()
        with cgmem.graphs():
            with torch.cuda.graph(graph):
                y = x + 1
        seen.append(weakref.ref(graph))
    else:
        sweep = cgmem.capture_sweep(lambda t: t + 1, [1, 2], lambda n: x[:n])
        seen.append(weakref.ref(sweep))
    assert False, "the test's own failure"


def test_the_failing_tests_graphs_are_gone():
    assert len(seen) == 2
    assert [ref() is None for ref in seen] == [True, True]
"""


def test_a_failing_test_that_only_logged_graphs_has_its_frames_released(
    pytester: pytest.Pytester,
) -> None:
    """A test that measured only with ``cgmem.graphs`` or ``cgmem.capture_sweep`` was
    measured here: when it fails, its frames are released at its report, so its graphs
    die then. Before, they lived on in pytest's traceback cycle until some later gc pass,
    which could fall inside the next test's capture and invalidate it (each graph's
    destructor calls an API not permitted while a stream captures)."""
    pytester.makepyfile(test_graphs_only=GRAPHS_ONLY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, xfailed=2)


FORKING_FIXTURE = """
import multiprocessing

import pytest
import torch


def _child(queue):
    queue.put(float(torch.ones(4, device="cuda").sum()))


@pytest.fixture
def forked_warm_up():
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue,))
    child.start()
    child.join(120)
    assert child.exitcode == 0, "the forked child could not use CUDA"
    return queue.get(timeout=5)


@pytest.mark.cgmem(peak="1 GiB")
def test_marked_after_a_forking_fixture(forked_warm_up):
    assert forked_warm_up == 4.0
    torch.empty(2**20, device="cuda")
"""


def test_a_fixture_may_fork_cuda_children_before_a_marked_test(
    pytester: pytest.Pytester,
) -> None:
    """Checking for a CUDA device in a marked test's setup initialises no CUDA driver (it
    asks NVML, as torch.cuda.device_count does), so a fixture that forks CUDA-using
    children still can, as without the plugin: the region starts CUDA after the
    fixtures, before the body (docs/measuring.md)."""
    pytester.makepyfile(test_forking=FORKING_FIXTURE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
