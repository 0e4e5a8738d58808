"""The pure decision logic of resize_check and steady: slack, verdicts and message texts."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_cgmem import CheckFailed, ResizeCheckFailed, SteadyStateFailed
from pytest_cgmem.checks.resize import (
    PINNED_NOTE,
    RETAINED_CAUSE,
    RETAINED_FIX,
    UNUSED_CAUSE,
    UNUSED_FIX,
    CheckViolation,
    SteadyFigures,
    StepFigures,
    resize_lines,
    resize_violations,
    resolve_slack,
    rounding_slack,
    steady_lines,
    steady_violations,
)
from pytest_cgmem.reports.text import section
from pytest_cgmem.results.records import DeviceFigures, RegionResult
from pytest_cgmem.units import CgmemUsageError

KiB, MiB, GiB = 2**10, 2**20, 2**30


@pytest.mark.parametrize(
    ("sizes", "expandable", "slack"),
    [
        ([], False, 0),
        ([GiB], False, 0),  # a multiple of 2 MiB: its own segment, exactly
        ([2 * GiB, 4 * GiB], False, 0),
        ([11 * MiB], False, 1 * MiB),  # >= 10 MiB: rounded up to 2 MiB
        ([10 * MiB], False, 0),  # 10 MiB is no longer mid-sized
        ([10 * MiB + 512], False, 2 * MiB - 512),
        ([1536 * KiB], False, 20 * MiB - 1536 * KiB),  # 1..10 MiB: shares a 20 MiB segment
        ([4 * MiB, 4 * MiB], False, 12 * MiB),
        ([512], False, 2 * MiB - 512),  # small pool: 2 MiB segments
        ([100], False, 2 * MiB - 512),  # rounds up to 512 B first
        ([0], False, 2 * MiB - 512),  # like torch's round_size(0)
        ([1 * MiB], False, 1 * MiB),  # 1 MiB is still small
        ([512, GiB], False, 2 * MiB - 512),
        ([GiB], True, 20 * MiB),  # expandable: one 20 MiB page per large pool
        ([GiB, 4 * MiB], True, 20 * MiB),
        ([512], True, 2 * MiB),  # one 2 MiB page for the small pool
        ([512, GiB], True, 22 * MiB),
    ],
)
def test_rounding_slack(sizes: list[int], expandable: bool, slack: int) -> None:
    assert rounding_slack(sizes, expandable) == slack


def test_rounding_slack_defaults_to_the_default_allocator() -> None:
    assert rounding_slack([11 * MiB]) == rounding_slack([11 * MiB], False) == 1 * MiB


@given(st.lists(st.integers(min_value=1, max_value=8 * GiB), max_size=20), st.booleans())
def test_rounding_slack_is_bounded(sizes: list[int], expandable: bool) -> None:
    slack = rounding_slack(sizes, expandable)
    assert slack >= 0
    if expandable:
        assert slack <= 22 * MiB
    else:
        assert slack < 2 * MiB + 20 * MiB + 2 * MiB * len(sizes)


def step(
    i: int,
    size: int,
    live: int,
    unused: int = 0,
    new: int | None = None,
    slack: int = 0,
    retained: dict[int, int] | None = None,
    retain: int = 0,
) -> StepFigures:
    return StepFigures(
        i, size, live, unused, live if new is None else new, slack, retained or {}, retain=retain
    )


def test_grow_without_empty_cache_fails_at_each_step_that_leaves_cache() -> None:
    # the figures the default allocator gives for 1 -> 2 -> 4 GiB with `del` only
    steps = [
        step(0, GiB, GiB),
        step(1, 2 * GiB, 2 * GiB, unused=GiB),
        step(2, 4 * GiB, 4 * GiB, unused=3 * GiB),
    ]
    found = resize_violations(steps, "cuda:0")
    assert [(v.kind, v.message.splitlines()[0]) for v in found] == [
        (
            "unused",
            "cgmem: resize_check step 2/3, resize(2147483648) on cuda:0: 1.00 GiB reserved "
            "but unused exceeds slack 0 B (live 2.00 GiB, reserved 3.00 GiB)",
        ),
        (
            "unused",
            "cgmem: resize_check step 3/3, resize(4294967296) on cuda:0: 3.00 GiB reserved "
            "but unused exceeds slack 0 B (live 4.00 GiB, reserved 7.00 GiB)",
        ),
    ]
    assert found[0].message.splitlines()[1:] == [f"  {UNUSED_CAUSE}", f"  {UNUSED_FIX}"]
    assert "torch.cuda.empty_cache() between freeing" in found[0].message


@pytest.mark.parametrize(
    ("pinned", "note"),
    [
        (0, None),
        (GiB, "1.00 GiB"),
        (4 * GiB, "1.00 GiB"),  # never more than the unused bytes
    ],
)
def test_unused_in_a_pinned_segment_is_named(pinned: int, note: str | None) -> None:
    # run 4 on an H200: the old 1 GiB workspace freed into a segment that a 4 MiB block
    # from before the check pins; empty_cache could not release it
    s = dataclasses.replace(step(1, 4 * GiB, 4 * GiB, unused=GiB), pinned=pinned)
    (found,) = resize_violations([step(0, 2 * GiB, 2 * GiB), s])
    lines = found.message.splitlines()
    assert lines[1:3] == [f"  {UNUSED_CAUSE}", f"  {UNUSED_FIX}"]
    if note is None:
        assert len(lines) == 3
    else:
        assert lines[3] == "  " + PINNED_NOTE.format(pinned=note)
        assert "empty_cache() cannot release" in lines[3]


def test_pinned_alone_is_no_violation() -> None:
    s = dataclasses.replace(step(0, GiB, GiB), pinned=GiB)  # unused 0: within slack
    assert resize_violations([s]) == []


def test_grow_with_empty_cache_passes() -> None:
    steps = [step(i, n * GiB, n * GiB) for i, n in enumerate((1, 2, 4))]
    assert resize_violations(steps) == []


@pytest.mark.parametrize(
    ("unused", "slack", "fails"), [(0, 0, False), (12, 20, False), (20, 20, False), (21, 20, True)]
)
def test_unused_is_compared_with_slack(unused: int, slack: int, fails: bool) -> None:
    steps = [step(0, 1, 2 * GiB, unused=unused * MiB, slack=slack * MiB)]
    assert bool(resize_violations(steps)) is fails
    assert steps[0].over is fails
    assert resize_lines(steps)[-1].endswith("OVER" if fails else "ok")


def test_retained_view_names_the_old_buffer_size_and_step() -> None:
    steps = [
        step(0, GiB, GiB),
        step(1, 2 * GiB, 3 * GiB, new=2 * GiB, retained={0: GiB}),
    ]
    (found,) = resize_violations(steps, "cuda:1", label="workspace")
    assert found.kind == "retained"
    assert found.check == "workspace"
    assert found.message.splitlines() == [
        "cgmem: workspace step 2/2, resize(2147483648) on cuda:1: 1.00 GiB allocated by "
        "earlier steps is still allocated (1.00 GiB from step 1, resize(1073741824); "
        "live 3.00 GiB)",
        f"  {RETAINED_CAUSE}",
        f"  {RETAINED_FIX}",
    ]


def test_retained_lists_every_origin_step() -> None:
    steps = [
        step(0, 1, GiB),
        step(1, 2, 3 * GiB, new=2 * GiB, retained={0: GiB}),
        step(2, 4, 7 * GiB, new=4 * GiB, retained={1: 2 * GiB, 0: GiB}),
    ]
    found = resize_violations(steps)
    assert len(found) == 2
    assert "3.00 GiB allocated by earlier steps" in found[1].message
    assert "(1.00 GiB from step 1, resize(1), 2.00 GiB from step 2, resize(2);" in (
        found[1].message
    )


def test_kept_blocks_are_fine_when_the_step_allocated_nothing_new() -> None:
    # the buffer was big enough: the step reused it, so the earlier block is the workspace
    steps = [step(0, 4, GiB), step(1, 2, GiB, new=0, retained={0: GiB})]
    assert resize_violations(steps) == []


@pytest.mark.parametrize(
    ("retain", "fails"), [(0, True), (4 * KiB, True), (8 * KiB, False), (16 * KiB, False)]
)
def test_retain_allows_what_is_kept_on_purpose(retain: int, fails: bool) -> None:
    steps = [
        step(0, 1, GiB),
        step(1, 2, 2 * GiB + 8 * KiB, new=2 * GiB, retained={0: 8 * KiB}, retain=retain),
    ]
    found = resize_violations(steps)
    assert bool(found) is fails
    if found and retain:
        assert "8.00 KiB from step 1, resize(1); live 2.00 GiB, allowed 4.00 KiB)" in (
            found[0].message
        )
    assert resize_lines(steps)[-1].endswith("OVER" if fails else "ok")


def test_without_retain_no_retained_byte_is_allowed() -> None:
    kept = StepFigures(1, 2, 2 * GiB + 512, 0, 2 * GiB, 0, {0: 512})
    assert kept.over
    assert [v.kind for v in resize_violations([step(0, 1, GiB), kept])] == ["retained"]


def test_both_violations_on_one_step() -> None:
    steps = [step(0, 1, GiB), step(1, 2, 3 * GiB, unused=GiB, new=2 * GiB, retained={0: GiB})]
    assert [v.kind for v in resize_violations(steps)] == ["unused", "retained"]


def test_resize_lines_mark_each_step() -> None:
    steps = [step(0, 1, GiB), step(1, 2, 2 * GiB, unused=GiB)]
    lines = resize_lines(steps)
    assert lines[0] == "resize_check: step, size, live, reserved, unused (slack), retained"
    assert lines[1].endswith("ok")
    assert lines[2] == (
        "  2: resize(2) live 2.00 GiB, reserved 3.00 GiB, unused 1.00 GiB (0 B), retained -  OVER"
    )


def test_step_to_dict_is_one_based_and_json_ready() -> None:
    d = step(1, 2, 3 * GiB, new=2 * GiB, retained={0: GiB}).to_dict()
    assert d["step"] == 2
    assert d["retained"] == {"1": GiB}
    assert d["reserved"] == 3 * GiB
    assert d["pinned"] == 0


def test_step_to_dict_holds_every_figure() -> None:
    s = StepFigures(
        1,
        "2k",
        3 * GiB,
        MiB,
        2 * GiB,
        2 * MiB,
        {0: GiB},
        allocated_total=5 * GiB,
        reserved_total=6 * GiB,
        retain=KiB,
        pinned=512,
    )
    assert s.to_dict() == {
        "step": 2,
        "size": "'2k'",
        "live": 3 * GiB,
        "unused": MiB,
        "reserved": 3 * GiB + MiB,
        "new": 2 * GiB,
        "slack": 2 * MiB,
        "retain": KiB,
        "retained": {"1": GiB},
        "allocated_total": 5 * GiB,
        "reserved_total": 6 * GiB,
        "pinned": 512,
    }


def test_step_figures_default_to_no_totals_no_allowance_nothing_pinned() -> None:
    d = StepFigures(0, 1, GiB, 0, GiB, 0).to_dict()
    defaults = ("retained", "allocated_total", "reserved_total", "retain", "pinned")
    assert {k: d[k] for k in defaults} == {
        "retained": {},
        "allocated_total": 0,
        "reserved_total": 0,
        "retain": 0,
        "pinned": 0,
    }


@pytest.mark.parametrize(
    "record",
    [CheckViolation("x", "a", "m"), StepFigures(0, 1, GiB, 0, GiB, 0), SteadyFigures(1, 2, 3)],
)
def test_violations_and_figures_are_frozen(record: object) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, dataclasses.fields(record)[0].name, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), (0, 0), (1024, 1024), ("64 MiB", 64 * MiB)]
)
def test_resolve_slack(value: object, expected: int | None) -> None:
    assert resolve_slack(value) == expected


@pytest.mark.parametrize("value", ["lots", -1, 1.5, True])
def test_resolve_slack_rejects(value: object) -> None:
    with pytest.raises(CgmemUsageError):
        resolve_slack(value)


def figs(allocated_mib: int, reserved_mib: int, segments: int) -> SteadyFigures:
    return SteadyFigures(allocated_mib * MiB, reserved_mib * MiB, segments)


def test_steady_names_each_growing_metric_and_growth_per_call() -> None:
    # a workspace that grows by 64 MiB each call (default allocator figures)
    base = figs(64, 64, 1)
    after = [figs(128, 192, 2), figs(192, 384, 3), figs(256, 640, 4)]
    found = steady_violations(base, after, warmup=1, where="cuda:0")
    assert [v.kind for v in found] == ["reserved", "segments", "allocated"]
    assert [v.message.splitlines()[0] for v in found] == [
        "cgmem: steady: reserved bytes grew by 192.00 MiB per call over 3 calls after 1 "
        "warm-up call(s) on cuda:0 (64.00 MiB -> 640.00 MiB: +128.00 MiB, +192.00 MiB, "
        "+256.00 MiB)",
        "cgmem: steady: segment count grew by 1 per call over 3 calls after 1 warm-up "
        "call(s) on cuda:0 (1 -> 4: +1, +1, +1)",
        "cgmem: steady: allocated bytes grew by 64.00 MiB per call over 3 calls after 1 "
        "warm-up call(s) on cuda:0 (64.00 MiB -> 256.00 MiB: +64.00 MiB, +64.00 MiB, "
        "+64.00 MiB)",
    ]
    assert all(len(v.message.splitlines()) == 2 for v in found)
    assert "likely cause: something allocated in each call stays allocated" in found[2].message


def test_steady_passes_a_stable_call() -> None:
    base = figs(64, 66, 2)
    assert steady_violations(base, [base, base, base], warmup=1) == []


def test_steady_ignores_shrinking_and_judges_the_end() -> None:
    base = figs(64, 128, 2)
    after = [figs(128, 128, 2), figs(64, 128, 2), figs(32, 64, 1)]
    assert steady_violations(base, after, warmup=1) == []


def test_steady_fractional_count_growth() -> None:
    (v,) = steady_violations(figs(1, 1, 1), [figs(1, 1, 1), figs(1, 1, 1), figs(1, 1, 3)], 2)
    assert "segment count grew by 0.666667 per call over 3 calls after 2 warm-up" in v.message
    assert "(1 -> 3: +0, +0, +2)" in v.message


def test_steady_fails_a_single_new_segment() -> None:
    (v,) = steady_violations(figs(64, 64, 1), [figs(64, 64, 1), figs(64, 64, 2)], warmup=1)
    assert v.kind == "segments"
    assert "segment count grew by 0.5 per call over 2 calls" in v.message
    assert "(1 -> 2: +0, +1)" in v.message


def test_steady_signs_a_shrinking_call() -> None:
    (v,) = steady_violations(figs(64, 64, 1), [figs(32, 64, 1), figs(128, 64, 1)], warmup=1)
    assert v.kind == "allocated"
    assert "(64.00 MiB -> 128.00 MiB: -32.00 MiB, +96.00 MiB)" in v.message


def test_steady_with_no_calls_has_nothing_to_judge() -> None:
    assert steady_violations(figs(1, 1, 1), [], warmup=1) == []


def test_steady_lines() -> None:
    lines = steady_lines(figs(64, 64, 1), [figs(128, 192, 2)])
    assert lines == [
        "steady: after warm-up, then after each call: allocated, reserved, segments",
        "  warm-up: 64.00 MiB, 64.00 MiB, 1",
        "  call 1: 128.00 MiB, 192.00 MiB, 2",
    ]


def quoted_errors() -> set[str]:
    """The error lines docs/resize.md shows a user, as the messages hold them."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "resize.md").read_text()
    lines = re.findall(r"^ *E   (.*)$", page, flags=re.MULTILINE)
    return {re.sub(r"^pytest_cgmem\.\w+: ", "", line) for line in lines}


def test_messages_are_those_docs_resize_quotes() -> None:
    grow = [step(0, GiB, GiB), step(1, 2 * GiB, 2 * GiB, GiB), step(2, 4 * GiB, 4 * GiB, 3 * GiB)]
    view = [step(0, GiB, GiB), step(1, 2 * GiB, 3 * GiB, new=2 * GiB, retained={0: GiB})]
    growing = [figs(128, 192, 2), figs(192, 384, 3), figs(256, 640, 4)]
    found = [
        *resize_violations(grow),
        *resize_violations(view),
        *steady_violations(figs(64, 64, 1), growing, warmup=1),
    ]
    assert len(found) == 6
    lines = [line for v in found for line in v.message.splitlines()]
    pinned = dataclasses.replace(step(1, 4 * GiB, 4 * GiB, unused=GiB), pinned=GiB)
    (in_pinned,) = resize_violations([step(0, 2 * GiB, 2 * GiB), pinned])
    lines.append(in_pinned.message.splitlines()[-1])
    assert [line for line in lines if line not in quoted_errors()] == []


@pytest.mark.parametrize("cls", [ResizeCheckFailed, SteadyStateFailed])
def test_failures_are_assertion_errors_carrying_every_message(cls: type[CheckFailed]) -> None:
    violations = [CheckViolation("x", "a", "first\n  why"), CheckViolation("x", "b", "second")]
    error = cls(violations)
    assert isinstance(error, AssertionError)
    assert str(error) == "first\n  why\nsecond"
    assert error.violations == tuple(violations)


def test_report_section_shows_the_check_lines() -> None:
    figures = DeviceFigures(0, peak=GiB, reserved=3 * GiB, leak=0, reserved_ratio=3.0)
    lines = resize_lines([step(0, 1, GiB), step(1, 2, 2 * GiB, unused=GiB)])
    result = RegionResult("resize_check", (figures,), 0.5, extra={"lines": lines})
    text = section([result])
    assert "resize_check on cuda:0" in text
    assert "  resize_check: step, size, live, reserved, unused (slack), retained" in text
    assert text.splitlines()[-1].endswith("OVER")


def test_importing_resize_needs_no_torch() -> None:
    import pytest_cgmem

    root = str(Path(pytest_cgmem.__file__).parent.parent)
    code = "import sys, pytest_cgmem.checks.resize; sys.exit('torch' in sys.modules)"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
