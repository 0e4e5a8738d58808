"""What a measured test costs in CPU under pytest-xdist, the workers and the controller together.

Under xdist each measured test's record travels from its worker to the controller on its
call report (execnet serializes it, the controller reads it back, keeps it and, with a run
file, journals it), and its JUnit properties travel on two reports. None of that shows in a
worker's own per-test times, and the controller's share is spent in another process. So
this benchmark counts CPU seconds: ``pytest -n 2`` over N plain tests and over N marked
tests whose region reads nothing (``bench_pytest_side``'s stand-in), each run's CPU time
being that of every process it started, interleaved, with and without ``--cgmem-json``.
The difference over N is what a measured test adds in CPU. Runs anywhere torch imports
(CPU too): ``python benchmarks/bench_xdist_side.py [--tests N] [--runs R]``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_pytest_side import STUBS, TESTS


def tests(count: int) -> str:
    """``bench_pytest_side``'s tests, ``count`` of each variant (``-k`` picks plain or marked)."""
    text = TESTS.replace("RANGE = range(300)", f"RANGE = range({count})")
    assert text != TESTS, "bench_pytest_side's tests no longer say RANGE = range(300)"
    return text


def cpu_seconds(folder: Path, args: list[str]) -> float:
    """CPU seconds (user and system) of one pytest run and every process it started."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2"]
    done = subprocess.run([*pytest, *args], cwd=folder, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stdout[-2000:] + done.stderr[-2000:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tests", type=int, default=8000, help="tests a variant")
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds")
    options = parser.parse_args()
    over: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conftest.py").write_text("import pytest\n" + STUBS)
        (folder / "test_side.py").write_text(tests(options.tests))
        for _ in range(options.runs):
            for name, extra in (("no run file", []), ("--cgmem-json", ["--cgmem-json=r.json"])):
                plain = cpu_seconds(folder, ["-k", "plain", *extra])
                marked = cpu_seconds(folder, ["-k", "marked", *extra])
                over.setdefault(name, []).append((marked - plain) / options.tests * 1e6)
    print(f"CPU us a marked test adds under -n 2 (workers and controller), {options.tests} tests:")
    for name, values in over.items():
        runs = ", ".join(f"{v:6.1f}" for v in values)
        print(f"{name:<14} {runs}   median {statistics.median(values):6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
