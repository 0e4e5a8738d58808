"""One measured test's diagnostics: history on and off, the snapshot on failure, the text.

Imported lazily by the plugin. Passing tests pay
nothing here unless ``--cgmem-history`` is on; the snapshot is taken only on failure (or
when a region's leak check is about to run with history on), and the modules that make
the text are imported then (a process whose tests pass never imports them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..results.records import RegionResult
from . import allocator
from .region import Region, warm_up


def no_snapshot_note(backend: str, history: bool) -> str:
    """The one line a failing test gets where the allocator cannot be snapshotted."""
    recorded = " and records no allocation history (--cgmem-history)" if history else ""
    return (
        f"diagnostics: no allocator snapshot: backend:{backend} keeps no per-block "
        f"records{recorded}; the figures above come from its memory pool's counters"
    )


@dataclass(frozen=True)
class DiagnosticsConfig:
    history: bool = False
    history_entries: int = 100_000
    stacks: int = 4
    artifacts: Path | None = None
    hidden_dirs: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()


@dataclass
class Recorder:
    """Switches history on for one test and always off again (``close``)."""

    config: DiagnosticsConfig
    nodeid: str
    recording: bool = False
    foreign_history: bool = False
    before_leak_check: dict[str, Any] | None = None

    def start(self, region: Region | None = None) -> None:
        if not self.config.history or not allocator.snapshots_available():
            return  # cudaMallocAsync records no history: diagnose() says so
        if allocator.history_enabled():
            self.foreign_history = True  # someone else records: leave it as it is
            return
        warm_up(allocator.current_device())  # keeps warm-up allocations out of the trace
        allocator.start_history(self.config.history_entries)
        self.recording = True
        if region is not None:
            region.before_leak_check.append(self._before_leak_check)

    def _before_leak_check(self, index: int) -> None:
        if self.recording and self.before_leak_check is None:
            self.before_leak_check = allocator.snapshot()

    def close(self) -> None:
        """Stop recording (idempotent); called in a finally on every path."""
        if self.recording:
            self.recording = False
            allocator.stop_history()

    def diagnose(self, regions: Sequence[RegionResult], failure: str = "") -> str:
        """The diagnostic lines for a failing test (takes the allocator snapshot); one
        note instead where the allocator keeps no blocks to snapshot (cudaMallocAsync)."""
        if not allocator.snapshots_available():
            return no_snapshot_note(allocator.backend(), self.config.history)
        from ..reports import diagnostics as diagnose
        from ..reports.artifacts import write_artifacts

        snapshot = allocator.snapshot()
        history = self.recording
        hidden = diagnose.make_hider((*self.config.hidden_dirs, allocator.torch_dir()))
        leaks, starts = diagnose.leaks_and_starts(regions)
        devices = sorted(leaks) or sorted(
            {int(s.get("device", 0)) for s in snapshot.get("segments", ())}
        )
        diagnoses = [
            diagnose.diagnose_device(
                snapshot,
                index,
                before_leak_check=self.before_leak_check,
                history=history,
                stacks=self.config.stacks,
                hidden=hidden,
                max_entries=self.config.history_entries,
            )
            for index in devices
        ]
        lines: list[str] = []
        for diagnosis in diagnoses:
            lines += diagnose.render(
                diagnosis,
                leak=leaks.get(diagnosis.device, 0),
                allocated_start=starts.get(diagnosis.device, 0),
                roots=self.config.roots,
            )
        if self.foreign_history:
            lines.append(
                "note: allocation history was already being recorded by someone else; "
                "cgmem left it alone and shows no allocation sites"
            )
        if self.config.artifacts is not None:
            try:
                paths = write_artifacts(
                    self.config.artifacts,
                    self.nodeid,
                    snapshot,
                    diagnoses,
                    self.config.roots,
                    failure,
                    allocator.torch_segment_summary(snapshot),
                    hidden,
                )
                lines += paths.lines()
            except OSError as exc:
                lines.append(f"artifacts: could not be written: {exc}")
        return "\n".join(lines)
