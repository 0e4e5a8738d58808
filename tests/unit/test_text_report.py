"""The failure section, terminal summary, header and baseline summary, line for line as the
docs quote them (docs/usage.md, docs/diagnostics.md, docs/suite.md, docs/baselines.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import pytest_cgmem
from pytest_cgmem.checks.budgets import Budget
from pytest_cgmem.reports.text import baseline_summary, header, section, suite_summary, summary
from pytest_cgmem.results import graphfigures
from pytest_cgmem.results.records import DeviceFigures, RegionResult, TestRecord

MiB = 2**20
DOCS = Path(pytest_cgmem.__file__).parents[1] / "docs"


def page(name: str) -> str:
    return (DOCS / name).read_text()


def block(name: str, first: str, last: str = "") -> list[str]:
    """The lines of a fenced block of docs page ``name``, from the one that starts with
    ``first`` to its end, or to the first line from there that starts with ``last``."""
    text = page(name)
    start = text.index("\n" + first) + 1
    lines = text[start : text.index("\n```", start)].splitlines()
    if last:
        lines = lines[: next(n for n, line in enumerate(lines) if line.startswith(last)) + 1]
    return lines


def figures(**values: Any) -> DeviceFigures:
    """A device's figures as a CUDA run gives them; ``values`` override."""
    plain: dict[str, Any] = {
        "leak": 0,
        "non_torch": 0,
        "graph_pool": 0,
        "graphs": 0,
        "replays": 0,
        "allocated_start": 33 * MiB,
        "allocated_end": 33 * MiB,
        "reserved_start": 34 * MiB,
        "device_source": "cudaMemGetInfo",
    }
    return DeviceFigures(0, **(plain | values))


def call(*devices: DeviceFigures, seconds: float = 0.001, **extra: Any) -> RegionResult:
    return RegionResult("call", devices, seconds, None, extra)


# -- the failure section -----------------------------------------------------------------


def test_the_section_of_a_peak_one_byte_over_is_the_one_usage_md_quotes() -> None:
    region = call(
        figures(
            peak=3146240,
            reserved=20 * MiB,
            device=20 * MiB,
            reserved_ratio=6.67,
            reserved_end=54 * MiB,
        ),
        seconds=0.0002,
    )
    assert section([region], Budget({"peak": 3146239})).splitlines() == block(
        "usage.md", "call on cuda:0 (0.2 ms):"
    )


@pytest.mark.parametrize(
    ("peak", "leak", "budget", "seconds", "allocated_end", "reserved_end"),
    [
        (257 * MiB, 0, {"peak": 64 * MiB}, 0.0009, 33 * MiB, 292 * MiB),
        (48 * MiB, 48 * MiB, {"leak": 0}, 0.0004, 81 * MiB, 82 * MiB),
    ],
    ids=["over_budget", "leaks"],
)
def test_the_sections_diagnostics_md_quotes(
    peak: int,
    leak: int,
    budget: dict[str, int],
    seconds: float,
    allocated_end: int,
    reserved_end: int,
) -> None:
    reserved = reserved_end - 34 * MiB
    region = call(
        figures(
            peak=peak,
            reserved=reserved,
            leak=leak,
            device=reserved,
            reserved_ratio=reserved / peak,
            allocated_end=allocated_end,
            reserved_end=reserved_end,
            leak_confirmed=True,
        ),
        seconds=seconds,
    )
    first = f"call on cuda:0 ({seconds * 1000:.1f} ms):"
    assert section([region], Budget(budget)).splitlines() == block(
        "diagnostics.md", first, "  allocated "
    )


@pytest.mark.parametrize(("peak", "verdict"), [(MiB - 1, "ok"), (MiB, "ok"), (MiB + 1, "OVER")])
def test_a_figure_at_its_budget_is_ok_and_one_byte_more_is_over(peak: int, verdict: str) -> None:
    text = section([call(figures(peak=peak))], Budget({"peak": MiB}))
    (row,) = [line for line in text.splitlines() if line.startswith("  peak ")]
    assert row.endswith(f"   budget   1.00 MiB  {verdict}")


NOTES = {
    "disturbed": "  note: another process's device memory changed during the region; "
    "'device' and 'non_torch' may be disturbed",
    "oom": "  note: CUDA out of memory (2x) inside the region; figures are those measured up "
    "to the failure",
    "gc": "  note: the leak check's garbage collection freed 3.00 MiB; garbage left from "
    "before the region counts in its start figure and can offset a leak",
    "leak": "  note: the leak persists in torch's allocator after gc and cuBLAS workspace "
    "clearing, but the driver figure did not grow",
}


@pytest.mark.parametrize(
    ("details", "extra", "notes"),
    [
        ({}, {}, []),
        ({"disturbed": True}, {}, ["disturbed"]),
        ({"ooms": 2}, {}, ["oom"]),
        ({"gc_freed": 3 * MiB}, {}, ["gc"]),
        ({"leak": MiB}, {}, ["leak"]),
        ({"leak": MiB, "leak_confirmed": True}, {}, []),
        ({"leak": MiB}, {"recorded": ["leak"]}, []),
        ({"leak": MiB, "leak_confirmed": True}, {"recorded": ["leak"]}, []),
        (
            {"disturbed": True, "ooms": 2, "gc_freed": 3 * MiB, "leak": MiB},
            {},
            ["disturbed", "oom", "gc", "leak"],
        ),
    ],
)
def test_each_note_of_the_section_says_what_the_region_saw(
    details: dict[str, Any], extra: dict[str, Any], notes: list[str]
) -> None:
    region = call(figures(peak=MiB, **details), **extra)
    lines = section([region]).splitlines()
    assert [line for line in lines if line.startswith("  note: ")] == [NOTES[n] for n in notes]


RAISED = (
    "  note: no leak figure: the region ended by an exception, whose traceback holds the "
    "tensors of the code that raised (PyTorch's leak check skips a test that raised too)"
)


@pytest.mark.parametrize(
    ("leak", "extra", "noted"),
    [
        (None, {}, True),
        (0, {}, False),
        (None, {graphfigures.EXTRA_KEY: {"sizes": []}}, False),
    ],
    ids=["a region that raised", "a figure given", "a graph log, which measures no leak"],
)
def test_a_region_that_raised_says_why_it_has_no_leak_figure(
    leak: int | None, extra: dict[str, Any], noted: bool
) -> None:
    region = RegionResult("call", (figures(leak=leak),), 0.001, "AssertionError: x", extra)
    lines = section([region], Budget({"leak": 0})).splitlines()
    assert (RAISED in lines) is noted
    assert lines[-1] == "  region ended by AssertionError: x"
    if noted:
        assert "  leak                    n/a   budget        0 B  n/a" in lines
        assert RAISED in page("measuring.md")


def test_a_budgeted_figure_nobody_measured_is_n_a_not_ok() -> None:
    """docs/diagnostics.md: ``n/a`` for one nobody measured."""
    recorded = RegionResult(
        "load", (DeviceFigures(0, peak=1),), 0.001, None, {"recorded": ["peak"]}
    )
    rows = section([recorded], Budget({"leak": 0})).splitlines()
    assert "  leak                    n/a   budget        0 B  n/a" in rows


@pytest.mark.parametrize(
    ("details", "shown"),
    [
        ({"device_source": "recorded"}, None),  # cgmem_record's keywords
        ({}, None),  # a RegionResult built by hand: its default source, no context
        ({"device_source": "cudaMemGetInfo", "allocated_end": 5}, "5 B"),  # measured elsewhere
    ],
    ids=["keywords", "built-by-hand", "measured-elsewhere"],
)
def test_recorded_figures_show_no_allocator_context_nobody_measured(
    details: dict[str, Any], shown: str | None
) -> None:
    """``cgmem_record``'s keywords, or a RegionResult built by hand, give figures, not the
    allocator's bytes at a region's start and end: no ``allocated 0 B -> 0 B ...; device
    figure from nvml`` line reads as a measurement. A RegionResult measured elsewhere (read
    from a run file) keeps its own context and source."""
    device = DeviceFigures(0, peak=5, **details)
    region = RegionResult("load", (device,), 0.001, None, {"recorded": ["peak"]})
    rows = section([region], Budget({"peak": 1})).splitlines()
    context = [row for row in rows if row.startswith("  allocated ")]
    if shown is None:
        assert context == []
    else:
        assert context == [
            f"  allocated 0 B -> {shown}, reserved 0 B -> 0 B; device figure from cudaMemGetInfo"
        ]


def test_an_unavailable_figure_is_noted_with_its_reason_after_the_device_blocks() -> None:
    why = "backend:cudaMallocAsync keeps no graph pools"
    region = RegionResult(
        "call",
        (figures(peak=MiB, graph_pool=None), DeviceFigures(1, peak=MiB, graph_pool=None)),
        0.001,
        None,
        {"unavailable": {"graph_pool": why}},
    )
    lines = section([region], Budget({"graph_pool": MiB})).splitlines()
    assert lines.count("  graph_pool              n/a   budget   1.00 MiB  unavailable") == 2
    assert lines[-1] == f"  note: graph_pool unavailable: {why}"
    assert lines.count(lines[-1]) == 1


def test_figures_unavailable_for_one_reason_share_one_note() -> None:
    kept = "the region kept torch's cache as the test found it"
    region = RegionResult(
        "call",
        (figures(peak=MiB, reserved=None, device=None),),
        0.001,
        None,
        {"unavailable": {"reserved": kept, "device": kept, "graph_pool": "no pools"}},
    )
    notes = [line for line in section([region]).splitlines() if "note:" in line]
    assert notes == [
        f"  note: reserved, device unavailable: {kept}",
        "  note: graph_pool unavailable: no pools",
    ]


def test_a_region_without_figures_says_why_then_its_lines_and_its_error() -> None:
    """docs/distributed.md: ``rank0: no figures (no CUDA device)``."""
    rank = RegionResult(
        "rank0",
        (),
        0.5,
        "RuntimeError: boom",
        {"unmeasured": "no CUDA device", "lines": ["a", "b"]},
    )
    unlabelled = RegionResult(None, (), 0.5)
    assert section([rank, unlabelled]).splitlines() == [
        "rank0: no figures (no CUDA device)",
        "  a",
        "  b",
        "  region ended by RuntimeError: boom",
        "region: no figures (no device)",
    ]
    assert "rank0: no figures (no CUDA device)" in page("distributed.md")


def test_a_region_with_figures_says_no_no_figures_line() -> None:
    text = section([call(figures(peak=MiB), lines=["extra line"])])
    assert "no figures" not in text
    assert text.splitlines()[-1] == "  extra line"


def test_every_device_of_a_region_gets_its_own_block() -> None:
    region = RegionResult("load", (figures(peak=MiB), DeviceFigures(1, peak=2 * MiB)), 1.25)
    heads = [line for line in section([region]).splitlines() if not line.startswith(" ")]
    assert heads == ["load on cuda:0 (1250.0 ms):", "load on cuda:1 (1250.0 ms):"]


# -- the terminal summary ----------------------------------------------------------------


def measured(nodeid: str, peak: int, **kwargs: Any) -> TestRecord:
    devices = figures(peak=peak, reserved=20 * MiB, device=20 * MiB)
    return TestRecord(nodeid, "passed", (call(devices),), **kwargs)


def test_the_summary_of_the_two_largest_of_three_is_the_one_usage_md_quotes() -> None:
    records = [
        measured("test_default.py::test_mid", MiB),
        measured("test_default.py::test_small", MiB // 2),
        measured("test_default.py::test_big", 2 * MiB),
    ]
    assert summary(records, 2) == block("usage.md", "3 test(s) with figures")


@pytest.mark.parametrize(("limit", "title"), [(3, ""), (4, ""), (2, " (top 2)"), (1, " (top 1)")])
def test_the_summary_says_top_n_only_when_it_leaves_tests_out(limit: int, title: str) -> None:
    records = [measured(f"t.py::test_{n}", n * MiB) for n in (1, 2, 3)]
    lines = summary(records, limit)
    assert lines[0] == f"3 test(s) with figures, largest peak first{title}"
    assert [line.split()[0] for line in lines[2:]] == [
        "t.py::test_3",
        "t.py::test_2",
        "t.py::test_1",
    ][:limit]


@pytest.mark.parametrize(("records", "limit"), [([], 10), ([measured("t.py::t", MiB)], 0)])
def test_no_summary_without_records_or_with_summary_zero(
    records: list[TestRecord], limit: int
) -> None:
    """docs/usage.md: ``--cgmem-summary=N`` ... 0 turns it off."""
    assert summary(records, limit) == []


@pytest.mark.parametrize(
    ("length", "shown"),
    [(59, "t" * 59), (60, "..." + "t" * 56), (70, "..." + "t" * 56)],
)
def test_a_name_longer_than_its_column_keeps_its_end(length: int, shown: str) -> None:
    nodeid = "t" * length
    row = summary([measured(nodeid, MiB)], 10)[2]
    assert row[:60] == f"{shown:<60}"
    assert row[60:72] == f"{'1.00 MiB':>12}"


# -- the --cgmem-all summary -------------------------------------------------------------


def over_budget(nodeid: str) -> TestRecord:
    record = measured(nodeid, MiB)
    return TestRecord(
        nodeid,
        "failed",
        record.regions,
        violations=tuple(record.regions[0].check(Budget({"peak": 0}))),
    )


def test_the_suite_summary_is_the_one_suite_md_quotes() -> None:
    records = [over_budget("t.py::o1"), over_budget("t.py::o2")] + [
        measured(f"t.py::m{n}", MiB) for n in range(4)
    ]
    opted = {"test_suite.py::test_opted_out_leak": "keeps its tensor on purpose"}
    assert suite_summary(records, opted, ["t.py::cpu"]) == block("suite.md", "--cgmem-all: ")


def test_an_opted_out_test_that_recorded_figures_is_counted_opted_out_not_measured() -> None:
    """docs/suite.md: its line ends with `` (the figures it recorded are kept, not judged)``."""
    records = [over_budget("t.py::kept"), measured("t.py::a", MiB)]
    opted = {"t.py::kept": "records a server", "t.py::bare": "no GPU here"}
    assert suite_summary(records, opted, []) == [
        "--cgmem-all: 1 test(s) measured, 0 over budget, 2 opted out, "
        "0 never used CUDA (not measured)",
        "  opted out t.py::bare: no GPU here",
        "  opted out t.py::kept: records a server (the figures it recorded are kept, not judged)",
    ]
    assert "ends with ` (the figures it recorded are kept, not judged)`" in page("suite.md")


def test_many_tests_opted_out_for_one_reason_take_one_line() -> None:
    """A module's or a class's ``cgmem_off`` opts out each of its tests: 5,000 of them are
    one line, which names the first two and counts the rest; a reason of three tests or
    fewer lists each (docs/suite.md)."""
    opted = {f"t_big.py::test_{n:04}": "runs its own allocator" for n in range(5000)}
    opted |= {"t_few.py::test_a": "no GPU here", "t_few.py::test_b": "no GPU here"}
    records = [over_budget("t_big.py::test_0007"), measured("t.py::m", MiB)]
    assert suite_summary(records, opted, [])[1:] == [
        "  opted out 5000 tests (t_big.py::test_0000, t_big.py::test_0001 and 4998 more): "
        "runs its own allocator (the figures 1 of them recorded are kept, not judged)",
        "  opted out t_few.py::test_a: no GPU here",
        "  opted out t_few.py::test_b: no GPU here",
    ]
    assert "one line that names the first two and counts the rest" in page("suite.md")


def test_a_test_that_recorded_figures_after_a_call_without_cuda_is_measured_only() -> None:
    """A fixture's teardown recorded figures for a test whose call never used CUDA: the
    test is measured, not also counted as never having used CUDA."""
    records = [measured("t.py::teardown_recorded", MiB)]
    assert suite_summary(records, {}, ["t.py::teardown_recorded", "t.py::cpu"]) == [
        "--cgmem-all: 1 test(s) measured, 0 over budget, 0 opted out, "
        "1 never used CUDA (not measured)"
    ]


# -- the header --------------------------------------------------------------------------

MACHINE = {
    "gpus": ["NVIDIA H200"],
    "driver": "580.159.04",
    "torch": "2.11.0+cu130",
    "cuda": "13.0",
    "allocator_backend": "native",
    "alloc_conf": "",
    "alloc_conf_source": "",
    "graph_tracking": "CUDAGraph method wrappers",
    "graph_pools": "memory_snapshot(include_traces=False) segments",
}


@pytest.mark.parametrize("name", ["usage.md", "diagnostics.md"])
def test_the_header_is_the_one_the_docs_quote(name: str) -> None:
    assert header(MACHINE) == block(name, "cgmem: GPUs: ")[:3]


def test_the_header_names_every_gpu_and_says_what_it_does_not_know() -> None:
    info = MACHINE | {"gpus": ["A", "B"], "driver": None, "cuda": None, "graph_pools": None}
    assert header(info) == [
        "cgmem: GPUs: A, B; driver unknown",
        "cgmem: torch 2.11.0+cu130, CUDA none, allocator native, PYTORCH_CUDA_ALLOC_CONF=(unset)",
        "cgmem: CUDA graphs seen through CUDAGraph method wrappers; graph pool bytes from unknown",
    ]
    assert header({"gpus": []})[0] == "cgmem: GPUs: none visible; driver unknown"
    assert header({"gpus": [], "torch": None})[1].startswith("cgmem: torch none, CUDA none, ")


# -- the baseline summary ----------------------------------------------------------------


def change(message: str) -> dict[str, Any]:
    return {"message": message}


def findings(compared: int, **found: Any) -> dict[str, Any]:
    return {
        "compared": compared,
        "regressions": [],
        "improvements": [],
        "new": [],
        "sizes": [],
    } | found


BASELINED = [
    TestRecord(
        "test_s.py::test_a",
        "failed",
        (),
        baseline=findings(
            1,
            regressions=[
                change(
                    "cgmem: peak 150.00 MiB regressed from baseline 100.00 MiB (+50.00 MiB, "
                    "+50.0%; tolerance 5% or 2.00 MiB) on cuda:0 in 'server'"
                )
            ],
        ),
    ),
    TestRecord(
        "test_s.py::test_b",
        "passed",
        (),
        baseline=findings(
            1,
            improvements=[
                change(
                    "cgmem: peak 1.00 GiB improved from baseline 2.00 GiB (-1.00 GiB, -50.0%; "
                    "tolerance 5% or 2.00 MiB) on cuda:0 in 'load'"
                )
            ],
        ),
    ),
    TestRecord(
        "test_s.py::test_new", "passed", (), baseline=findings(0, new=["test_s.py::test_new [x]"])
    ),
    TestRecord("test_s.py::test_unjudged", "passed", ()),
]


def test_the_baseline_summary_is_the_one_baselines_md_quotes() -> None:
    nodeids = {"test_s.py::test_a", "test_s.py::test_b"}
    assert baseline_summary("out/base.json", BASELINED, nodeids) == block(
        "baselines.md", "cgmem baseline out/base.json"
    )


@pytest.mark.parametrize(
    ("nodeids", "counted"),
    [
        (set(), ""),
        ({"test_s.py::test_a", "test_s.py::test_unjudged"}, ""),
        (
            {"test_s.py::test_a", "test_s.py::gone", "test_s.py::skipped"},
            "; 2 baseline test(s) not measured in this run",
        ),
    ],
)
def test_the_baseline_summary_counts_the_baseline_s_tests_this_run_did_not_measure(
    nodeids: set[str], counted: str
) -> None:
    first = baseline_summary("b.json", BASELINED, nodeids)[0]
    assert first == (
        "cgmem baseline b.json: 2 figure(s) of 3 test(s) compared: 1 regression(s), "
        f"1 improvement(s), 1 new{counted}"
    )


def test_the_size_lines_follow_the_new_tests() -> None:
    """docs/baselines.md: ``size vanished t.py::test_capture: capture size 64 (2.00 MiB)
    vanished from 'capture_sweep'``."""
    sized = findings(
        0,
        sizes=[
            {
                "change": "vanished",
                "message": "cgmem: capture size 64 (2.00 MiB) vanished from 'capture_sweep'",
            }
        ],
    )
    records = [*BASELINED, TestRecord("t.py::test_capture", "passed", (), baseline=sized)]
    lines = baseline_summary("b.json", records, set())
    assert lines[-2:] == [
        "  new test_s.py::test_new [x]",
        "  size vanished t.py::test_capture: capture size 64 (2.00 MiB) vanished from "
        "'capture_sweep'",
    ]
    assert lines[-1] + "\n" in page("baselines.md")
