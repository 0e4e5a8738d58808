"""Results on a real GPU: JSON, GAB JSON and pytest-benchmark JSON from a real suite; a
baseline that catches a deliberately bigger allocation; xdist -n 2 on one GPU agreeing with
a serial run. Each run is a subprocess, so each has its own fresh CUDA context."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

import pytest_cgmem
from pytest_cgmem.results import runfile

pytestmark = pytest.mark.gpu

MiB = 2**20

SUITE = """
import os
import pytest
import torch

MiB = 2**20
SIZE = int(os.environ.get("CGMEM_TEST_MIB", "64"))

@pytest.mark.cgmem(peak="1 GiB", leak=0)
def test_alloc():
    x = torch.empty(SIZE * MiB, dtype=torch.uint8, device="cuda")
    x.fill_(1)
    torch.cuda.synchronize()
    del x

@pytest.mark.cgmem(peak="1 GiB", leak=0)
def test_steady():
    x = torch.empty(32 * MiB, dtype=torch.uint8, device="cuda")
    x.fill_(2)
    del x

def test_regions(cgmem):
    with cgmem.measure("first"):
        a = torch.empty(8 * MiB, dtype=torch.uint8, device="cuda")
    with cgmem.measure("second"):
        b = torch.empty(24 * MiB, dtype=torch.uint8, device="cuda")
    del a, b

@pytest.mark.parametrize("n", [2, 4, 6, 8])
@pytest.mark.cgmem(peak="1 GiB")
def test_param(n):
    x = torch.empty(n * MiB, dtype=torch.uint8, device="cuda")
    del x
"""

BENCH = """
import pytest
import torch

MiB = 2**20

@pytest.mark.cgmem(peak="1 GiB")
def test_bench(benchmark):
    benchmark(lambda: torch.empty(16 * MiB, dtype=torch.uint8, device="cuda").fill_(0))
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv(
        "PYTHONPATH", str(Path(pytest_cgmem.__file__).parents[1]), prepend=os.pathsep
    )
    monkeypatch.delenv("CGMEM_TEST_MIB", raising=False)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    runfile.validate(doc)
    return doc


def torch_figures(doc: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    """The allocator's own figures (deterministic); NVML's depend on other processes."""
    keep = ("peak", "reserved", "leak", "graphs", "graph_pool")
    return {k: {m: v for m, v in f.items() if m in keep} for k, f in runfile.figures(doc).items()}


def test_real_suite_writes_json_and_gab_json(suite: pytest.Pytester) -> None:
    result = suite.runpytest_subprocess("--cgmem-json=run.json", "--cgmem-gab-json=gab.json")
    result.assert_outcomes(passed=7)
    doc = load(suite.path / "run.json")
    assert doc["machine"]["gpus"] and doc["machine"]["torch"] == torch.__version__
    assert doc["machine"]["cuda"] == torch.version.cuda
    assert doc["machine"]["allocator_backend"] in ("native", "cudaMallocAsync")
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert len(tests) == 7
    alloc = tests["test_alloc"]
    assert alloc["checked"] == ["call"] and alloc["budget"] == {"peak": 2**30, "leak": 0}
    (region,) = alloc["regions"]
    assert region["label"] == "call"
    device = region["devices"][0]
    assert device["peak"] == 64 * MiB
    assert device["reserved"] >= 64 * MiB and device["leak"] == 0
    assert device["device"] is not None and device["device"] >= 0
    labels = [r["label"] for r in tests["test_regions"]["regions"]]
    assert labels == ["first", "second"]
    assert tests["test_regions"]["regions"][1]["devices"][0]["peak"] == 24 * MiB
    gab = {e["name"]: e for e in json.loads((suite.path / "gab.json").read_text())}
    assert gab["test_suite.py::test_alloc - peak"]["value"] == 64.0
    assert gab["test_suite.py::test_regions [second] - peak"]["value"] == 24.0
    assert doc["machine"]["gpus"][0] in gab["test_suite.py::test_alloc - peak"]["extra"]


def test_real_suite_writes_benchmark_json(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytest_benchmark")
    monkeypatch.setenv(
        "PYTHONPATH", str(Path(pytest_cgmem.__file__).parents[1]), prepend=os.pathsep
    )
    pytester.makepyfile(test_bench=BENCH)
    result = pytester.runpytest_subprocess(
        "--benchmark-json=bench.json", "--benchmark-max-time=0.05", "--cgmem-json=run.json"
    )
    result.assert_outcomes(passed=1)
    bench = json.loads((pytester.path / "bench.json").read_text())
    (entry,) = bench["benchmarks"]
    call = entry["extra_info"]["cgmem"]["call"]
    assert call["peak"] >= 16 * MiB and "reserved" in call
    assert bench["machine_info"]["cgmem"]["gpus"]
    assert (
        load(pytester.path / "run.json")["tests"][0]["regions"][0]["devices"][0]["peak"] >= 16 * MiB
    )


def test_baseline_catches_a_bigger_allocation_in_that_test_only(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite.runpytest_subprocess("--cgmem-save-baseline=base.json").assert_outcomes(passed=7)
    same = suite.runpytest_subprocess("--cgmem-baseline=base.json")
    same.assert_outcomes(passed=7)  # a rerun of the same code is no regression
    monkeypatch.setenv("CGMEM_TEST_MIB", "128")
    result = suite.runpytest_subprocess("--cgmem-baseline=base.json", "--cgmem-json=run.json")
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E*BaselineRegression: cgmem: peak 128.00 MiB regressed from baseline 64.00 MiB "
            "(+64.00 MiB, +100.0%; tolerance 5% or 2.00 MiB) on cuda:0",
            "FAILED test_suite.py::test_alloc - *BaselineRegression*",
        ]
    )
    doc = load(suite.path / "run.json")
    failed = [t["nodeid"] for t in doc["tests"] if t["outcome"] == "failed"]
    assert failed == ["test_suite.py::test_alloc"]


TOLERANT = """
import os
import pytest
import torch

MiB = 2**20
SIZE = int(os.environ.get("CGMEM_TEST_MIB", "64"))

def _alloc():
    x = torch.empty(SIZE * MiB, dtype=torch.uint8, device="cuda")
    x.fill_(1)
    del x

@pytest.mark.cgmem(tolerance="60%")
def test_tolerant():
    _alloc()

@pytest.mark.cgmem(tolerance="10% 1MiB")
def test_strict():
    _alloc()

@pytest.mark.cgmem(peak="1 GiB")
def test_default():
    _alloc()
"""


def test_a_mark_s_tolerance_is_the_one_its_baseline_check_uses(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 MiB grown to 96 MiB (+50%): within the mark's 60%, beyond its 10% and beyond the
    run's default 5%. The run file keeps each test's own tolerance."""
    monkeypatch.setenv(
        "PYTHONPATH", str(Path(pytest_cgmem.__file__).parents[1]), prepend=os.pathsep
    )
    monkeypatch.delenv("CGMEM_TEST_MIB", raising=False)
    pytester.makepyfile(test_tolerant=TOLERANT)
    saved = pytester.runpytest_subprocess("-p", "no:randomly", "--cgmem-save-baseline=base.json")
    saved.assert_outcomes(passed=3)
    monkeypatch.setenv("CGMEM_TEST_MIB", "96")
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "--cgmem-baseline=base.json", "--cgmem-json=run.json"
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "E*BaselineRegression: cgmem: peak 96.00 MiB regressed from baseline 64.00 MiB "
            "(+32.00 MiB, +50.0%; tolerance 10% or 1.00 MiB) on cuda:0",
            "E*BaselineRegression: cgmem: peak 96.00 MiB regressed from baseline 64.00 MiB "
            "(+32.00 MiB, +50.0%; tolerance 5% or 2.00 MiB) on cuda:0",
        ]
    )
    doc = load(pytester.path / "run.json")
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert {name: t["outcome"] for name, t in tests.items()} == {
        "test_tolerant": "passed",
        "test_strict": "failed",
        "test_default": "failed",
    }
    assert tests["test_tolerant"]["tolerance"] == {"rel": 0.6}
    assert tests["test_strict"]["tolerance"] == {"rel": 0.1, "abs": MiB}
    assert tests["test_default"]["tolerance"] is None


def test_xdist_on_one_gpu_agrees_with_a_serial_run(suite: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    suite.runpytest_subprocess("--cgmem-json=serial.json").assert_outcomes(passed=7)
    result = suite.runpytest_subprocess(
        "-p", "no:benchmark", "-n", "2", "--cgmem-devices=all", "--cgmem-json=xdist.json"
    )
    result.assert_outcomes(passed=7)
    serial, xdist = load(suite.path / "serial.json"), load(suite.path / "xdist.json")
    assert [t["nodeid"] for t in xdist["tests"]] == [t["nodeid"] for t in serial["tests"]]
    assert {t["worker"] for t in xdist["tests"]} == {"gw0", "gw1"}
    # --cgmem-devices=all: worker N gets device N mod k (one GPU: both on the same one)
    import torch

    pinned = {t["cuda_visible_devices"] for t in xdist["tests"]}
    assert None not in pinned
    assert len(pinned) == min(2, torch.cuda.device_count())
    assert torch_figures(xdist) == torch_figures(serial)


def test_devices_the_machine_lacks_are_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("xdist")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest_subprocess("-p", "no:benchmark", "-n", "2", "--cgmem-devices=99,98")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # refused by the controller, before workers
    result.stderr.fnmatch_lines(["ERROR: --cgmem-devices='99,98': device 99 does not exist*"])


CRASH_SUITE = """
import os
import signal
import pytest
import torch

MiB = 2**20

@pytest.mark.parametrize("n", range(1, 17))
@pytest.mark.cgmem(peak="1 GiB", leak=0)
def test_alloc(n):
    x = torch.empty(n * MiB, dtype=torch.uint8, device="cuda")
    x.fill_(1)
    del x

@pytest.mark.cgmem(peak="1 GiB")
def test_zz_killed():
    x = torch.empty(64 * MiB, dtype=torch.uint8, device="cuda")
    x.fill_(1)
    with open("killed-worker.txt", "w") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"])
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
"""


def test_xdist_worker_killed_mid_run_keeps_every_other_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A marked suite under -n 4; one worker is SIGKILLed in its test: the run file holds
    every other test's measured figures and says which worker died, running what."""
    pytest.importorskip("xdist")
    monkeypatch.setenv(
        "PYTHONPATH", str(Path(pytest_cgmem.__file__).parents[1]), prepend=os.pathsep
    )
    pytester.makepyfile(test_crash=CRASH_SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:benchmark", "-n", "4", "--cgmem-devices=all", "--cgmem-json=run.json"
    )
    result.assert_outcomes(passed=16, failed=1)
    dead = (pytester.path / "killed-worker.txt").read_text()
    doc = runfile.load_run(pytester.path / "run.json")
    tests = {t["nodeid"].split("::")[1]: t for t in doc["tests"]}
    assert sorted(tests) == sorted(f"test_alloc[{n}]" for n in range(1, 17))
    for n in range(1, 17):
        (region,) = tests[f"test_alloc[{n}]"]["regions"]
        assert region["label"] == "call"
        # the allocator's own figure: exact, or (above 10 MiB, in a fresh 2 MiB-rounded
        # segment that is not split) the whole block
        assert region["devices"][0]["peak"] in {n * MiB, -(-n // 2) * 2 * MiB}
        assert region["devices"][0]["leak"] == 0
    assert doc["complete"] is False
    (lost,) = doc["workers_lost"]
    assert (lost["worker"], lost["test"]) == (dead, "test_crash.py::test_zz_killed")
    assert doc["incomplete_reason"] == (
        f"worker {dead} crashed while running test_crash.py::test_zz_killed (that test's "
        "figures are lost)"
    )
    survivors = sorted(n for n, t in tests.items() if t["worker"] == dead)
    assert survivors, "the killed worker had passed tests before; their figures must be here"
    assert doc["machine"]["gpus"] and doc["machine"]["torch"] == torch.__version__
    lost_list = [(w["worker"], w["test"]) for w in doc["workers_lost"]]
    print(
        f"cgmem crash check: -n 4, worker {dead} SIGKILLed in test_zz_killed; run file: "
        f"{len(tests)} of 16 other tests, {len(survivors)} of them from {dead} before it died; "
        f"complete={doc['complete']}; workers_lost={lost_list}"
    )
