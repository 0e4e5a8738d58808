"""What the code under test observes is what it observes without the plugin: a stand-in
for torch, a test's own frames, a fixture suspended at its yield (CPU tier; the GPU tier's
observers are in tests/gpu/test_observers.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch

# pytest-benchmark and pytest-rerunfailures are not what these tests check: their pytester
# runs load neither (tests/conftest.py)
pytestmark = pytest.mark.lean_runs

STAND_INS = """
import sys
import types
from unittest import mock


def test_a_bare_module_for_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))
    import torch
    assert not hasattr(torch, "cuda")


def test_a_mock_for_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", mock.MagicMock())
    import torch
    torch.cuda.is_available.return_value = False
    assert not torch.cuda.is_available()


def test_a_later_unrelated_failure():
    assert 1 == 2


def test_the_last():
    pass
"""


@pytest.mark.parametrize("flags", [[], ["--cgmem-all"]], ids=["plain", "cgmem-all"])
def test_a_stand_in_for_torch_is_never_taken_for_torch(
    pytester: pytest.Pytester, flags: list[str]
) -> None:
    """A test that puts a module or a MagicMock in ``sys.modules["torch"]`` runs as it
    would without the plugin, and so does every test after it (before, under
    --cgmem-all, the first failed and the second stopped the run with an internal error)."""
    pytester.makepyfile(test_stand_ins=STAND_INS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *flags)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


STAND_IN_FROM_THE_START = """
import sys
import types
from unittest import mock

sys.modules["torch"] = {stand_in}
"""

RECORDED_AND_MARKED = """
import pytest


def test_recorded(cgmem_record):
    cgmem_record("server", peak=5)


@pytest.mark.cgmem(peak="1 GiB")
def test_marked():
    pass
"""


@pytest.mark.parametrize(
    "stand_in", ['types.ModuleType("torch")', "mock.MagicMock()"], ids=["module", "mock"]
)
def test_a_stand_in_for_torch_from_a_conftest_is_no_torch(
    pytester: pytest.Pytester, stand_in: str
) -> None:
    """A project that fakes torch for its CPU tests: the plugin's own ``import torch`` would
    get the stand-in, so none is there for it. A marked test skips as where no CUDA device
    is, and the figures a test records are written (before, the run ended in an internal
    error reading the stand-in's version, and a MagicMock's device count started a region)."""
    pytester.makeconftest(STAND_IN_FROM_THE_START.format(stand_in=stand_in))
    pytester.makepyfile(test_s=RECORDED_AND_MARKED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "--cgmem-json=r.json")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * cgmem: no CUDA device"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    doc = json.loads((pytester.path / "r.json").read_text())
    assert doc["complete"] is True and doc["machine"]["torch"] is None
    assert [t["nodeid"] for t in doc["tests"]] == ["test_s.py::test_recorded"]


PATCHED_CUDA = """
from unittest import mock

import pytest
import torch


@pytest.fixture
def fake_cuda(monkeypatch):
    cuda = mock.MagicMock()
    cuda.is_available.return_value = True
    monkeypatch.setattr(torch, "cuda", cuda)
    return cuda


@pytest.mark.cgmem(peak="1 GiB")
def test_marked():
    pass


def test_a_device_picked_through_a_fake(fake_cuda):
    assert torch.cuda.is_available()


def test_a_fake_and_a_failure(fake_cuda):
    assert ("cuda" if torch.cuda.is_available() else "cpu") == "gpu"


def test_the_last():
    pass
"""


@pytest.mark.parametrize(
    "flags", [[], ["--cgmem-all"], ["-n", "1"]], ids=["plain", "cgmem-all", "xdist"]
)
def test_a_patched_torch_cuda_is_never_taken_for_torch_s(
    pytester: pytest.Pytester,
    run_without_a_cuda_context: Callable[..., pytest.RunResult],
    flags: list[str],
) -> None:
    """A fixture that replaces ``torch.cuda`` with a MagicMock (``mocker.patch``) leaves
    every outcome as it is without the plugin. Before, the failing test's report was lost
    to an internal error (under xdist the run even exited 0), and under --cgmem-all the
    mock's truthy ``is_initialized()`` started a region on it."""
    pytester.makepyfile(test_patched=PATCHED_CUDA)
    # a process with no CUDA context: under xdist the worker (the controller, which runs no
    # test, runs in this one; one worker runs all four tests, as each worker ran its share:
    # a second would only import torch again); else this one where no CUDA device can start
    # one, a process of its own where one can
    run = pytester.runpytest if "-n" in flags else run_without_a_cuda_context
    result = run("-p", "no:cacheprovider", *flags)
    if torch.cuda.is_available():  # the marked test runs
        result.assert_outcomes(passed=3, failed=1)
    else:
        result.assert_outcomes(passed=2, failed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


SPIED_AND_FAKED_CUDA = """
from unittest import mock

import pytest
import torch


@pytest.fixture
def spy(monkeypatch):
    spy = mock.MagicMock(wraps=torch.cuda.is_initialized)
    monkeypatch.setattr(torch.cuda, "is_initialized", spy)
    return spy


def test_a_spy_sees_only_the_test_s_own_calls(spy):
    torch.ones(1)
    spy.assert_not_called()


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_a_fake_gpu(fake_gpu):
    assert torch.cuda.is_initialized() and torch.cuda.device_count() == 2


def test_a_patch_in_the_body(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert torch.cuda.is_initialized()


def test_on_the_cpu():
    assert torch.ones(1).item() == 1
"""


def test_a_patched_or_spied_is_initialized_is_neither_called_nor_believed(
    pytester: pytest.Pytester,
    run_without_a_cuda_context: Callable[..., pytest.RunResult],
) -> None:
    """Whether a test started CUDA is read from torch's own state. Before, --cgmem-all
    asked ``torch.cuda.is_initialized()``, which a fake-GPU fixture patches: a spy saw the
    plugin's calls, a fixture's ``lambda: True`` had the test skipped as "no CUDA device"
    or failed from inside the plugin, and a patch in the body left the test counted
    nowhere (an xdist worker's count reaches the controller as
    test_suite_wide.py's xdist tests check)."""
    pytester.makepyfile(test_patched=SPIED_AND_FAKED_CUDA)
    result = run_without_a_cuda_context(
        "-p", "no:cacheprovider", "--cgmem-all", "--cgmem-budget=leak=0"
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "--cgmem-all: 0 test(s) measured, 0 over budget, 0 opted out, "
            "4 never used CUDA (not measured)"
        ]
    )


SETTINGS_FROM_A_FIXTURE = """
import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def allocator_settings():
    os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
    yield
    del os.environ["PYTORCH_CUDA_ALLOC_CONF"]


@pytest.mark.cgmem(peak="1 GiB")
def test_marked():
    pass


def test_recorded(cgmem_record):
    cgmem_record("load", peak=1)


def test_the_allocator_takes_the_fixture_s_settings():
    assert torch._C._accelerator_getAllocatorSettings() == "expandable_segments:True"
"""


def test_allocator_settings_a_fixture_sets_reach_torch(pytester: pytest.Pytester) -> None:
    """torch parses its allocator settings once, at the first call of its getter: the
    header and the run file's machine must not make that call before CUDA starts, or a
    session fixture's ``PYTORCH_CUDA_ALLOC_CONF`` never reaches the allocator."""
    if not hasattr(torch._C, "_accelerator_getAllocatorSettings"):
        pytest.skip(f"torch {torch.__version__} has no allocator-settings getter (2.12+)")
    pytester.makepyfile(test_settings=SETTINGS_FROM_A_FIXTURE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cgmem-json=run.json")
    if torch.cuda.is_available():  # the marked test runs
        result.assert_outcomes(passed=3)
    else:
        result.assert_outcomes(passed=2, skipped=1)


FRAMES = """
import sys

import pytest

import pytest_cgmem.cuda.allocator  # loaded, as where the marked test runs on a GPU


@pytest.fixture
def locals_on_failure():
    yield
    tb = sys.last_traceback
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "test_recorded_fails":
            print("TEARDOWN-SEES", sorted(tb.tb_frame.f_locals))
        tb = tb.tb_next


@pytest.mark.cgmem(peak="1 MiB")
def test_marked():
    pass


def test_recorded_fails(locals_on_failure, cgmem_record):
    payload = {"answer": 42}
    cgmem_record("server", peak="1 MiB")
    assert payload["answer"] == 41
"""


def test_a_failing_test_the_plugin_measured_nothing_of_keeps_its_frames(
    pytester: pytest.Pytester, run_without_a_cuda_context: Callable[..., pytest.RunResult]
) -> None:
    """Only a test measured in this process (or a CUDA OOM) has its frames released: a
    test that only recorded figures measured elsewhere keeps them for its teardown, also
    beside a marked test."""
    pytester.makepyfile(test_frames=FRAMES)
    result = run_without_a_cuda_context("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(
        failed=1, **({"passed": 1} if torch.cuda.is_available() else {"skipped": 1})
    )
    result.stdout.fnmatch_lines(["*TEARDOWN-SEES *'payload'*"])


OWN_CGMEM_FIXTURE = """
import pytest


@pytest.fixture
def cgmem():
    return 2**30  # the suite's own: a cgroup memory limit
"""

OWN_CGMEM_TESTS = """
import sys

import pytest


def test_limit(cgmem):
    assert cgmem == 2**30
    assert "torch" not in sys.modules


@pytest.mark.parametrize("cgmem", ["v1", "v2"])
def test_param(cgmem):
    assert "torch" not in sys.modules
"""


def test_a_suite_s_own_cgmem_fixture_or_parameter_is_left_alone(
    pytester: pytest.Pytester,
) -> None:
    """Only the plugin's own ``cgmem`` fixture makes a test measured: a suite's fixture or
    parameter of that name runs as without the plugin (before, each such test imported
    torch, printed the header and failed where torch was missing)."""
    pytester.makeconftest(OWN_CGMEM_FIXTURE)
    pytester.makepyfile(test_own=OWN_CGMEM_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.no_fnmatch_line("cgmem: *")


RECORDS_WITHOUT_TORCH = """
import sys


def test_records(cgmem_record):
    cgmem_record("server", peak=2**20)


def test_after_the_record():
    assert "torch" not in sys.modules
"""

GPU_BUILD_CONFTEST = """
import pytest_cgmem.cuda.machine as machine

machine.cpu_only_torch = lambda: None  # the installed CPU build read as a GPU build
"""


def test_the_first_record_imports_no_torch_the_tests_did_not(pytester: pytest.Pytester) -> None:
    """A suite that gives figures to ``cgmem_record`` and never imports torch: the run
    file's machine is read without it (importing it mid-run took seconds inside a test's
    report, where pytest-timeout's alarm could fire, and changed what later tests see). The
    installed torch's files say its version; the graph keys are null. On a CPU build the
    conftest has the plugin read it as a GPU build, whose machine used to import torch."""
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        pytester.makeconftest(GPU_BUILD_CONFTEST)
    pytester.makepyfile(test_records=RECORDS_WITHOUT_TORCH)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cgmem-json=run.json")
    result.assert_outcomes(passed=2)
    machine = json.loads((pytester.path / "run.json").read_text())["machine"]
    assert machine["torch"] == torch.__version__
    assert machine["graph_tracking"] is None and machine["graph_pools"] is None


GRAPHS_SEEN_ONCE_TORCH_IS_IMPORTED = """
import sys

import pytest_cgmem.cuda.machine as machine

machine.cpu_only_torch = lambda: None  # the installed CPU build read as a GPU build
_read = machine.machine_info


def machine_info():
    info = _read()
    if sys.modules.get("torch") is not None:  # as a GPU build's machine says once imported
        info.update(graph_tracking="wrappers", graph_pools="stats")
    return info


machine.machine_info = machine_info
"""

RECORD_THEN_IMPORT_TORCH = """
def test_1_records(cgmem_record):
    cgmem_record("server", peak=2**20)


def test_2_imports_torch(cgmem_record):
    import torch

    cgmem_record("graph", peak=2**20)
"""


@pytest.mark.parametrize("workers", [(), ("-n", "1")], ids=["serial", "xdist"])
def test_graph_keys_are_read_once_a_later_test_imports_torch(
    pytester: pytest.Pytester, workers: tuple[str, ...]
) -> None:
    """The machine read at a first ``cgmem_record`` test, torch not yet imported, has null
    graph keys; a later test imports torch (and a marked one would capture graphs): the run
    file says how graphs are seen, on a worker as in one process, the identity unchanged."""
    if workers:
        pytest.importorskip("xdist")
    pytester.makeconftest(GRAPHS_SEEN_ONCE_TORCH_IS_IMPORTED)
    pytester.makepyfile(test_records=RECORD_THEN_IMPORT_TORCH)
    args = ("-p", "no:cacheprovider", "-p", "no:randomly", *workers, "--cgmem-json=run.json")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2)
    machine = json.loads((pytester.path / "run.json").read_text())["machine"]
    assert machine["torch"] == torch.__version__
    assert (machine["graph_tracking"], machine["graph_pools"]) == ("wrappers", "stats")
