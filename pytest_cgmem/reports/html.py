"""``cgmem report``: one self-contained HTML page from run files.

The page needs no network: charts are inline SVG (``charts``), styles inline, no
scripts. ``render`` raises ``charts.MissingExtra`` when matplotlib is not installed.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from ..metrics import METRICS, names, region_keys, region_name
from ..results.baseline import compare_runs
from ..results.graphfigures import ordered, size_series
from ..results.jsonio import visible
from ..results.runfile import created_order, incomplete, known
from ..settings import DEFAULT_TOLERANCE
from ..units import MiB
from .charts import OK as _OK
from .charts import OVER as _OVER
from .charts import drawn, pyplot, svg
from .text import alloc_conf_text

_MAX_ROWS = 40
_PALETTE = ("#2f6db5", "#7fa8d9", "#e39b3b", "#8e6bbf", "#4aa3a1", "#b5892f")
_MAX_LINES = 8


def _rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per test region and device: its name, outcome, budget and known figures."""
    rows = []
    for test in doc["tests"]:
        regions = test["regions"]
        for key, region in zip(region_keys(r.get("label") for r in regions), regions, strict=True):
            for device in region["devices"]:
                many = len(region["devices"]) > 1
                name = region_name(test["nodeid"], key, device["index"] if many else None)
                checked = region.get("label") in (test.get("checked") or [])
                rows.append(
                    {
                        "name": name,
                        "outcome": test.get("outcome"),
                        "budget": (test.get("budget") or {}) if checked else {},
                        "figures": known(region, device),
                        "error": region.get("error"),
                    }
                )
    return rows


def _short(name: str, width: int = 60) -> str:
    """``name`` as a chart's label: its last ``width`` characters, drawn literally."""
    name = visible(name)
    return drawn(name if len(name) <= width else "…" + name[-(width - 1) :])


def _budget_chart(plt: Any, rows: list[dict[str, Any]]) -> str | None:
    """Each budgeted figure as a percentage of its budget; 100% is the line."""
    bars = []
    for row in rows:
        for metric, limit in row["budget"].items():
            value = row["figures"].get(metric)
            if value is None:
                continue
            percent = value / limit * 100 if limit else (0.0 if value == 0 else 999.0)
            bars.append((f"{_short(row['name'], 48)}  {metric}", percent, value, limit, metric))
    if not bars:
        return None
    bars = bars[:_MAX_ROWS]
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(bars) + 1.2))
    ys = range(len(bars))
    shown = [min(b[1], 200.0) for b in bars]
    colors = [_OVER if b[1] > 100 else _OK for b in bars]
    ax.barh(list(ys), shown, color=colors, height=0.6)
    ax.axvline(100, color="black", linewidth=1.2)
    ax.set_yticks(list(ys), [b[0] for b in bars])
    ax.invert_yaxis()
    ax.set_xlabel("% of budget (bar capped at 200%)")
    ax.set_xlim(0, max(110.0, max(shown) * 1.15))
    for y, (_, percent, value, limit, metric) in zip(ys, bars, strict=True):
        spec = METRICS[metric]
        ax.text(
            min(percent, 200.0) + 1,
            y,
            f"{spec.format(value)} / {spec.format(limit)} ({percent:.0f}%)",
            va="center",
            fontsize=8,
        )
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Budget use: each figure against its budget", loc="left", fontsize=12)
    return svg(plt, fig)


def _figures_chart(plt: Any, rows: list[dict[str, Any]]) -> str | None:
    """Peak, reserved and device growth (MiB) per region; a budget is a black tick."""
    metrics = names(chart=True)
    rows = sorted(rows, key=lambda r: r["figures"].get("peak", 0), reverse=True)[:_MAX_ROWS]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(rows) + 1.4))
    height = 0.8 / len(metrics)
    palette = dict(zip(metrics, _PALETTE, strict=False))
    for k, metric in enumerate(metrics):
        for i, row in enumerate(rows):
            value = row["figures"].get(metric)
            y = i + (k - 1) * height
            if value is not None:
                over = metric in row["budget"] and value > row["budget"][metric]
                ax.barh(
                    y,
                    value / MiB,
                    height=height * 0.9,
                    color=_OVER if over else palette[metric],
                )
            if metric in row["budget"]:
                ax.plot(
                    [row["budget"][metric] / MiB] * 2,
                    [y - height / 2, y + height / 2],
                    color="black",
                    linewidth=2.5,
                )
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(color=palette[m], label=m) for m in metrics]
    handles.append(Patch(color=_OVER, label="over budget"))
    handles.append(Line2D([], [], color="black", linewidth=2.5, label="budget"))
    ax.set_yticks(range(len(rows)), [_short(r["name"]) for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("MiB")
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Figures per test (red: over budget)", loc="left", fontsize=12)
    return svg(plt, fig)


def _run_label(doc: Mapping[str, Any], i: int) -> str:
    commit = doc.get("commit") or {}
    sha = str(commit.get("sha") or "")[:8]
    dirty = "+" if commit.get("dirty") else ""
    created = str(doc.get("created", ""))[:16].replace("T", " ")
    return f"#{i + 1} {sha}{dirty}\n{created}".strip()


def _history_charts(plt: Any, runs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Each metric across the runs, one line per test region (the largest ones)."""
    series = [{r["name"]: r["figures"] for r in _rows(doc)} for _, doc in runs]
    labels = [_run_label(doc, i) for i, (_, doc) in enumerate(runs)]
    charts = []
    for metric in names(export=True):
        present = {n for run in series for n, f in run.items() if f.get(metric) is not None}
        if not present:
            continue

        def size(name: str, metric: str = metric, latest: Mapping[str, Any] = series[-1]) -> float:
            return float(latest.get(name, {}).get(metric) or 0)

        chosen = sorted(present, key=size, reverse=True)[:_MAX_LINES]
        if not any(run.get(n, {}).get(metric) for run in series for n in chosen):
            continue  # all zero (no leaks, no graphs): nothing to read in a chart
        fig, ax = plt.subplots(figsize=(5.4, 3.2))
        for name in chosen:
            ys = [
                (run[name][metric] / MiB if run.get(name, {}).get(metric) is not None else None)
                for run in series
            ]
            xs = [i for i, y in enumerate(ys) if y is not None]
            ax.plot(xs, [ys[i] for i in xs], marker="o", label=_short(name, 40))
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylabel("MiB")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_title(f"{metric} across runs", loc="left", fontsize=11)
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(0, -0.25))
        charts.append(svg(plt, fig))
    return charts


_MAX_SIZE_CHARTS = 12


def _size_charts(plt: Any, runs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Per graph region with capture sizes (a ``capture_sweep``, a labelled
    ``cgmem.graphs()`` log): the bytes each size added to the pool, one line per run; the
    sizes that vanished or appeared since the previous run are named under the chart."""
    docs = [doc for _, doc in runs]
    labels = [_run_label(doc, i).replace("\n", " ") for i, doc in enumerate(docs)]
    charts = []
    for (nodeid, key), per_run in list(size_series(docs).items())[:_MAX_SIZE_CHARTS]:
        sizes = ordered(list({s: None for run in per_run for s in run}))
        fig, ax = plt.subplots(figsize=(5.4, 3.2))
        for label, run in zip(labels, per_run, strict=True):
            if not run:
                continue
            xs = [i for i, s in enumerate(sizes) if run.get(s) is not None]
            ax.plot(xs, [(run[sizes[i]] or 0) / MiB for i in xs], marker="o", label=label)
        ax.set_xticks(range(len(sizes)), [str(s) for s in sizes], fontsize=7, rotation=90)
        ax.set_xlabel("capture size")
        ax.set_ylabel("MiB added to the pool")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_title(_short(region_name(nodeid, key), 50), loc="left", fontsize=10)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(0, -0.3))
        note = ""
        present = [run for run in per_run if run]
        if len(present) > 1:
            before, after = present[-2], present[-1]
            gone = [s for s in ordered(list(before)) if s not in after]
            came = [s for s in ordered(list(after)) if s not in before]
            words = [
                f"{word}: {', '.join(map(str, found))}"
                for word, found in (("vanished", gone), ("appeared", came))
                if found
            ]
            if words:
                note = f"<p class='meta'>sizes {html.escape('; '.join(words))}</p>"
        charts.append(f"<div>{svg(plt, fig)}{note}</div>")
    return charts


def _cell(metric: str, value: Any, limit: Any = None) -> str:
    if value is None:
        return '<td class="n">–</td>'
    spec = METRICS[metric]
    over = limit is not None and value > limit
    budget = (
        f'<div class="b">/ {html.escape(spec.format(limit))}</div>' if limit is not None else ""
    )
    cls = "n over" if over else "n"
    return f'<td class="{cls}">{html.escape(spec.format(value))}{budget}</td>'


def _delta(metric: str, value: Any, before: Any) -> str:
    if value is None or before is None or value == before:
        return ""
    spec = METRICS[metric]
    sign = "+" if value > before else "−"
    cls = "up" if value > before else "down"
    return f'<span class="{cls}">{sign}{html.escape(spec.format(abs(value - before)))}</span>'


def _table(rows: list[dict[str, Any]], previous: Mapping[str, Mapping[str, Any]] | None) -> str:
    head = "".join(f"<th>{m}</th>" for m in names(baseline=True))
    body = []
    for row in rows:
        cells = []
        for metric in names(baseline=True):
            value = row["figures"].get(metric)
            cell = _cell(metric, value, row["budget"].get(metric))
            if previous is not None:
                delta = _delta(metric, value, (previous.get(row["name"]) or {}).get(metric))
                cell = cell.replace("</td>", f"{delta}</td>") if delta else cell
            cells.append(cell)
        outcome = html.escape(str(row["outcome"]))
        error = f'<div class="b">{html.escape(row["error"])}</div>' if row["error"] else ""
        body.append(
            f'<tr><td class="t">{html.escape(visible(row["name"]))}{error}</td>'
            f'<td class="o {outcome}">{outcome}</td>{"".join(cells)}</tr>'
        )
    return (
        f"<table><thead><tr><th>test</th><th>outcome</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2330}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;font-size:13px;margin-bottom:12px}
.cards{display:flex;gap:12px;margin:12px 0}
.card{border:1px solid #d9dee8;border-radius:8px;padding:10px 16px;min-width:120px}
.card .v{font-size:24px;font-weight:600} .card .k{font-size:12px;color:#555}
.card.bad .v{color:#c8372d} .card.good .v{color:#3b8f4f}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{border-bottom:1px solid #e4e7ee;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f9} td.n{text-align:right;white-space:nowrap} td.t{word-break:break-all}
td.over{color:#c8372d;font-weight:600} .b{color:#777;font-size:11px}
.o.failed{color:#c8372d;font-weight:600} .o.passed{color:#3b8f4f}
.up{color:#c8372d;font-size:11px;display:block} .down{color:#3b8f4f;font-size:11px;display:block}
.grid{display:flex;flex-wrap:wrap;gap:8px} .grid svg{max-width:620px;height:auto}
svg{max-width:100%;height:auto}
.warn{border:1px solid #c8372d;border-radius:6px;padding:8px 12px;color:#8a241c;background:#fdf1ef}
"""


def _incomplete(doc: Mapping[str, Any]) -> str:
    """A warning at the top of the page for a run that did not finish; '' otherwise."""
    why = incomplete(doc)
    if why is None:
        return ""
    return (
        "<p class='warn'><b>Incomplete run:</b> figures of some tests may be missing ("
        f"{html.escape(why)}).</p>"
    )


def render(runs: Sequence[tuple[str, Mapping[str, Any]]], title: str = "GPU memory") -> str:
    """The report page for ``runs`` (name, document), oldest first; the last is detailed."""
    plt = pyplot()
    runs = sorted(runs, key=lambda r: created_order(str(r[1].get("created", ""))))
    name, doc = runs[-1]
    rows = _rows(doc)
    previous = None
    if len(runs) > 1:
        previous = {r["name"]: r["figures"] for r in _rows(runs[-2][1])}
    machine = doc.get("machine") or {}
    commit = doc.get("commit") or {}
    violations = sum(len(t.get("violations") or []) for t in doc["tests"])
    regressions = sum(len((t.get("baseline") or {}).get("regressions") or []) for t in doc["tests"])
    failed = sum(t.get("outcome") == "failed" for t in doc["tests"])
    grew = None
    if len(runs) > 1:
        grew = len(compare_runs(runs[-2][1], doc, DEFAULT_TOLERANCE).regressions)
    cards = [
        ("tests measured", len(doc["tests"]), ""),
        ("regions", len(rows), ""),
        ("over budget", violations, "bad" if violations else "good"),
        ("baseline regressions", regressions, "bad" if regressions else "good"),
        ("failed", failed, "bad" if failed else "good"),
    ]
    if grew is not None:
        cards.append(
            (
                f"grew >{DEFAULT_TOLERANCE.rel * 100:g}% since previous run",
                grew,
                "bad" if grew else "good",
            )
        )
    meta = "<br>".join(
        html.escape(line)
        for line in (
            f"GPU: {', '.join(machine.get('gpus') or []) or 'none'} · driver "
            f"{machine.get('driver') or '?'} · torch {machine.get('torch') or '?'} · CUDA "
            f"{machine.get('cuda') or '?'} · allocator {machine.get('allocator_backend') or '?'}"
            f" · {alloc_conf_text(machine)}",
            f"commit {commit.get('sha') or 'unknown'}"
            f"{' (dirty)' if commit.get('dirty') else ''} · created {doc.get('created')}"
            f" · file {name}",
        )
    )
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><div class='meta'>{meta}</div>",
        _incomplete(doc),
        "<div class='cards'>"
        + "".join(
            f"<div class='card {cls}'><div class='v'>{value}</div><div class='k'>{key}</div></div>"
            for key, value, cls in cards
        )
        + "</div>",
    ]
    budget_chart = _budget_chart(plt, rows)
    parts.append(
        budget_chart
        if budget_chart
        else "<h2>Budget use</h2><p>No test in this run has a budget.</p>"
    )
    figures_chart = _figures_chart(plt, rows)
    if figures_chart:
        parts.append(figures_chart)
    parts.append(f"<h2>History across {len(runs)} run(s)</h2>")
    if len(runs) > 1:
        parts.append("<div class='grid'>" + "".join(_history_charts(plt, runs)) + "</div>")
    else:
        parts.append("<p>Give more run files (older runs) to see each metric's history.</p>")
    size_charts = _size_charts(plt, runs)
    if size_charts:
        parts.append("<h2>CUDA graph bytes per capture size</h2>")
        parts.append("<div class='grid'>" + "".join(size_charts) + "</div>")
    compared = " (changes against the previous run below each figure)" if previous else ""
    parts.append(f"<h2>All figures{compared}</h2>")
    parts.append(_table(rows, previous))
    parts.append(
        "<p class='meta'>Bytes in binary units (1 MiB = 1,048,576 bytes). Generated by "
        "pytest-cgmem's <code>cgmem report</code>; "
        f"byte metrics: {', '.join(n for n, m in METRICS.items() if m.kind == 'bytes')}."
        "</p></body></html>"
    )
    return "\n".join(parts)
