"""An existing suite, plain and under ``--cgmem-all``, compared test by test.

The check a project runs before it turns the plugin on over its suite: does the plugin
change any test's outcome, what does it measure and call over budget, and what does it
cost. The suite is run in fresh pytest processes in its own folder, ``--rounds`` times a
side (alternating which goes first):

- plain, with the plugin off (``-p no:cgmem``),
- with ``--cgmem-all --cgmem-budget=leak=0 --cgmem-json=...``,

each with ``--junitxml``, from which each test's outcome and time are read. It prints each
side's outcome counts, every test whose outcome differs between the sides (with the cgmem
side's message: a leak verdict, or the plugin changing what the test saw), the plugin's
own summary line, the tests its run file calls over budget, and the medians of each side's
wall time and summed test time with their ratios to plain.

``python benchmarks/bench_external.py --rootdir DIR [--rounds 3] [--json PATH] -- ARGS``,
where ``ARGS`` are the suite's own pytest arguments (paths, ``-k``, its options).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIDES = ("plain", "cgmem")


@dataclass(frozen=True)
class Run:
    side: str
    wall: float
    exit_status: int
    outcomes: dict[str, str]
    seconds: dict[str, float]
    messages: dict[str, str]
    summary_line: str
    over_budget: dict[str, list[str]]


def _nodeid(case: ET.Element) -> str:
    classname = case.get("classname", "")
    name = case.get("name", "")
    return f"{classname}::{name}" if classname else name


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _outcome(case: ET.Element) -> tuple[str, str]:
    for tag in ("failure", "error"):
        child = case.find(tag)
        if child is not None:
            return tag, _first_line(child.get("message"))
    skipped = case.find("skipped")
    if skipped is not None:
        kind = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        return kind, ""
    return "passed", ""


def read_junit(path: Path) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
    outcomes: dict[str, str] = {}
    seconds: dict[str, float] = {}
    messages: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        nodeid = _nodeid(case)
        outcome, message = _outcome(case)
        if outcomes.get(nodeid) in ("failure", "error") and outcome == "passed":
            continue
        outcomes[nodeid] = outcome
        seconds[nodeid] = seconds.get(nodeid, 0.0) + float(case.get("time") or 0.0)
        if message:
            messages[nodeid] = message
    return outcomes, seconds, messages


def read_over_budget(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return {
        test["nodeid"]: [str(v.get("message", v)) for v in test["violations"]]
        for test in data.get("tests", [])
        if test.get("violations")
    }


def run(side: str, rootdir: Path, args: list[str], scratch: Path) -> Run:
    junit = scratch / f"{side}.xml"
    runfile = scratch / "cgmem.json"
    plugin = (
        ["-p", "no:cgmem"]
        if side == "plain"
        else ["--cgmem-all", "--cgmem-budget=leak=0", f"--cgmem-json={runfile}"]
    )
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rN"]
    command += [*plugin, f"--junitxml={junit}", *args]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=rootdir, capture_output=True, text=True)
    wall = time.perf_counter() - started
    outcomes, seconds, messages = read_junit(junit)
    summary_line = next(
        (line for line in done.stdout.splitlines() if line.startswith("--cgmem-all:")), ""
    )
    over_budget = read_over_budget(runfile) if side == "cgmem" else {}
    return Run(side, wall, done.returncode, outcomes, seconds, messages, summary_line, over_budget)


def counts(outcomes: dict[str, str]) -> str:
    tally: dict[str, int] = {}
    for outcome in outcomes.values():
        tally[outcome] = tally.get(outcome, 0) + 1
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(tally.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootdir", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("args", nargs="*", help="the suite's own pytest arguments, after --")
    options = parser.parse_args()
    runs: dict[str, list[Run]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(options.rounds):
            for side in SIDES if number % 2 == 0 else SIDES[::-1]:
                done = run(side, options.rootdir, options.args, Path(scratch))
                runs[side].append(done)
                print(f"round {number + 1} {side}: {done.wall:.2f} s", file=sys.stderr, flush=True)
    first = {side: runs[side][0] for side in SIDES}
    plain, cgmem = first["plain"], first["cgmem"]
    print(
        f"{len(plain.outcomes)} tests; exit status plain {plain.exit_status},"
        f" cgmem {cgmem.exit_status}"
    )
    for side in SIDES:
        print(f"  {side:6} {counts(first[side].outcomes)}")
    differing = sorted(
        nodeid
        for nodeid in plain.outcomes.keys() | cgmem.outcomes.keys()
        if plain.outcomes.get(nodeid) != cgmem.outcomes.get(nodeid)
    )
    print(f"outcomes that differ (plain -> cgmem): {len(differing)}")
    for nodeid in differing:
        message = cgmem.messages.get(nodeid, "")
        print(f"  {nodeid}: {plain.outcomes.get(nodeid)} -> {cgmem.outcomes.get(nodeid)}")
        if message:
            print(f"    {message[:200]}")
    print(cgmem.summary_line or "(no --cgmem-all summary line)")
    print(f"over budget in the run file: {len(cgmem.over_budget)}")
    for nodeid, violations in sorted(cgmem.over_budget.items()):
        print(f"  {nodeid}: {'; '.join(violations)[:200]}")
    wall = {side: statistics.median(r.wall for r in runs[side]) for side in SIDES}
    summed = {
        side: statistics.median(sum(r.seconds.values()) for r in runs[side]) for side in SIDES
    }
    print(f"medians of {options.rounds} run(s) a side   wall s  x plain   summed test s  x plain")
    for side in SIDES:
        print(
            f"  {side:6} {wall[side]:28.2f} {wall[side] / wall['plain']:8.3f}"
            f" {summed[side]:15.2f} {summed[side] / summed['plain']:8.3f}"
        )
    if options.json:
        figures = {
            "tests": len(plain.outcomes),
            "counts": {side: counts(first[side].outcomes) for side in SIDES},
            "differing": {
                nodeid: [plain.outcomes.get(nodeid), cgmem.outcomes.get(nodeid)]
                for nodeid in differing
            },
            "summary_line": cgmem.summary_line,
            "over_budget": cgmem.over_budget,
            "walls": {side: [r.wall for r in runs[side]] for side in SIDES},
            "summed": {side: [sum(r.seconds.values()) for r in runs[side]] for side in SIDES},
        }
        Path(options.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
