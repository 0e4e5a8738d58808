"""An existing suite, plain and under ``--cgmem-all``, compared test by test.

The check a project runs before it turns the plugin on over its suite: does the plugin
change any test's outcome, what does it measure and call over budget, and what does it
cost. The suite is run in fresh pytest processes in its own folder, ``--rounds`` times a
side (alternating which goes first):

- plain, with the plugin off (``-p no:cgmem``),
- with ``--cgmem-all --cgmem-budget=leak=0 --cgmem-json=...``,
- with ``--pytorch``, once more after the first round: PyTorch's own
  ``CudaMemoryLeakCheck`` around each test's call (``pytorch_leak_check.py``, the plugin
  off), for its verdicts.

Each run writes ``--junitxml``, from which each test's outcome and time are read. It prints
each side's outcome counts, every test whose outcome differs between plain and cgmem (with
the cgmem side's message: a leak verdict, or the plugin changing what the test saw), the
plugin's summary line, the tests its run file calls over budget, the tests whose time grew
most, with ``--pytorch`` each test's leak verdict on both sides and where they differ, and
the medians of each side's wall time and summed test time with their ratios to plain, and
where each side's time went (``session_split.py``, a ``-p`` plugin in every run): the
start (conftests and their imports), collection, the tests' phases, pytest's and the
plugins' hooks between them, the session's end, the ``atexit`` handlers, the
interpreter's start and teardown, and the full garbage collections wherever they ran.

With ``--repeat N`` each test runs N times in each process (``repeat_each.py``), and each
test whose outcomes over its N runs differ between the sides is printed with both tallies:
a test whose outcome varies from run to run (a nondeterministic kernel) may fail on one
side by chance, and only the rates can show whether the plugin changes it.

``python benchmarks/bench_external.py --rootdir DIR [--rounds 3] [--pytorch] [--repeat N]
[--json PATH] -- ARGS``, where ``ARGS`` are the suite's own pytest arguments (paths,
``-k``, its options).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LEAKS = {"leak", "warning"}
"""PyTorch's verdicts that report a leak: the driver confirmed it (the test fails), or only
the caching allocator saw it (a warning)."""


@dataclass(frozen=True)
class Run:
    side: str
    wall: float
    exit_status: int
    outcomes: dict[str, str]
    seconds: dict[str, float]
    messages: dict[str, str]
    summary_line: str = ""
    over_budget: dict[str, list[str]] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)
    split: dict[str, float] = field(default_factory=dict)
    """Where the process's time went (``session_split.py``), with ``outside_pytest``: the
    wall less its time in pytest and in the ``atexit`` handlers, the interpreter's start
    and final teardown."""


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
    if not path.exists():
        return outcomes, seconds, messages
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


def cgmem_verdict(test: dict[str, Any]) -> str:
    """``leak`` (over its leak budget), ``raised`` (its call region ended by an exception,
    so it has no leak figure) or ``clean``."""
    if any(v.get("metric") == "leak" for v in test.get("violations") or ()):
        return "leak"
    call = next((r for r in test.get("regions") or () if r.get("label") == "call"), None)
    if call and call.get("error") and any(d.get("leak") is None for d in call["devices"]):
        return "raised"
    return "clean"


def read_runfile(path: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The run file's tests over budget (with their messages), and each test's verdict,
    by pytest node id."""
    if not path.exists():
        return {}, {}
    data: dict[str, Any] = json.loads(path.read_text())
    tests = data.get("tests", [])
    over = {
        t["nodeid"]: [str(v.get("message", v)) for v in t["violations"]]
        for t in tests
        if t.get("violations")
    }
    return over, {t["nodeid"]: cgmem_verdict(t) for t in tests}


def run(side: str, rootdir: Path, args: list[str], scratch: Path, repeat: int = 1) -> Run:
    junit = scratch / f"{side}.xml"
    runfile = scratch / "cgmem.json"
    verdicts = scratch / "pytorch.json"
    split_path = scratch / f"{side}-split.json"
    split_path.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["SESSION_SPLIT_OUT"] = str(split_path)
    repeating = ["-p", "repeat_each"] if repeat > 1 else []
    env["REPEAT_EACH"] = str(repeat)
    if side == "plain":
        plugin = ["-p", "no:cgmem"]
    elif side == "cgmem":
        plugin = ["--cgmem-all", "--cgmem-budget=leak=0", f"--cgmem-json={runfile}"]
    else:
        plugin = ["-p", "no:cgmem", "-p", "pytorch_leak_check"]
        env["PYTORCH_LEAK_CHECK_OUT"] = str(verdicts)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rN"]
    command += ["-p", "session_split", *repeating]
    command += [*plugin, f"--junitxml={junit}", *args]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=rootdir, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    outcomes, seconds, messages = read_junit(junit)
    split = read_split(split_path, wall)
    if not outcomes:
        sys.stderr.write(f"{side}: no test results\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    if side == "cgmem":
        summary_line = next(
            (line for line in done.stdout.splitlines() if line.startswith("--cgmem-all:")), ""
        )
        over_budget, judged = read_runfile(runfile)
        return Run(
            side,
            wall,
            done.returncode,
            outcomes,
            seconds,
            messages,
            summary_line,
            over_budget,
            judged,
            split,
        )
    judged = json.loads(verdicts.read_text()) if side == "pytorch" and verdicts.exists() else {}
    return Run(
        side, wall, done.returncode, outcomes, seconds, messages, verdicts=judged, split=split
    )


def read_split(path: Path, wall: float) -> dict[str, float]:
    """``session_split.py``'s figures of one process and ``outside_pytest``, or none where
    the process wrote none (it ended before pytest's unconfigure, or was killed)."""
    try:
        figures: dict[str, float] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    figures["outside_pytest"] = (
        wall - figures.get("in_pytest", 0.0) - figures.get("exit_handlers", 0.0)
    )
    return figures


SPLIT_ROWS = (
    ("start", "start: conftests, imports, configure"),
    ("collection", "collection"),
    ("phases", "the tests' phases"),
    ("between_phases", "between the phases: hooks, reports"),
    ("end", "the session's end"),
    ("exit_handlers", "atexit handlers"),
    ("outside_pytest", "the interpreter's start and teardown"),
    ("full_collection_seconds", "full garbage collections, anywhere"),
    ("full_collections", "  how many"),
)
"""``split``'s rows as ``main`` prints them: medians a side."""


def split_medians(runs: list[Run]) -> dict[str, float]:
    """The median of each ``split`` figure over the runs that wrote one."""
    written = [r.split for r in runs if r.split]
    return (
        {key: statistics.median(s.get(key, 0.0) for s in written) for key, _ in SPLIT_ROWS}
        if written
        else {}
    )


_REPETITION = re.compile(r"(\[|-)rep\d+\]$")


def repeated_test(nodeid: str) -> str:
    """The test a repetition of ``repeat_each.py`` belongs to: its id without ``rep<n>``."""
    return _REPETITION.sub(lambda found: "]" if found.group(1) == "-" else "", nodeid)


def outcomes_by_test(done: Run) -> dict[str, Counter[str]]:
    """Each test's outcomes over its repetitions."""
    found: dict[str, Counter[str]] = {}
    for nodeid, outcome in done.outcomes.items():
        found.setdefault(repeated_test(nodeid), Counter())[outcome] += 1
    return found


def messages_by_test(done: Run) -> dict[str, str]:
    """Each test's commonest failure message over its repetitions."""
    found: dict[str, Counter[str]] = {}
    for nodeid, message in done.messages.items():
        found.setdefault(repeated_test(nodeid), Counter())[message] += 1
    return {test: said.most_common(1)[0][0] for test, said in found.items()}


def tally(outcomes: Counter[str] | None) -> str:
    return ", ".join(f"{n} {o}" for o, n in sorted((outcomes or Counter()).items())) or "not run"


def counts(values: dict[str, str]) -> str:
    return ", ".join(f"{n} {value}" for value, n in sorted(Counter(values.values()).items()))


def sides_in_order(rounds: int, pytorch: bool) -> list[str]:
    """plain and cgmem ``rounds`` times each, alternating which goes first; PyTorch's check
    once, after the first round."""
    sides: list[str] = []
    for number in range(rounds):
        sides += ["plain", "cgmem"] if number % 2 == 0 else ["cgmem", "plain"]
        if number == 0 and pytorch:
            sides.append("pytorch")
    return sides


def compare_verdicts(cgmem: Run, pytorch: Run) -> dict[str, list[str]]:
    """Each test's pair of leak verdicts, ``cgmem / pytorch``, with the tests of each pair;
    a test neither side judged is left out."""
    pairs: dict[str, list[str]] = {}
    for nodeid in sorted(cgmem.verdicts.keys() | pytorch.verdicts.keys()):
        ours = cgmem.verdicts.get(nodeid, "not measured")
        theirs = pytorch.verdicts.get(nodeid, "not run")
        pairs.setdefault(f"{ours} / {theirs}", []).append(nodeid)
    return pairs


def both_judged(pair: str) -> bool:
    """Whether both sides gave the test a leak verdict (it ran, was measured, did not raise)."""
    ours, theirs = pair.split(" / ")
    return ours in {"leak", "clean"} and theirs in LEAKS | {"clean"}


def agrees(pair: str) -> bool:
    ours, theirs = pair.split(" / ")
    return (ours == "leak") == (theirs in LEAKS)


def most_costly(plain: Run, cgmem: Run, count: int = 10) -> list[tuple[str, float, float]]:
    """The tests whose time grew most from plain to cgmem: (node id, plain s, cgmem s)."""
    both = plain.seconds.keys() & cgmem.seconds.keys()
    grown = sorted(both, key=lambda n: cgmem.seconds[n] - plain.seconds[n], reverse=True)
    return [(n, plain.seconds[n], cgmem.seconds[n]) for n in grown[:count]]


def ratio(value: float, plain: float) -> float:
    return value / plain if plain else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootdir", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pytorch", action="store_true", help="PyTorch's check once too")
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each test this many times in each process (repeat_each.py) and compare "
        "how often each outcome came on each side",
    )
    parser.add_argument("args", nargs="*", help="the suite's own pytest arguments, after --")
    options = parser.parse_args()
    runs: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for side in sides_in_order(options.rounds, options.pytorch):
            done = run(side, options.rootdir, options.args, Path(scratch), options.repeat)
            runs.setdefault(side, []).append(done)
            print(f"{side}: {done.wall:.2f} s", file=sys.stderr, flush=True)
    first = {side: done[0] for side, done in runs.items()}
    plain, cgmem = first["plain"], first["cgmem"]
    statuses = ", ".join(f"{side} {r.exit_status}" for side, r in first.items())
    print(f"{len(plain.outcomes)} tests; exit status {statuses}")
    for side, done in first.items():
        print(f"  {side:8} {counts(done.outcomes)}")
    differing = sorted(
        nodeid
        for nodeid in plain.outcomes.keys() | cgmem.outcomes.keys()
        if plain.outcomes.get(nodeid) != cgmem.outcomes.get(nodeid)
    )
    repeated: dict[str, dict[str, str]] = {}
    if options.repeat > 1:
        by_test = {side: outcomes_by_test(done) for side, done in first.items()}
        said = messages_by_test(cgmem)
        varied = sorted(
            test
            for test in by_test["plain"].keys() | by_test["cgmem"].keys()
            if by_test["plain"].get(test) != by_test["cgmem"].get(test)
        )
        runs_each = f"{options.repeat} runs"
        print(f"tests whose outcomes over {runs_each} differ (plain -> cgmem): {len(varied)}")
        for test in varied:
            repeated[test] = {side: tally(by_test[side].get(test)) for side in by_test}
            print(f"  {test}: {repeated[test]['plain']} -> {repeated[test]['cgmem']}")
            if test in said:
                print(f"    {said[test][:200]}")
    else:
        print(f"outcomes that differ (plain -> cgmem): {len(differing)}")
        for nodeid in differing:
            print(f"  {nodeid}: {plain.outcomes.get(nodeid)} -> {cgmem.outcomes.get(nodeid)}")
            if nodeid in cgmem.messages:
                print(f"    {cgmem.messages[nodeid][:200]}")
    print(cgmem.summary_line or "(no --cgmem-all summary line)")
    print(f"over budget in the run file: {len(cgmem.over_budget)}")
    for nodeid, violations in sorted(cgmem.over_budget.items()):
        print(f"  {nodeid}: {'; '.join(violations)[:200]}")
    costliest = most_costly(plain, cgmem)
    extra = sum(cgmem.seconds.values()) - sum(plain.seconds.values())
    print(f"the tests cgmem costs most (first runs, ms plain -> cgmem; all tests: {extra:+.2f} s):")
    for nodeid, before, after in costliest:
        print(f"  {before * 1e3:9.1f} -> {after * 1e3:9.1f}  {nodeid}")
    pairs: dict[str, list[str]] = {}
    if "pytorch" in first:
        pairs = compare_verdicts(cgmem, first["pytorch"])
        print("leak verdicts (cgmem / pytorch; pytorch's warning is a leak only the caching")
        print("allocator saw, which it does not fail):")
        for pair, nodeids in sorted(pairs.items()):
            print(f"  {len(nodeids):6}  {pair}{'' if agrees(pair) else '   DIFFERENT'}")
        for pair, nodeids in sorted(pairs.items()):
            if not agrees(pair):
                for nodeid in nodeids[:20]:
                    print(f"    {pair}: {nodeid}")
        judged = {pair: nodeids for pair, nodeids in pairs.items() if both_judged(pair)}
        matched = sum(len(nodeids) for pair, nodeids in judged.items() if agrees(pair))
        total = sum(len(nodeids) for nodeids in judged.values())
        print(f"verdicts matched on {matched} of the {total} tests both sides judged")
    wall = {side: statistics.median(r.wall for r in done) for side, done in runs.items()}
    summed = {
        side: statistics.median(sum(r.seconds.values()) for r in done)
        for side, done in runs.items()
    }
    print("medians a side              runs   wall s  x plain   summed test s  x plain")
    for side in runs:
        print(
            f"  {side:8} {len(runs[side]):22} {wall[side]:8.2f}"
            f" {ratio(wall[side], wall['plain']):8.3f}"
            f" {summed[side]:15.2f} {ratio(summed[side], summed['plain']):8.3f}"
        )
    splits = {side: split_medians(done) for side, done in runs.items()}
    if any(splits.values()):
        print("where the time went (medians a side, s)  " + "".join(f"{side:>10}" for side in runs))
        for key, name in SPLIT_ROWS:
            shown = "".join(
                f"{splits[side][key]:10.{1 if key == 'full_collections' else 2}f}"
                if key in splits[side]
                else f"{'-':>10}"
                for side in runs
            )
            print(f"  {name:<38}{shown}")
    if options.json:
        figures = {
            "tests": len(plain.outcomes),
            "counts": {side: counts(done.outcomes) for side, done in first.items()},
            "differing": {
                nodeid: [plain.outcomes.get(nodeid), cgmem.outcomes.get(nodeid)]
                for nodeid in differing
            },
            "repeat": options.repeat,
            "repeated": repeated,
            "summary_line": cgmem.summary_line,
            "over_budget": cgmem.over_budget,
            "verdicts": {pair: nodeids for pair, nodeids in pairs.items()},
            "walls": {side: [r.wall for r in done] for side, done in runs.items()},
            "summed": {
                side: [sum(r.seconds.values()) for r in done] for side, done in runs.items()
            },
            "split": {side: [r.split for r in done] for side, done in runs.items()},
        }
        Path(options.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
