"""Failure sections, terminal summary and header lines (pure text from result records)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ..checks.budgets import Budget
from ..metrics import METRICS, names, region_keys, region_name
from ..results.graphfigures import has_figures
from ..results.jsonio import in_columns, valid_text, visible
from ..results.records import RECORDED_SOURCE, DeviceFigures, RegionResult, TestRecord

RAISED_NOTE = (
    "  note: no leak figure: the region ended by an exception, whose traceback holds the "
    "tensors of the code that raised (PyTorch's leak check skips a test that raised too)"
)


def section(
    regions: Sequence[RegionResult],
    budget: Budget | None = None,
    checked: Collection[str | None] | None = None,
) -> str:
    """Every metric of every region and device; where a region was held to ``budget``
    (``checked``: the labels that were; default: every region), its limit and verdict."""
    lines: list[str] = []
    for name, result in zip(region_keys(r.label for r in regions), regions, strict=True):
        limits = budget.limits if budget and (checked is None or result.label in checked) else {}
        for figures in result.devices:
            lines.append(f"{name} on {figures.where} ({result.seconds * 1000:.1f} ms):")
            for metric, value in figures.metrics().items():
                spec = METRICS[metric]
                row = f"  {metric:<15}{spec.format(value):>12}"
                if metric in limits:
                    limit = limits[metric]
                    verdict = "OVER" if value is not None and value > limit else "ok"
                    if value is None:
                        unavailable = metric in (result.extra.get("unavailable") or {})
                        verdict = "unavailable" if unavailable else "n/a"
                    row += f"   budget {spec.format(limit):>10}  {verdict}"
                lines.append(row)
            if not _no_context(result, figures):
                lines.append(
                    f"  allocated {METRICS['peak'].format(figures.allocated_start)} -> "
                    f"{METRICS['peak'].format(figures.allocated_end)}, reserved "
                    f"{METRICS['peak'].format(figures.reserved_start)} -> "
                    f"{METRICS['peak'].format(figures.reserved_end)}; device figure from "
                    f"{figures.device_source}"
                )
            if figures.disturbed:
                lines.append(
                    "  note: another process's device memory changed during the region; "
                    "'device' and 'non_torch' may be disturbed"
                )
            if figures.ooms:
                lines.append(
                    f"  note: CUDA out of memory ({figures.ooms}x) inside the region; "
                    "figures are those measured up to the failure"
                )
            if figures.gc_freed:
                lines.append(
                    f"  note: the leak check's garbage collection freed "
                    f"{METRICS['peak'].format(figures.gc_freed)}; garbage left from before "
                    "the region counts in its start figure and can offset a leak"
                )
            if figures.leak and not figures.leak_confirmed and not result.recorded:
                lines.append(
                    "  note: the leak persists in torch's allocator after gc and cuBLAS "
                    "workspace clearing, but the driver figure did not grow"
                )
            if figures.leak is None and result.error and not has_figures(result.extra):
                lines.append(RAISED_NOTE)
        by_reason: dict[str, list[str]] = {}
        for metric, reason in (result.extra.get("unavailable") or {}).items():
            by_reason.setdefault(reason, []).append(metric)
        for reason, metrics in by_reason.items():
            lines.append(f"  note: {', '.join(metrics)} unavailable: {reason}")
        if not result.devices:
            lines.append(f"{name}: no figures ({result.extra.get('unmeasured') or 'no device'})")
        lines.extend(f"  {line}" for line in result.extra.get("lines", ()))
        if result.error:
            lines.append(f"  region ended by {visible(result.error)}")
    return "\n".join(lines)


def _no_context(result: RegionResult, figures: DeviceFigures) -> bool:
    """Whether nobody measured the allocator's bytes at the region's start and end: figures
    given to ``cgmem_record`` as keywords, or a RegionResult built by hand (all four 0)."""
    if figures.device_source == RECORDED_SOURCE:
        return True
    context = (
        figures.allocated_start,
        figures.allocated_end,
        figures.reserved_start,
        figures.reserved_end,
    )
    return result.recorded and not any(context)


def _summary_metrics(records: Sequence[TestRecord]) -> tuple[str, ...]:
    """The summary's columns; the graph ones only when some region captured or replayed."""
    graph_columns = names(summary=True, graph=True)
    graphs = any(r.metric(m) for rec in records for r in rec.regions for m in graph_columns)
    return names(summary=True, graph=False) + (graph_columns if graphs else ())


def summary(records: Sequence[TestRecord], limit: int) -> list[str]:
    """The tests with figures (measured, recorded, or an opted-out test's kept), the
    largest peak first, as table lines: "with figures", as the suite summary does not count
    an opted-out test as measured."""
    if limit <= 0 or not records:
        return []
    ranked = sorted(records, key=lambda r: r.peak, reverse=True)[:limit]
    columns = _summary_metrics(ranked)
    header = f"{'test':<60}" + "".join(f"{m:>12}" for m in columns)
    lines = [
        f"{len(records)} test(s) with figures, largest peak first"
        + (f" (top {limit})" if len(records) > limit else ""),
        header,
    ]
    for record in ranked:
        keys = region_keys(r.label for r in record.regions)
        for key, result in zip(keys, record.regions, strict=True):
            name = in_columns(visible(valid_text(region_name(record.nodeid, key))), 60, most=59)
            cells = "".join(f"{METRICS[m].format(result.metric(m)):>12}" for m in columns)
            lines.append(f"{name}{cells}")
    return lines


OPTED_OUT_SHOWN = 3
"""The opted-out tests of one reason listed one a line; more (a module's or a class's
mark) take one line that names the first ones and counts the rest."""


def suite_summary(
    records: Sequence[TestRecord], opted_out: Mapping[str, str], never_used: Iterable[str]
) -> list[str]:
    """--cgmem-all: how many tests were measured, over budget, opted out (with reasons),
    and never used CUDA (``never_used``: their node ids).

    An opted-out test that recorded figures itself (``cgmem_record``, ``cgmem.distributed``)
    counts as opted out, not measured: its figures are kept, and not judged. A test whose
    call never used CUDA but that recorded figures (in a fixture's teardown) is measured."""
    measured = [r for r in records if r.nodeid not in opted_out]
    over = sum(1 for r in measured if r.violations)
    recorded = {r.nodeid for r in records}
    never_on_gpu = len(set(never_used) - recorded)
    lines = [
        f"--cgmem-all: {len(measured)} test(s) measured, {over} over budget, "
        f"{len(opted_out)} opted out, {never_on_gpu} never used CUDA (not measured)"
    ]
    by_reason: dict[str, list[str]] = {}
    for nodeid, reason in sorted(opted_out.items()):
        by_reason.setdefault(reason, []).append(nodeid)
    for reason, nodeids in by_reason.items():
        if len(nodeids) <= OPTED_OUT_SHOWN:
            for nodeid in nodeids:
                kept = (
                    " (the figures it recorded are kept, not judged)" if nodeid in recorded else ""
                )
                lines.append(f"  opted out {nodeid}: {reason}{kept}")
            continue
        shown = ", ".join(nodeids[: OPTED_OUT_SHOWN - 1])
        more = len(nodeids) - OPTED_OUT_SHOWN + 1
        keeping = sum(1 for nodeid in nodeids if nodeid in recorded)
        kept = f" (the figures {keeping} of them recorded are kept, not judged)" if keeping else ""
        lines.append(f"  opted out {len(nodeids)} tests ({shown} and {more} more): {reason}{kept}")
    return lines


def alloc_conf_text(info: Mapping[str, Any]) -> str:
    """``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``: the allocator settings torch
    uses and the variable it took them from."""
    value = info.get("alloc_conf") or ""
    source = info.get("alloc_conf_source")
    if source is None:  # an older run file: the CUDA variable was all it recorded
        source = "PYTORCH_CUDA_ALLOC_CONF" if value else ""
    if not source:
        return "PYTORCH_CUDA_ALLOC_CONF=(unset)"
    if source.startswith("PYTORCH_"):
        return f"{source}={value or '(empty)'}"
    return f"allocator settings {value or '(empty)'} ({source})"


def header(info: Mapping[str, Any]) -> list[str]:
    gpus = ", ".join(info.get("gpus") or []) or "none visible"
    lines = [
        f"cgmem: GPUs: {gpus}; driver {info.get('driver') or 'unknown'}",
        f"cgmem: torch {info.get('torch') or 'none'}, CUDA {info.get('cuda') or 'none'}, "
        f"allocator {info.get('allocator_backend')}, {alloc_conf_text(info)}",
    ]
    if info.get("graph_tracking"):
        lines.append(
            f"cgmem: CUDA graphs seen through {info['graph_tracking']}; graph pool bytes "
            f"from {info.get('graph_pools') or 'unknown'}"
        )
    return lines


def baseline_summary(
    path: str, records: Sequence[TestRecord], baseline_nodeids: set[str]
) -> list[str]:
    """What the baseline check found over the run: counts, then each regression,
    improvement and new test."""
    checked = [(r.nodeid, r.baseline) for r in records if r.baseline is not None]
    regressions = [(n, c) for n, b in checked for c in b["regressions"]]
    improvements = [(n, c) for n, b in checked for c in b["improvements"]]
    new = [name for _, b in checked for name in b["new"]]
    compared = sum(b["compared"] for _, b in checked)
    not_run = baseline_nodeids - {valid_text(r.nodeid) for r in records}  # as files hold it
    lines = [
        f"cgmem baseline {path}: {compared} figure(s) of {len(checked)} test(s) compared: "
        f"{len(regressions)} regression(s), {len(improvements)} improvement(s), "
        f"{len(new)} new"
        + (f"; {len(not_run)} baseline test(s) not measured in this run" if not_run else "")
    ]
    for word, found in (("REGRESSION", regressions), ("improvement", improvements)):
        for nodeid, change in found:
            text = change["message"].removeprefix("cgmem: ")
            lines.append(f"  {word} {nodeid}: {text}")
    lines.extend(f"  new {name}" for name in new)
    for nodeid, findings in checked:
        for size in findings.get("sizes") or ():
            text = size["message"].removeprefix("cgmem: ")
            lines.append(f"  size {size['change']} {nodeid}: {text}")
    return lines
