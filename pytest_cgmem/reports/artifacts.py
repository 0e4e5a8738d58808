"""Failure artifacts: the allocator snapshot pickle, a self-contained HTML page, a text
summary (pure: works on the snapshot's plain data)."""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..results.jsonio import valid_text, write_bytes, write_text
from ..units import format_size
from . import charts
from .diagnostics import (
    DeviceDiagnosis,
    Hider,
    Site,
    format_frame,
    make_hider,
    pool_lines,
    pool_of,
    site_lines,
    site_of,
    trace_of,
)

Snapshot = Mapping[str, Any]


def artifact_stem(nodeid: str) -> str:
    """A file name for a test: readable, filesystem-safe, unique through a short hash."""
    digest = hashlib.sha1(valid_text(nodeid).encode()).hexdigest()[:8]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid)[-80:].strip("._")
    return f"{safe}-{digest}"


def segment_summary(
    snapshot: Snapshot,
    diagnoses: Sequence[DeviceDiagnosis],
    roots: Sequence[str] = (),
    hidden: Hider | None = None,
) -> str:
    """The text artifact: pools, every segment with its blocks, and the sites. A block is
    charged to its first frame that ``hidden`` (the failure section's, by default
    ``make_hider()``) does not hide."""
    hidden = hidden or make_hider()
    lines: list[str] = []
    for diagnosis in diagnoses:
        lines.append(f"cuda:{diagnosis.device} segments by pool")
        lines += pool_lines(diagnosis.pools)
        lines.append("")
        segments = [
            s for s in snapshot.get("segments", ()) if int(s.get("device", 0)) == diagnosis.device
        ]
        for segment in sorted(segments, key=lambda s: (pool_of(s), int(s.get("address", 0)))):
            total = format_size(int(segment.get("total_size", 0)))
            used = format_size(int(segment.get("allocated_size", 0)))
            lines.append(
                f"segment {int(segment.get('address', 0)):#x} pool {pool_of(segment)} "
                f"{segment.get('segment_type', '?')} total {total} allocated {used}"
                f" stream {segment.get('stream', 0)}"
            )
            for block in segment.get("blocks", ()):
                frames = block.get("frames") or ()
                where = ""
                if frames and block.get("state") == "active_allocated":
                    where = "  " + format_frame(site_of(frames, 1, hidden)[0], roots)
                size = format_size(int(block.get("size", 0)))
                lines.append(f"    {block.get('state', '?'):<22} {size:>12}{where}")
        if diagnosis.peak_sites:
            lines.append("")
            lines.append("allocation sites live at the peak")
            lines += site_lines(diagnosis.peak_sites, roots, limit=50)
        if diagnosis.leak_sites:
            lines.append("")
            lines.append("allocations made in the region and still live at its end")
            lines += site_lines(diagnosis.leak_sites, roots, limit=50)
        lines.append("")
    return "\n".join(lines)


_MAX_ROWS = 5000


def _site_table(title: str, sites: Sequence[Site], roots: Sequence[str]) -> str:
    if not sites:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(format_size(s.bytes))}</td><td>{s.count}</td><td>"
        + "<br>".join(html.escape(format_frame(f, roots)) for f in s.frames)
        + "</td></tr>"
        for s in sites
    )
    return (
        f"<h3>{html.escape(title)}</h3><table><tr><th>bytes</th><th>blocks</th>"
        f"<th>site (innermost first)</th></tr>{rows}</table>"
    )


def trace_html(
    nodeid: str,
    snapshot: Snapshot,
    diagnoses: Sequence[DeviceDiagnosis],
    roots: Sequence[str] = (),
    failure: str = "",
    hidden: Hider | None = None,
) -> str:
    """A self-contained page (no script, nothing fetched): a timeline, tables, the trace
    (each event at its first frame that ``hidden`` does not hide)."""
    hidden = hidden or make_hider()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>cgmem: {html.escape(nodeid)}</title><style>",
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;"
        "vertical-align:top}pre{background:#f6f6f6;padding:6px}</style></head><body>",
        f"<h1>{html.escape(nodeid)}</h1>",
    ]
    if failure:
        parts.append(f"<pre>{html.escape(failure)}</pre>")
    for diagnosis in diagnoses:
        parts.append(f"<h2>cuda:{diagnosis.device}</h2>")
        parts.append("<pre>" + html.escape("\n".join(pool_lines(diagnosis.pools))) + "</pre>")
        if diagnosis.replay is not None:
            parts.append("<h3>allocated bytes above the region's start, per event</h3>")
            parts.append(charts.timeline(diagnosis.replay))
        parts.append(_site_table("allocation sites live at the peak", diagnosis.peak_sites, roots))
        parts.append(
            _site_table("allocated in the region, live at its end", diagnosis.leak_sites, roots)
        )
        trace = trace_of(snapshot, diagnosis.device)
        if trace:
            rows = []
            for i, event in enumerate(trace[:_MAX_ROWS]):
                frames = event.get("frames") or ()
                where = ""
                if frames:
                    shown = site_of(frames, 1, hidden)
                    where = format_frame(shown[0], roots) if shown else ""
                rows.append(
                    f"<tr><td>{i + 1}</td><td>{html.escape(str(event.get('action')))}</td>"
                    f"<td>{int(event.get('addr', 0)):#x}</td>"
                    f"<td>{html.escape(format_size(int(event.get('size', 0))))}</td>"
                    f"<td>{html.escape(where)}</td></tr>"
                )
            more = len(trace) - _MAX_ROWS
            parts.append(
                f"<h3>trace ({len(trace)} events)</h3><table><tr><th>#</th><th>action</th>"
                "<th>address</th><th>size</th><th>site</th></tr>" + "".join(rows) + "</table>"
            )
            if more > 0:
                parts.append(f"<p>{more} more events in the snapshot pickle.</p>")
            data = [
                [str(e.get("action")), int(e.get("addr", 0)), int(e.get("size", 0))] for e in trace
            ]
            parts.append(
                f'<script type="application/json" id="cgmem-trace-{diagnosis.device}">'
                + json.dumps(data).replace("</", "<\\/")
                + "</script>"
            )
    parts.append("</body></html>")
    return "".join(parts)


@dataclass(frozen=True)
class Artifacts:
    pickle: Path
    html: Path
    text: Path

    def lines(self) -> list[str]:
        return [
            f"artifacts: {self.pickle} (drop on https://pytorch.org/memory_viz)",
            f"           {self.html}",
            f"           {self.text}",
        ]


def artifact_paths(directory: Path, nodeid: str) -> Artifacts:
    stem = artifact_stem(nodeid)
    return Artifacts(
        directory / f"{stem}.pickle", directory / f"{stem}.html", directory / f"{stem}.txt"
    )


def remove_artifacts(directory: Path, nodeid: str) -> None:
    """Remove a test's artifacts from an earlier run: a test that now passes must not leave
    a failure's files looking current."""
    found = artifact_paths(directory, nodeid)
    for path in (found.pickle, found.html, found.text):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_artifacts(
    directory: Path,
    nodeid: str,
    snapshot: Snapshot,
    diagnoses: Sequence[DeviceDiagnosis],
    roots: Sequence[str] = (),
    failure: str = "",
    appendix: str | None = None,
    hidden: Hider | None = None,
) -> Artifacts:
    """The snapshot pickle (PyTorch's memory viewer format), the HTML page and the text;
    ``hidden`` is the failure section's frame filter, so that all three name one line."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = artifact_paths(directory, nodeid)
    write_bytes(paths.pickle, pickle.dumps(dict(snapshot)))
    write_text(
        paths.html, trace_html(valid_text(nodeid), snapshot, diagnoses, roots, failure, hidden)
    )
    text = segment_summary(snapshot, diagnoses, roots, hidden) + "\n"
    if appendix:
        text += "\ntorch.cuda._memory_viz.segsum:\n" + appendix
    write_text(paths.text, text)
    return paths
