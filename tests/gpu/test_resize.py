"""resize_check and steady on a real GPU, under the default allocator and expandable segments.

Each allocator setting needs its own process (PYTORCH_CUDA_ALLOC_CONF is read when CUDA
starts), so a generated test file runs once per setting in a subprocess; the tests here
assert its outcomes and the lines a user reads.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import pytest_cgmem

pytestmark = pytest.mark.gpu

CONFS = {"default": None, "expandable": "expandable_segments:True"}

GENERATED = '''
import gc
import os
import sys

import pytest
import torch

GiB, MiB = 2**30, 2**20
EXPANDABLE = "expandable_segments:True" in os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")


@pytest.fixture(autouse=True)
def clean_allocator():
    """Each test starts from, and leaves, an allocator holding only the workspaces.

    A failing test's frames (its buffers) stay alive through sys.last_traceback and a
    reference cycle in pytest's exception info until the next test's call phase, and
    then until a gc pass: without this, one test's buffers and cached segments change
    the next test's figures.
    """
    yield
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            delattr(sys, name)
    gc.collect()
    torch.cuda.empty_cache()
    allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    print(f"CLEAN allocated {allocated // MiB} MiB, reserved {reserved // MiB} MiB")
    assert allocated <= 256 * MiB and reserved <= 256 * MiB, "a test left memory behind"


class Workspace:
    """Grows on demand: `del old; new = torch.empty(bigger)` (vLLM PR 39226)."""

    def __init__(self, flush):
        self.buf = None
        self.flush = flush

    def resize(self, n):
        if self.buf is not None and self.buf.numel() >= n:
            return
        self.buf = None
        if self.flush:
            torch.cuda.empty_cache()
        self.buf = torch.empty(n, dtype=torch.uint8, device="cuda")


def show(steps):
    for s in steps:
        print("STEP", s.step + 1, s.live, s.unused, s.slack, dict(s.retained))


def test_grow_without_empty_cache(cgmem):
    cgmem.resize_check(Workspace(flush=False).resize, [GiB, 2 * GiB, 4 * GiB])


def test_grow_with_empty_cache(cgmem):
    steps = cgmem.resize_check(Workspace(flush=True).resize, [GiB, 2 * GiB, 4 * GiB])
    show(steps)
    assert [s.live for s in steps] == [GiB, 2 * GiB, 4 * GiB]
    assert all(s.unused <= s.slack for s in steps)


def test_retained_view(cgmem):
    ws = Workspace(flush=True)
    kept = []

    def resize(n):
        ws.resize(n)
        kept.append(ws.buf[:10])  # another micro-batch keeps a view of the buffer

    cgmem.resize_check(resize, [GiB, 2 * GiB])


def exact(flush):
    """Reallocates on every size change, shrinking too."""
    state = {"buf": None}

    def resize(n):
        if state["buf"] is not None and state["buf"].numel() == n:
            return
        state["buf"] = None
        if flush:
            torch.cuda.empty_cache()
        state["buf"] = torch.empty(n, dtype=torch.uint8, device="cuda")

    return resize


def test_shrink_without_empty_cache(cgmem):
    cgmem.resize_check(exact(flush=False), [4 * GiB, 2 * GiB])


def test_shrink_with_empty_cache(cgmem):
    cgmem.resize_check(exact(flush=True), [4 * GiB, 2 * GiB])


def earlier_work():
    """Leave the test holding memory: a live 4 MiB block in a 20 MiB segment that
    empty_cache cannot release, and 512 MiB freed to the cache."""
    big = torch.empty(512 * MiB, dtype=torch.uint8, device="cuda")
    small = torch.empty(4 * MiB, dtype=torch.uint8, device="cuda")
    del big
    return small


def test_grow_after_earlier_work_with_empty_cache(cgmem):
    held = earlier_work()
    ws = Workspace(flush=True)
    ws.resize(GiB)  # the workspace already exists before the check
    steps = cgmem.resize_check(ws.resize, [2 * GiB, 4 * GiB])
    show(steps)
    assert [s.live for s in steps] == [2 * GiB, 4 * GiB]
    del held


def test_grow_after_earlier_work_without_empty_cache(cgmem):
    held = earlier_work()
    ws = Workspace(flush=False)
    ws.resize(GiB)
    cgmem.resize_check(ws.resize, [2 * GiB, 4 * GiB])
    del held


def pin_a_cached_segment(nbytes):
    """Earlier work that pins a cached segment (default allocator): a big buffer freed
    to the cache, then a small tensor carved out of it, so empty_cache cannot release the
    segment and later allocations reuse its free space."""
    big = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    del big
    return torch.empty(4 * MiB, dtype=torch.uint8, device="cuda")


def test_grow_beside_a_pinned_segment(cgmem):
    if EXPANDABLE:  # one segment per pool there, whose free pages empty_cache unmaps
        return
    pin = pin_a_cached_segment(4 * GiB)
    ws = Workspace(flush=True)
    ws.resize(GiB)  # carved from the pinned segment too
    cgmem.resize_check(ws.resize, [2 * GiB, 4 * GiB])
    del pin


@pytest.mark.cgmem(reserved_ratio=1.5)
def test_reserved_ratio_of_the_grow():
    ws = Workspace(flush=False)
    for n in (GiB, 2 * GiB, 4 * GiB):
        ws.resize(n)
    print("RESERVED", torch.cuda.memory_reserved() // MiB)


def test_steady_growing_workspace(cgmem):
    state = {"calls": 0, "buf": None}

    def step():
        state["calls"] += 1
        state["buf"] = None
        state["buf"] = torch.empty(state["calls"] * 64 * MiB, dtype=torch.uint8, device="cuda")

    cgmem.steady(step)


def test_steady_growing_workspace_beside_cached_memory(cgmem):
    pin = pin_a_cached_segment(GiB)
    state = {"calls": 0, "buf": None}

    def step():
        state["calls"] += 1
        state["buf"] = None
        state["buf"] = torch.empty(state["calls"] * 64 * MiB, dtype=torch.uint8, device="cuda")

    cgmem.steady(step)
    del pin


def test_steady_per_call_leak(cgmem):
    outputs = []
    cgmem.steady(lambda: outputs.append(torch.ones(16 * MiB, device="cuda")), repeat=4)


def test_steady_stable(cgmem):
    def step():
        x = torch.ones(16 * MiB, device="cuda")  # 64 MiB, freed when the call returns
        return x.sum()

    figures = cgmem.steady(step)
    print("STEADY", [(f.allocated, f.reserved, f.segments) for f in figures])
'''

OUTCOMES = {
    # test: (default allocator, expandable segments)
    "test_grow_without_empty_cache": ("FAILED", "PASSED"),
    "test_grow_with_empty_cache": ("PASSED", "PASSED"),
    "test_retained_view": ("FAILED", "FAILED"),
    "test_shrink_without_empty_cache": ("FAILED", "FAILED"),
    "test_shrink_with_empty_cache": ("PASSED", "PASSED"),
    "test_grow_after_earlier_work_with_empty_cache": ("PASSED", "PASSED"),
    "test_grow_after_earlier_work_without_empty_cache": ("FAILED", "PASSED"),
    "test_grow_beside_a_pinned_segment": ("FAILED", "PASSED"),
    "test_reserved_ratio_of_the_grow": ("FAILED", "PASSED"),
    "test_steady_growing_workspace": ("FAILED", "FAILED"),
    "test_steady_growing_workspace_beside_cached_memory": ("FAILED", "FAILED"),
    "test_steady_per_call_leak": ("FAILED", "FAILED"),
    "test_steady_stable": ("PASSED", "PASSED"),
}
_RESULT = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) \S+::(\w+)")
_HEADER = re.compile(r"^_{3,} (\w+) _{3,}$")


@dataclass
class Run:
    conf: str
    output: str
    outcomes: dict[str, str]

    def failure(self, test: str) -> list[str]:
        """The lines of ``test``'s failure report."""
        lines, inside = [], False
        for line in self.output.splitlines():
            header = _HEADER.match(line)
            if header:
                inside = header.group(1) == test
            elif line.startswith("====="):
                inside = False
            elif inside:
                lines.append(line)
        return lines

    def expect(self, test: str, *patterns: str) -> None:
        lines = self.failure(test)
        missing = [p for p in patterns if not any(fnmatch.fnmatch(x, p) for x in lines)]
        assert not missing, f"{self.conf}: {test}: no line matches {missing}:\n" + "\n".join(lines)


@pytest.fixture(scope="module", params=list(CONFS))
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The generated suite, run once per allocator setting in its own process."""
    conf = CONFS[request.param]
    path = tmp_path_factory.mktemp(f"resize-{request.param}")
    (path / "test_generated_resize.py").write_text(GENERATED)
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_CUDA_ALLOC_CONF"}
    if conf is not None:
        env["PYTORCH_CUDA_ALLOC_CONF"] = conf
    root = str(Path(pytest_cgmem.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-rA",
            "-s",
            "-p",
            "no:cacheprovider",
            "--cgmem-summary=50",
        ],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    output = proc.stdout + proc.stderr
    outcomes = {}
    for line in output.splitlines():
        match = _RESULT.match(line)
        if match and outcomes.get(match.group(2)) != "ERROR":  # a teardown error wins
            outcomes[match.group(2)] = match.group(1)
    print(output)  # shown with the test's report when an assertion below fails
    return Run(request.param, output, outcomes)


def test_outcomes(run: Run) -> None:
    column = list(CONFS).index(run.conf)
    expected = {test: both[column] for test, both in OUTCOMES.items()}
    assert run.outcomes == expected, run.output[-6000:]


def test_allocator_setting_reached_the_subprocess(run: Run) -> None:
    conf = CONFS[run.conf] or "(unset)"
    assert f"PYTORCH_CUDA_ALLOC_CONF={conf}" in run.output


def test_grow_without_empty_cache_names_step_figures_cause_and_fix(run: Run) -> None:
    if run.conf == "expandable":
        # expandable segments reuse the freed range and map only the difference: no 2x
        # resident, so the buggy grow honestly passes there
        assert run.outcomes["test_grow_without_empty_cache"] == "PASSED"
        return
    run.expect(
        "test_grow_without_empty_cache",
        "E *ResizeCheckFailed: cgmem: resize_check step 2/3, resize(2147483648) on cuda:0: "
        "1.00 GiB reserved but unused exceeds slack 0 B (live 2.00 GiB, reserved 3.00 GiB)",
        "E *cgmem: resize_check step 3/3, resize(4294967296) on cuda:0: 3.00 GiB reserved "
        "but unused exceeds slack 0 B (live 4.00 GiB, reserved 7.00 GiB)",
        "E *likely cause: memory freed by the resize went back to PyTorch's caching "
        "allocator, not to the device*",
        "E *fix: call torch.cuda.empty_cache() between freeing the old buffer and "
        "allocating the new one, or reserve the worst case up front",
        # the figures reach the cgmem report section
        "*resize_check: step, size, live, reserved, unused (slack), retained",
        "*2: resize(2147483648) live 2.00 GiB, reserved 3.00 GiB, unused 1.00 GiB (0 B), "
        "retained -  OVER",
    )


def test_grow_after_earlier_work_charges_only_the_checks_own_cache(run: Run) -> None:
    if run.conf == "expandable":
        pytest.skip("expandable segments grow one segment in place: no separate old segment")
    run.expect(
        "test_grow_after_earlier_work_without_empty_cache",
        "E *cgmem: resize_check step 1/2, resize(2147483648) on cuda:0: 1.00 GiB reserved "
        "but unused exceeds slack 0 B (live 2.00 GiB, reserved 3.00 GiB)",
    )
    # the old workspace had a segment of its own: nothing pinned it
    lines = run.failure("test_grow_after_earlier_work_without_empty_cache")
    assert not any("of it is free space" in line for line in lines), "\n".join(lines)


def test_pinned_segment_is_named(run: Run) -> None:
    """The old workspace freed into a segment that earlier work pins stays reserved even
    with empty_cache: the check charges it (it appeared during the check) and says why."""
    if run.conf == "expandable":
        pytest.skip("expandable segments are never pinned: empty_cache unmaps their free pages")
    run.expect(
        "test_grow_beside_a_pinned_segment",
        "E *cgmem: resize_check step 2/2, resize(4294967296) on cuda:0: 1.00 GiB reserved "
        "but unused exceeds slack 0 B (live 4.00 GiB, reserved 5.00 GiB)",
        "E *1.00 GiB of it is free space in segments that also hold memory allocated before "
        "the check*empty_cache() cannot release*",
    )


def test_each_generated_test_leaves_a_clean_allocator(run: Run) -> None:
    # printed by the generated file's autouse fixture after each test (run with -s)
    cleans = re.findall(r"CLEAN allocated \d+ MiB, reserved \d+ MiB", run.output)
    assert len(cleans) == len(OUTCOMES), run.output[-6000:]
    assert not any(o == "ERROR" for o in run.outcomes.values()), run.outcomes


def test_shrink_leaves_the_freed_half_cached_under_both_settings(run: Run) -> None:
    run.expect(
        "test_shrink_without_empty_cache",
        "E *ResizeCheckFailed: cgmem: resize_check step 2/2, resize(2147483648) on cuda:0: "
        "* reserved but unused exceeds slack *",
    )


def test_retained_view_names_the_old_buffer(run: Run) -> None:
    run.expect(
        "test_retained_view",
        "E *ResizeCheckFailed: cgmem: resize_check step 2/2, resize(2147483648) on cuda:0: "
        "1.00 GiB allocated by earlier steps is still allocated (1.00 GiB from step 1, "
        "resize(1073741824); live 3.00 GiB)",
        "E *likely cause: a view or reference into the old buffer*",
    )
    lines = run.failure("test_retained_view")
    assert not any("reserved but unused" in line for line in lines), "\n".join(lines)


def test_reserved_ratio_budget_reports_like_every_budget(run: Run) -> None:
    if run.conf == "expandable":
        return
    run.expect(
        "test_reserved_ratio_of_the_grow",
        "E *cgmem: reserved_ratio 1.75 exceeds budget 1.50 (+16.7%) on cuda:0",
    )


def test_steady_catches_a_workspace_growing_64_mib_per_call(run: Run) -> None:
    patterns = [
        "E *SteadyStateFailed: cgmem: steady: *",
        "E *cgmem: steady: allocated bytes grew by 64.00 MiB per call over 3 calls after 1 "
        "warm-up call(s) on cuda:0 (64.00 MiB -> 256.00 MiB: +64.00 MiB, +64.00 MiB, "
        "+64.00 MiB)",
        "E *cgmem: steady: reserved bytes grew by * per call over 3 calls*",
        "*steady: after warm-up, then after each call: allocated, reserved, segments",
    ]
    if run.conf == "default":
        patterns += [
            "E *cgmem: steady: reserved bytes grew by 192.00 MiB per call over 3 calls after "
            "1 warm-up call(s) on cuda:0 (64.00 MiB -> 640.00 MiB: +128.00 MiB, "
            "+192.00 MiB, +256.00 MiB)",
            "E *cgmem: steady: segment count grew by 1 per call over 3 calls after 1 "
            "warm-up call(s) on cuda:0 (1 -> 4: +1, +1, +1)",
        ]
    run.expect("test_steady_growing_workspace", *patterns)


def test_steady_beside_cached_memory_sees_the_allocated_growth(run: Run) -> None:
    """With free space in a pinned segment, the growing workspace is carved out of it:
    under the default allocator reserved bytes and segments do not move (seen on an H200),
    and allocated bytes still catch it."""
    test = "test_steady_growing_workspace_beside_cached_memory"
    run.expect(
        test,
        "E *cgmem: steady: allocated bytes grew by 64.00 MiB per call over 3 calls after 1 "
        "warm-up call(s) on cuda:0 (64.00 MiB -> 256.00 MiB: +64.00 MiB, +64.00 MiB, "
        "+64.00 MiB)",
    )
    if run.conf == "default":
        lines = run.failure(test)
        moved = [x for x in lines if "reserved bytes grew" in x or "segment count grew" in x]
        assert not moved, "\n".join(lines)


def test_steady_catches_a_per_call_leak(run: Run) -> None:
    run.expect(
        "test_steady_per_call_leak",
        "E *cgmem: steady: allocated bytes grew by 64.00 MiB per call over 4 calls after 1 "
        "warm-up call(s) on cuda:0 (64.00 MiB -> 320.00 MiB: +64.00 MiB, +64.00 MiB, "
        "+64.00 MiB, +64.00 MiB)",
    )


def test_steady_returns_the_figures_after_warm_up_and_after_each_call(run: Run) -> None:
    """``cgmem.steady(step)`` (one warm-up call, three more) of a step whose 64 MiB is freed
    as it returns: four figures, none growing, nothing left allocated."""
    (line,) = set(re.findall(r"STEADY (\[[^\]]*\])", run.output))
    figures = ast.literal_eval(line)
    assert len(figures) == 4, line
    assert {allocated for allocated, _, _ in figures} == {0}, line
    assert len(set(figures)) == 1, line


def test_summary_lists_the_check_regions(run: Run) -> None:
    assert "test(s) with figures, largest peak first" in run.output
    assert "[resize_check]" in run.output
    assert "[steady]" in run.output


def test_workspace_examples_under_the_default_allocator(tmp_path: Path) -> None:
    """examples/test_workspace_resize.py: each buggy example xfails, each fixed twin passes."""
    example = Path(__file__).resolve().parents[2] / "examples" / "test_workspace_resize.py"
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_CUDA_ALLOC_CONF"}
    root = str(Path(pytest_cgmem.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", str(example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    assert re.search(r"\b4 passed, 4 xfailed\b", output), output[-8000:]
