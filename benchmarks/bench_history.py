"""What failure diagnostics cost per test: history off vs on, passing vs failing.

Writes a suite of tiny GPU tests (a few allocations each) and busy ones (200 allocations
each) to a temporary folder and runs it in fresh pytest processes, one per variant, the
variants alternated over rounds so that drift hits all alike:

- plain:          tests not marked (no cgmem at all)
- marked:         ``@pytest.mark.cgmem(peak=..., leak=0)``, every test passes
- history:        as marked, with ``--cgmem-history``
- fail:           budget ``peak=1``: every test fails and gets its diagnosis (snapshot)
- fail+history:   as fail, with ``--cgmem-history`` (sites at the peak)
- fail+artifacts: as fail+history, with ``--cgmem-artifacts`` (pickle, HTML, text)

Per test it times the whole protocol (setup, call, teardown, report) and prints the median
and mean milliseconds by variant and kind. Run on a GPU machine from the repository root:

    python benchmarks/bench_history.py [--tests 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CONFTEST = """
import json, os
from protocol_timer import timed_protocol

_times = {}

def _record(item, seconds):
    _times.setdefault(item.originalname.removeprefix("test_"), []).append(seconds)

pytest_runtest_protocol = timed_protocol(_record)

def pytest_sessionfinish(session):
    with open(os.environ["CGMEM_BENCH_OUT"], "w") as f:
        json.dump(_times, f)
"""

SUITE = """
import os
import pytest
import torch

COUNT = int(os.environ["CGMEM_BENCH_TESTS"])
if os.environ["CGMEM_BENCH_MARK"] == "1":
    pytestmark = pytest.mark.cgmem(peak=os.environ["CGMEM_BENCH_PEAK"], leak=0)

@pytest.mark.parametrize("i", range(COUNT))
def test_tiny(i):
    x = torch.ones(256, 256, device="cuda")
    y = (x @ x).relu_()
    del x, y

@pytest.mark.parametrize("i", range(COUNT))
def test_busy(i):
    for _ in range(100):
        a = torch.empty(4096, device="cuda")
        b = a + 1
        del a, b
"""

VARIANTS: dict[str, tuple[str, str, list[str]]] = {
    # name: (mark, peak budget, options)
    "plain": ("0", "1 GiB", []),
    "marked": ("1", "1 GiB", []),
    "history": ("1", "1 GiB", ["--cgmem-history"]),
    "fail": ("1", "1", []),
    "fail+history": ("1", "1", ["--cgmem-history"]),
    "fail+artifacts": ("1", "1", ["--cgmem-history", "--cgmem-artifacts=artifacts"]),
}


def run(folder: Path, name: str, tests: int) -> dict[str, list[float]]:
    mark, peak, options = VARIANTS[name]
    out = folder / f"times-{name.replace('+', '_')}.json"
    env = dict(os.environ)
    env.update(
        CGMEM_BENCH_OUT=str(out),
        CGMEM_BENCH_TESTS=str(tests),
        CGMEM_BENCH_MARK=mark,
        CGMEM_BENCH_PEAK=peak,
        PYTHONPATH=os.pathsep.join(
            [str(REPO), str(REPO / "benchmarks"), env.get("PYTHONPATH", "")]
        ),
    )
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options]
    subprocess.run(
        command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    times: dict[str, list[float]] = json.loads(out.read_text())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=300, help="tests of each kind")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conftest.py").write_text(textwrap.dedent(CONFTEST))
        (folder / "test_suite.py").write_text(textwrap.dedent(SUITE))
        (folder / "pytest.ini").write_text("[pytest]\n")
        results: dict[str, dict[str, list[float]]] = {name: {} for name in VARIANTS}
        for _ in range(args.rounds):
            for name in VARIANTS:
                for kind, times in run(folder, name, args.tests).items():
                    # the first test of a process pays CUDA and cuBLAS start-up
                    results[name].setdefault(kind, []).extend(times[1:])
        artifacts = (
            sorted((folder / "artifacts").glob("*")) if (folder / "artifacts").exists() else []
        )
        size = sum(p.stat().st_size for p in artifacts)
    print(f"{args.tests} tests of each kind, {args.rounds} rounds; ms per test")
    print(f"{'variant':<16}{'kind':<8}{'median':>10}{'mean':>10}{'+median vs marked':>20}")
    for name, kinds in results.items():
        for kind, times in sorted(kinds.items()):
            base = statistics.median(results["marked"][kind])
            median = statistics.median(times)
            print(
                f"{name:<16}{kind:<8}{median * 1e3:>10.3f}{statistics.mean(times) * 1e3:>10.3f}"
                f"{(median - base) * 1e3:>+20.3f}"
            )
    if artifacts:
        print(f"artifacts of the last round: {len(artifacts)} files, {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
