"""The ``cgmem report`` page piece by piece, as docs/cli.md describes it: the rows, the
cards, the budget-use and per-test figures charts, the history and per-size charts, the
table with budgets and changes, the incomplete-run warning. Literal documents; the charts
are read from matplotlib's figures before they are drawn (``svg`` is swapped for a
recorder), so each bar, tick, line and label can be checked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_cgmem.reports import html
from pytest_cgmem.reports.charts import OK, OVER

MiB = 2**20
BLACK = (0.0, 0.0, 0.0, 1.0)


def device(index: int = 0, **figures: Any) -> dict[str, Any]:
    return {"index": index, **figures}


def region(label: str | None = "call", *devices: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"label": label, "devices": list(devices) or [device(peak=MiB)], **more}


def entry(nodeid: str, *regions: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"nodeid": nodeid, "outcome": "passed", "regions": list(regions) or [region()], **more}


def run(
    *tests: dict[str, Any], created: str = "2026-01-01T08:00:00.000+00:00", **more: Any
) -> dict[str, Any]:
    return {
        "created": created,
        "complete": True,
        "machine": {},
        "commit": None,
        "tests": list(tests),
        **more,
    }


def row(name: str, figures: dict[str, Any], budget: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "outcome": "passed",
        "budget": budget or {},
        "figures": figures,
        "error": None,
    }


@pytest.fixture
def plt() -> Any:
    pytest.importorskip("matplotlib")
    from pytest_cgmem.reports.charts import pyplot

    return pyplot()


@pytest.fixture
def drawn(plt: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The figures the page would render to SVG, in order; the page gets a stand-in."""
    figures: list[Any] = []

    def keep(plt: Any, fig: Any) -> str:
        figures.append(fig)
        return f"<svg>chart {len(figures)}</svg>"

    monkeypatch.setattr(html, "svg", keep)
    yield figures
    for fig in figures:
        plt.close(fig)


def rgba(color: str) -> tuple[float, ...]:
    from matplotlib.colors import to_rgba

    return tuple(to_rgba(color))


def labels(ticks: Any) -> list[str]:
    return [t.get_text() for t in ticks]


def bars(ax: Any) -> list[tuple[float, float, tuple[float, ...]]]:
    """Each horizontal bar: its centre on the y axis, its length, its colour."""
    return [
        (
            round(p.get_y() + p.get_height() / 2, 6),
            round(p.get_width(), 6),
            tuple(p.get_facecolor()),
        )
        for p in ax.patches
    ]


# -- rows ---------------------------------------------------------------------------------


def test_rows_one_per_region_and_device_with_the_budget_only_where_checked() -> None:
    doc = run(
        entry(
            "t.py::test_a",
            region("call", device(0, peak=MiB, reserved=None)),
            region("load", device(0, peak=2 * MiB), device(1, peak=3 * MiB), error="boom"),
            region(None, device(0, leak=0)),
            outcome="failed",
            budget={"peak": 4 * MiB},
            checked=["call"],
        ),
        entry("t.py::test_b", region("call", device(0, peak=MiB)), budget={"peak": MiB}),
        entry("t.py::test_c", budget=None, checked=["call"]),
    )
    assert html._rows(doc) == [
        {"name": "t.py::test_a", "outcome": "failed", "budget": {"peak": 4 * MiB},
         "figures": {"peak": MiB}, "error": None},
        {"name": "t.py::test_a [load] cuda:0", "outcome": "failed", "budget": {},
         "figures": {"peak": 2 * MiB}, "error": "boom"},
        {"name": "t.py::test_a [load] cuda:1", "outcome": "failed", "budget": {},
         "figures": {"peak": 3 * MiB}, "error": "boom"},
        {"name": "t.py::test_a [region]", "outcome": "failed", "budget": {},
         "figures": {"leak": 0}, "error": None},
        # not checked (no "checked" list): its budget is not shown against it
        {"name": "t.py::test_b", "outcome": "passed", "budget": {}, "figures": {"peak": MiB},
         "error": None},
        {"name": "t.py::test_c", "outcome": "passed", "budget": {}, "figures": {"peak": MiB},
         "error": None},
    ]  # fmt: skip


# -- small pieces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "width", "shown"),
    [
        ("a" * 60, 60, "a" * 60),
        ("a" * 59 + "bc", 60, "…" + "a" * 57 + "bc"),
        ("abcdef", 5, "…cdef"),
        ("abcde", 5, "abcde"),
    ],
)
def test_a_long_name_keeps_its_end(name: str, width: int, shown: str) -> None:
    assert html._short(name, width) == shown
    assert len(html._short(name, width)) <= width
    if width == 60:
        assert html._short(name) == shown


@pytest.mark.parametrize(
    ("doc", "i", "label"),
    [
        (
            {"commit": {"sha": "0123456789abcdef", "dirty": True},
             "created": "2026-01-02T03:04:05.678+00:00"},
            0,
            "#1 01234567+\n2026-01-02 03:04",
        ),
        ({"commit": {"sha": "0123456789abcdef", "dirty": False}, "created": "2026-01-02"}, 2,
         "#3 01234567\n2026-01-02"),
        ({"commit": None}, 1, "#2"),
        ({"commit": {"sha": None, "dirty": None}, "created": ""}, 4, "#5"),
    ],
)  # fmt: skip
def test_a_run_is_labelled_by_number_commit_and_time(
    doc: dict[str, Any], i: int, label: str
) -> None:
    assert html._run_label(doc, i) == label


def test_an_incomplete_run_gets_a_warning_a_complete_one_none() -> None:
    assert html._incomplete(run()) == ""
    assert html._incomplete({"tests": []}) == ""  # an older file: complete
    warning = html._incomplete(run(complete=False, incomplete_reason="worker <gw1> crashed"))
    assert warning == (
        "<p class='warn'><b>Incomplete run:</b> figures of some tests may be missing "
        "(worker &lt;gw1&gt; crashed).</p>"
    )


# -- the table ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "value", "limit", "cell"),
    [
        ("peak", None, MiB, '<td class="n">–</td>'),
        ("peak", MiB, None, '<td class="n">1.00 MiB</td>'),
        ("peak", MiB, MiB, '<td class="n">1.00 MiB<div class="b">/ 1.00 MiB</div></td>'),
        ("peak", MiB + 1, MiB, '<td class="n over">1.00 MiB<div class="b">/ 1.00 MiB</div></td>'),
        ("graphs", 3, 2, '<td class="n over">3<div class="b">/ 2</div></td>'),
        # a budget of 0 (leak=0, docs/diagnostics.md) is shown like any other
        ("leak", 0, 0, '<td class="n">0 B<div class="b">/ 0 B</div></td>'),
        ("leak", 512, 0, '<td class="n over">512 B<div class="b">/ 0 B</div></td>'),
        ("device", -MiB, None, '<td class="n">-1.00 MiB</td>'),
    ],
)
def test_a_cell_shows_the_figure_its_budget_and_whether_it_is_over(
    metric: str, value: Any, limit: Any, cell: str
) -> None:
    assert html._cell(metric, value, limit) == cell


@pytest.mark.parametrize(
    ("value", "before", "delta"),
    [
        (3 * MiB, MiB, '<span class="up">+2.00 MiB</span>'),
        (MiB, 3 * MiB, '<span class="down">−2.00 MiB</span>'),
        (MiB, MiB, ""),
        (None, MiB, ""),
        (MiB, None, ""),
        (0, MiB, '<span class="down">−1.00 MiB</span>'),
        (MiB, 0, '<span class="up">+1.00 MiB</span>'),
    ],
)
def test_a_change_is_signed_and_coloured(value: Any, before: Any, delta: str) -> None:
    assert html._delta("peak", value, before) == delta


HEAD = (
    "<table><thead><tr><th>test</th><th>outcome</th><th>peak</th><th>reserved</th>"
    "<th>leak</th><th>device</th><th>non_torch</th><th>graph_pool</th><th>graphs</th>"
    "</tr></thead><tbody>"
)
DASHES = '<td class="n">–</td>'


def test_the_table_has_a_row_per_region_with_the_baseline_metrics() -> None:
    rows = [
        {"name": "t.py::test_<a>", "outcome": "failed", "budget": {"peak": MiB},
         "figures": {"peak": 2 * MiB, "reserved_ratio": 1.5, "replays": 4, "graphs": 1},
         "error": "it <broke>"},
        row("t.py::test_b", {"leak": 0}),
    ]  # fmt: skip
    assert html._table(rows, None) == (
        HEAD + '<tr><td class="t">t.py::test_&lt;a&gt;<div class="b">it &lt;broke&gt;</div></td>'
        '<td class="o failed">failed</td>'
        '<td class="n over">2.00 MiB<div class="b">/ 1.00 MiB</div></td>'
        + DASHES
        * 5
        + '<td class="n">1</td></tr>'
        '<tr><td class="t">t.py::test_b</td><td class="o passed">passed</td>'
        + DASHES * 2
        + '<td class="n">0 B</td>'
        + DASHES * 4
        + "</tr></tbody></table>"
    )


def test_the_table_shows_each_change_against_the_previous_run() -> None:
    rows = [
        row("t.py::a", {"peak": 3 * MiB, "leak": 0, "graphs": 2}),
        row("t.py::new", {"peak": MiB}),
    ]
    previous = {"t.py::a": {"peak": MiB, "leak": MiB, "graphs": 2}, "t.py::gone": {"peak": MiB}}
    table = html._table(rows, previous)
    assert (
        '<td class="o passed">passed</td><td class="n">3.00 MiB<span class="up">+2.00 MiB</span>'
        f'</td>{DASHES}<td class="n">0 B<span class="down">−1.00 MiB</span></td>'
        + DASHES * 3
        + '<td class="n">2</td></tr>'
    ) in table
    # a region the previous run lacks: its figures, no change
    assert (
        '<td class="t">t.py::new</td><td class="o passed">passed</td><td class="n">1.00 MiB</td>'
        in table
    )
    assert html._table(rows, {}) == html._table(rows, None)


# -- the budget-use chart -----------------------------------------------------------------


def test_the_budget_chart_shows_each_figure_as_a_percentage_of_its_budget(
    plt: Any, drawn: list[Any]
) -> None:
    long = "t.py::test_" + "x" * 60
    rows = [
        row(long, {"peak": 3 * MiB, "leak": 0, "reserved": 4 * MiB},
            {"peak": 2 * MiB, "leak": 0, "reserved": 4 * MiB, "device": MiB}),
        row("t.py::b", {"leak": 1}, {"leak": 0}),
        row("t.py::c", {}, {"peak": MiB}),  # budgeted, not measured: no bar
        row("t.py::d", {"peak": MiB}),  # measured, no budget: no bar
    ]  # fmt: skip
    assert html._budget_chart(plt, rows) == "<svg>chart 1</svg>"
    (ax,) = drawn[0].axes
    short = "…" + long[-47:]
    assert labels(ax.get_yticklabels()) == [
        f"{short}  peak",
        f"{short}  leak",
        f"{short}  reserved",
        "t.py::b  leak",
    ]
    # 150%, 0 of a budget of 0, exactly 100% (not over), over a budget of 0: shown as 999%,
    # its bar capped at 200%; red only when over
    assert [(y, width, color) for y, width, color in bars(ax)] == [
        (0, 150, rgba(OVER)), (1, 0, rgba(OK)), (2, 100, rgba(OK)), (3, 200, rgba(OVER))
    ]  # fmt: skip
    assert [(t.get_position(), t.get_text()) for t in ax.texts] == [
        ((151, 0), "3.00 MiB / 2.00 MiB (150%)"),
        ((1, 1), "0 B / 0 B (0%)"),
        ((101, 2), "4.00 MiB / 4.00 MiB (100%)"),
        ((201, 3), "1 B / 0 B (999%)"),
    ]
    assert {t.get_verticalalignment() for t in ax.texts} == {"center"}  # beside its bar
    (line,) = ax.lines  # 100% marked
    assert list(line.get_xdata()) == [100, 100] and rgba(line.get_color()) == BLACK
    assert ax.get_xlim() == pytest.approx((0, 230))  # room for the capped bar's label
    assert ax.yaxis_inverted()  # the first figure on top
    assert ax.get_xlabel() == "% of budget (bar capped at 200%)"
    assert ax.get_title(loc="left") == "Budget use: each figure against its budget"


def test_the_budget_chart_of_figures_within_budget(plt: Any, drawn: list[Any]) -> None:
    html._budget_chart(plt, [row("t.py::a", {"peak": MiB}, {"peak": 2 * MiB})])
    (ax,) = drawn[0].axes
    assert bars(ax) == [(0, 50, rgba(OK))]
    assert ax.get_xlim() == pytest.approx((0, 110))
    html._budget_chart(plt, [row("t.py::a", {"peak": 3 * MiB}, {"peak": 2 * MiB})])
    assert drawn[1].axes[0].get_xlim() == pytest.approx((0, 150 * 1.15))
    html._budget_chart(plt, [row("t.py::a", {"peak": MiB + 1024}, {"peak": MiB})])  # 100.1%
    assert bars(drawn[2].axes[0])[0][2] == rgba(OVER)


def test_the_budget_chart_shows_the_first_40_figures(plt: Any, drawn: list[Any]) -> None:
    rows = [row(f"t.py::test_{i:02}", {"peak": MiB}, {"peak": 2 * MiB}) for i in range(41)]
    html._budget_chart(plt, rows)
    shown = labels(drawn[0].axes[0].get_yticklabels())
    assert shown == [f"t.py::test_{i:02}  peak" for i in range(40)]


def test_no_budget_chart_without_a_budgeted_figure(plt: Any, drawn: list[Any]) -> None:
    rows = [row("t.py::a", {"peak": MiB}), row("t.py::b", {}, {"peak": MiB})]
    assert html._budget_chart(plt, rows) is None
    assert html._budget_chart(plt, []) is None
    assert drawn == []


# -- the figures-per-test chart -----------------------------------------------------------


def test_the_figures_chart_draws_peak_reserved_and_device_with_budget_ticks(
    plt: Any, drawn: list[Any]
) -> None:
    rows = [
        row("t.py::small", {"peak": MiB, "reserved": 2 * MiB, "leak": 5 * MiB}, {"peak": MiB}),
        row("t.py::big", {"peak": 4 * MiB, "reserved": 4 * MiB, "device": 3 * MiB},
            {"reserved": 2 * MiB, "device": 8 * MiB}),
        row("t.py::zero", {"peak": 0}),
        row("t.py::" + "n" * 70, {}, {"peak": MiB}),
    ]  # fmt: skip
    assert html._figures_chart(plt, rows) == "<svg>chart 1</svg>"
    (ax,) = drawn[0].axes
    h = round(0.8 / 3, 6)
    # largest peak first (on top); a region without a peak after one of 0
    assert labels(ax.get_yticklabels()) == [
        "t.py::big", "t.py::small", "t.py::zero", "…" + "n" * 59
    ]  # fmt: skip
    assert ax.yaxis_inverted()
    blue, light, orange = (rgba(c) for c in ("#2f6db5", "#7fa8d9", "#e39b3b"))
    assert bars(ax) == [
        (round(0 - h, 6), 4, blue),
        (round(1 - h, 6), 1, blue),  # peak; small's at budget
        (round(2 - h, 6), 0, blue),
        (0, 4, rgba(OVER)),
        (1, 2, light),  # reserved: big's over its budget
        (round(0 + h, 6), 3, orange),  # device
    ]
    # a budget is a black tick across its bar, drawn where no figure is too
    ticks = [
        (list(line.get_xdata()), [round(y, 6) for y in line.get_ydata()], rgba(line.get_color()))
        for line in ax.lines
    ]
    assert ticks == [
        ([1, 1], [round(1 - 1.5 * h, 6), round(1 - 0.5 * h, 6)], BLACK),
        ([1, 1], [round(3 - 1.5 * h, 6), round(3 - 0.5 * h, 6)], BLACK),
        ([2, 2], [round(-0.5 * h, 6), round(0.5 * h, 6)], BLACK),
        ([8, 8], [round(0.5 * h, 6), round(1.5 * h, 6)], BLACK),
    ]
    # each bar inside its slot, none hidden behind another
    assert all(0 < p.get_height() <= 0.8 / 3 for p in ax.patches)
    legend = ax.get_legend()
    assert labels(legend.get_texts()) == ["peak", "reserved", "device", "over budget", "budget"]
    handles = legend.legend_handles
    assert [tuple(p.get_facecolor()) for p in handles[:4]] == [blue, light, orange, rgba(OVER)]
    assert rgba(handles[4].get_color()) == BLACK
    assert ax.get_xlabel() == "MiB"
    assert ax.get_title(loc="left") == "Figures per test (red: over budget)"


def test_the_bar_charts_give_each_row_its_room(plt: Any, drawn: list[Any]) -> None:
    for n in (1, 40):
        budgeted = [row(f"t.py::test_{i:02}", {"peak": MiB}, {"peak": 2 * MiB}) for i in range(n)]
        html._budget_chart(plt, budgeted)
        html._figures_chart(plt, budgeted)
    one_budget, one_figures, budgets, figures = (fig.get_size_inches()[1] for fig in drawn)
    assert budgets - one_budget >= 39 * 0.3
    assert figures - one_figures >= 39 * 0.5


def test_the_figures_chart_shows_the_40_largest_peaks(plt: Any, drawn: list[Any]) -> None:
    rows = [row(f"t.py::test_{i:02}", {"peak": (i + 1) * MiB}) for i in range(41)]
    html._figures_chart(plt, rows)
    shown = labels(drawn[0].axes[0].get_yticklabels())
    assert shown == [f"t.py::test_{i:02}" for i in range(40, 0, -1)]
    assert html._figures_chart(plt, []) is None and len(drawn) == 1


# -- history ------------------------------------------------------------------------------


def history(plt: Any, *docs: dict[str, Any]) -> list[str]:
    return html._history_charts(plt, [(f"{i}.json", doc) for i, doc in enumerate(docs)])


def spaced(text: str) -> str:
    """A label as SVG shows it: runs of spaces are one space, none at a line's end (a run
    without a commit)."""
    return re.sub(" +", " ", text).replace(" \n", "\n")


def lines(ax: Any) -> list[tuple[str, list[Any], list[Any]]]:
    return [
        (spaced(line.get_label()), list(line.get_xdata()), list(line.get_ydata()))
        for line in ax.lines
    ]


def test_history_draws_each_metric_across_the_runs(plt: Any, drawn: list[Any]) -> None:
    a, b = "t.py::test_a", "t.py::test_" + "b" * 40
    first = run(
        entry(a, region("call", device(peak=MiB, leak=0, device=-MiB, graphs=1, replays=2))),
        entry(b, region("call", device(peak=2 * MiB, leak=0))),
        commit={"sha": "aaaaaaaaaa", "dirty": False},
    )
    second = run(entry(a, region("call", device(peak=3 * MiB, leak=0))), created="2026-01-02")
    third = run(
        entry(a, region("call", device(peak=2 * MiB, leak=0))),
        entry(b, region("call", device(peak=4 * MiB, leak=0))),
        commit={"sha": "cccccccccc", "dirty": True},
        created="2026-01-03T09:30:00",
    )
    charts = history(plt, first, second, third)
    # peak and device; leak is zero throughout, reserved unknown: no chart; graphs and
    # replays are not among the history's metrics (docs/cli.md)
    assert charts == ["<svg>chart 1</svg>", "<svg>chart 2</svg>"]
    peak, growth = (fig.axes[0] for fig in drawn)
    assert peak.get_title(loc="left") == "peak across runs"
    assert growth.get_title(loc="left") == "device across runs"
    # one line per region, the largest in the latest run first; a run without it: no point
    assert lines(peak) == [("…" + b[-39:], [0, 2], [2, 4]), (a, [0, 1, 2], [1, 3, 2])]
    assert lines(growth) == [(a, [0], [-1])]
    assert all(line.get_marker() == "o" for line in peak.lines + growth.lines)  # one run: a dot
    assert [spaced(label) for label in labels(peak.get_xticklabels())] == [
        "#1 aaaaaaaa\n2026-01-01 08:00",
        "#2\n2026-01-02",
        "#3 cccccccc+\n2026-01-03 09:30",
    ]
    assert list(peak.get_xticks()) == [0, 1, 2]
    assert labels(peak.get_legend().get_texts()) == ["…" + b[-39:], a]
    assert peak.get_ylabel() == "MiB"
    assert peak.get_ylim()[0] == 0


def test_history_draws_the_8_largest_regions_of_the_latest_run(plt: Any, drawn: list[Any]) -> None:
    def one(peaks: dict[str, int], created: str) -> dict[str, Any]:
        tests = [entry(n, region("call", device(peak=p * MiB))) for n, p in peaks.items()]
        return run(*tests, created=created)

    latest = [5, 9, 1, 7, 3, 8, 2, 6, 4]
    names = [f"t.py::test_{i}" for i in range(9)]
    old = one({n: 100 if n == names[2] else 1 for n in names}, "2026-01-01")
    new = one(dict(zip(names, latest, strict=True)), "2026-01-02")
    history(plt, old, new)
    (ax,) = drawn[0].axes
    # test_2 was the largest but is now the smallest: left out
    assert [label for label, _, _ in lines(ax)] == [names[i] for i in (1, 5, 3, 7, 0, 8, 4, 6)]


def test_no_history_chart_for_a_metric_no_run_has(plt: Any, drawn: list[Any]) -> None:
    only = run(entry("t.py::a", region("call", device(leak=MiB))))
    assert len(history(plt, only, only)) == 1
    assert [fig.axes[0].get_title(loc="left") for fig in drawn] == ["leak across runs"]


# -- sizes --------------------------------------------------------------------------------


def sized(
    monkeypatch: pytest.MonkeyPatch, series: dict[tuple[str, str], list[dict[Any, Any]]]
) -> None:
    monkeypatch.setattr(html, "size_series", lambda docs: series)


def test_a_size_chart_per_graph_region_one_line_per_run(
    plt: Any, drawn: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = ("t.py::test_s", "capture_sweep")
    sized(
        monkeypatch,
        {
            key: [
                {256: 22 * MiB, 128: 0, 64: 2 * MiB, "x": None},
                {},
                {256: 20 * MiB, 128: 0, 32: MiB},
            ]
        },
    )
    docs = [
        run(commit={"sha": "aaaaaaaaaa", "dirty": False}),
        run(created="2026-01-02"),
        run(created="2026-01-03T10:00:00"),
    ]
    charts = html._size_charts(plt, [(f"{i}.json", d) for i, d in enumerate(docs)])
    # the sizes that vanished or appeared since the previous run with the region
    assert charts == [
        "<div><svg>chart 1</svg><p class='meta'>sizes vanished: 64, x; appeared: 32</p></div>"
    ]
    (ax,) = drawn[0].axes
    assert labels(ax.get_xticklabels()) == ["32", "64", "128", "256", "x"]
    assert all(t.get_rotation() == 90 for t in ax.get_xticklabels())
    assert lines(ax) == [
        ("#1 aaaaaaaa 2026-01-01 08:00", [1, 2, 3], [2, 0, 22]),  # no point of unknown bytes
        ("#3 2026-01-03 10:00", [0, 2, 3], [1, 0, 20]),
    ]
    assert [spaced(label) for label in labels(ax.get_legend().get_texts())] == [
        "#1 aaaaaaaa 2026-01-01 08:00",
        "#3 2026-01-03 10:00",
    ]
    assert all(line.get_marker() == "o" for line in ax.lines)
    assert ax.get_xlabel() == "capture size" and ax.get_ylabel() == "MiB added to the pool"
    assert ax.get_ylim()[0] == 0
    assert ax.get_title(loc="left") == "t.py::test_s [capture_sweep]"


@pytest.mark.parametrize(
    ("per_run", "note"),
    [
        ([{8: MiB, 16: MiB}], ""),  # one run: nothing to compare
        ([{8: MiB}, {8: 2 * MiB}], ""),  # the same sizes
        ([{8: MiB, 16: MiB}, {8: MiB}], "<p class='meta'>sizes vanished: 16</p>"),
        ([{8: MiB}, {"<b>": 0, 8: MiB}], "<p class='meta'>sizes appeared: &lt;b&gt;</p>"),
        ([{8: MiB}, {16: MiB}, {8: MiB}], "<p class='meta'>sizes vanished: 16; appeared: 8</p>"),
    ],
)
def test_the_sizes_that_changed_are_named_under_the_chart(
    plt: Any,
    drawn: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    per_run: list[dict[Any, Any]],
    note: str,
) -> None:
    sized(monkeypatch, {("t.py::t", "decode"): per_run})
    runs = [(f"{i}.json", run()) for i in range(len(per_run))]
    assert html._size_charts(plt, runs) == [f"<div><svg>chart 1</svg>{note}</div>"]


def test_the_first_12_graph_regions_get_a_size_chart(
    plt: Any, drawn: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sized(monkeypatch, {(f"t.py::test_{i:02}", "graphs"): [{8: MiB}] for i in range(13)})
    assert len(html._size_charts(plt, [("a.json", run())])) == 12
    titles = [fig.axes[0].get_title(loc="left") for fig in drawn]
    assert titles == [f"t.py::test_{i:02} [graphs]" for i in range(12)]


def test_a_size_chart_title_keeps_the_end_of_a_long_name(
    plt: Any, drawn: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    nodeid = "t.py::test_" + "s" * 60
    sized(monkeypatch, {(nodeid, "capture_sweep"): [{8: MiB}]})
    html._size_charts(plt, [("a.json", run())])
    assert drawn[0].axes[0].get_title(loc="left") == "…" + f"{nodeid} [capture_sweep]"[-49:]


# -- the page -----------------------------------------------------------------------------


def card(key: str, value: int, cls: str = "") -> str:
    return f"<div class='card {cls}'><div class='v'>{value}</div><div class='k'>{key}</div></div>"


def test_the_page_of_one_run(drawn: list[Any]) -> None:
    doc = run(
        entry("t.py::a", region("call", device(peak=MiB)), region("load", device(peak=MiB))),
        commit={"sha": "abc123", "dirty": False},
        created="2026-01-01T08:00:00",
    )
    page = html.render([("one.json", doc)], title="Nightly <GPU> & co")
    assert page.startswith(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<title>Nightly &lt;GPU&gt; &amp; co</title><style>"
    )
    assert (
        f"<style>{html._CSS}</style></head><body>\n<h1>Nightly &lt;GPU&gt; &amp; co</h1>"
        "<div class='meta'>GPU: none · driver ? · torch ? "
    ) in page
    assert (
        "· CUDA ? · allocator ? · PYTORCH_CUDA_ALLOC_CONF=(unset)<br>commit abc123 · created "
        "2026-01-01T08:00:00 · file one.json</div>\n\n<div class='cards'>"  # no warning
    ) in page
    assert (
        "<div class='cards'>"
        + card("tests measured", 1)
        + card("regions", 2)
        + card("over budget", 0, "good")
        + card("baseline regressions", 0, "good")
        + card("failed", 0, "good")
        + "</div>\n<h2>Budget use</h2><p>No test in this run has a budget.</p>\n"
        "<svg>chart 1</svg>\n<h2>History across 1 run(s)</h2>\n"
        "<p>Give more run files (older runs) to see each metric's history.</p>\n"
        "<h2>All figures</h2>\n<table>"
    ) in page
    assert page.endswith(
        "</tbody></table>\n<p class='meta'>Bytes in binary units (1 MiB = 1,048,576 bytes). "
        "Generated by pytest-cgmem's <code>cgmem report</code>; byte metrics: peak, reserved, "
        "leak, device, non_torch, graph_pool.</p></body></html>"
    )
    assert len(drawn) == 1


def test_the_page_details_the_newest_run_against_the_one_before(drawn: list[Any]) -> None:
    older = run(
        entry("t.py::a", region("call", device(peak=5 * MiB, leak=MiB))),
        entry("t.py::b", region("call", device(peak=MiB))),
        created="2026-01-01T00:00:00",
    )
    middle = run(
        entry("t.py::a", region("call", device(peak=10 * MiB))),
        entry("t.py::b", region("call", device(peak=10 * MiB))),
        created="2026-01-02T00:00:00",
    )
    findings = {"regressions": [{"metric": "peak"}, {"metric": "leak"}]}
    newest = run(
        entry("t.py::a", region("call", device(peak=30 * MiB)), outcome="failed",
                   budget={"peak": 20 * MiB}, checked=["call"], violations=["v1", "v2"],
                   baseline=findings),
        entry("t.py::b", region("call", device(peak=10 * MiB)), violations=None, baseline=None),
        entry("t.py::c", region("call", device(peak=MiB), device(1, peak=MiB)),
                   outcome="failed", baseline={"regressions": None}),
        created="2026-01-03T00:00:00",
        commit={"sha": "abc123", "dirty": True},
        machine={"gpus": ["NVIDIA H100", "NVIDIA H200"], "driver": "550.1", "torch": "2.5",
                 "cuda": "12.4", "allocator_backend": "native",
                 "alloc_conf": "expandable_segments:True"},
        complete=False,
        incomplete_reason="worker gw1 crashed",
    )  # fmt: skip
    # given in any order: ordered by their created time, the newest detailed
    page = html.render([("newest.json", newest), ("older.json", older), ("middle.json", middle)])
    assert (
        (
            "<div class='meta'>GPU: NVIDIA H100, NVIDIA H200 · driver 550.1 · torch 2.5 · CUDA 12.4"
            " · allocator native · PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True<br>"
            "commit abc123 (dirty) · created 2026-01-03T00:00:00 · file newest.json</div>\n"
            "<p class='warn'><b>Incomplete run:</b> figures of some tests may be missing "
            "(worker gw1 crashed).</p>\n<div class='cards'>"
            + card("tests measured", 3)
            + card("regions", 4)
            + card("over budget", 2, "bad")
            + card("baseline regressions", 2, "bad")
            + card("failed", 2, "bad")
            + card("grew >5% since previous run", 1, "bad")  # t.py::a, against the middle run
            + "</div>\n<svg>chart 1</svg>\n<svg>chart 2</svg>\n<h2>History across 3 run(s)</h2>\n"
            "<div class='grid'><svg>chart 3</svg><svg>chart 4</svg></div>\n"
            "<h2>All figures (changes against the previous run below each figure)</h2>\n<table>"
        )
        in page
    )
    assert '<td class="n over">30.00 MiB<div class="b">/ 20.00 MiB</div><span class="up">' in page
    assert "+20.00 MiB</span></td>" in page  # against the middle run (10 MiB)
    titles = [fig.axes[0].get_title(loc="left") for fig in drawn[2:]]
    assert titles == ["peak across runs", "leak across runs"]


def test_the_page_cards_of_two_runs_that_did_not_grow(drawn: list[Any]) -> None:
    older = run(entry("t.py::a", region("call", device(peak=MiB))), created="2026-01-01")
    newer = run(entry("t.py::a", region("call", device(peak=MiB))), created="2026-01-02")
    page = html.render([("a.json", older), ("b.json", newer)])
    assert "<title>GPU memory</title>" in page and "<h1>GPU memory</h1>" in page  # no title
    assert card("grew >5% since previous run", 0, "good") + "</div>" in page
    assert "<h2>History across 2 run(s)</h2>" in page


def test_runs_are_ordered_by_their_created_time_not_its_text(drawn: list[Any]) -> None:
    """+05:00's 01:00 is the day before's 20:00 UTC, which its text sorts after."""
    early = run(entry("t.py::a"), created="2026-01-02T01:00:00.000+05:00")
    late = run(entry("t.py::a"), created="2026-01-01T21:00:00.000+00:00")
    page = html.render([("late.json", late), ("early.json", early)])
    assert "created 2026-01-01T21:00:00.000+00:00 · file late.json</div>" in page


def test_the_page_draws_the_size_charts_under_their_heading(
    drawn: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sized(monkeypatch, {("t.py::a", "capture_sweep"): [{8: MiB}], ("t.py::a", "x"): [{8: 0}]})
    page = html.render([("a.json", run(entry("t.py::a")))])
    assert (
        "<h2>CUDA graph bytes per capture size</h2>\n<div class='grid'><div><svg>chart 2</svg>"
        "</div><div><svg>chart 3</svg></div></div>\n<h2>All figures</h2>"
    ) in page


def test_a_page_of_a_run_without_tests(drawn: list[Any]) -> None:
    page = html.render([("a.json", run())])
    assert "<br>commit unknown · created 2026-01-01T08:00:00.000+00:00 · file a.json</div>" in page
    assert card("tests measured", 0) + card("regions", 0) in page
    assert "<h2>History across 1 run(s)</h2>" in page and drawn == []


def test_every_chart_has_room_and_text_large_enough_to_read(
    drawn: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from matplotlib.text import Text

    sized(monkeypatch, {("t.py::a", "capture_sweep"): [{8: MiB, 16: 2 * MiB}, {8: MiB}]})
    budgeted = entry("t.py::a", budget={"peak": 2 * MiB}, checked=["call"])
    html.render([("a.json", run(budgeted)), ("b.json", run(budgeted, created="2026-01-02"))])
    # budget use, figures per test, the peak's history, the sizes
    assert len(drawn) == 4
    for fig in drawn:
        width, height = fig.get_size_inches()
        assert width >= 4 and height >= 1.5
        texts = [t for t in fig.findobj(Text) if t.get_text()]
        assert texts and all(t.get_fontsize() >= 6 for t in texts)
