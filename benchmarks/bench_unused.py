"""What the plugin costs a pytest run that measures nothing (installed but unused).

A folder of 20 plain tests is run by pytest in fresh processes, with the plugin and with
``-p no:cgmem``, interleaved (``--runs`` pairs), and each process's CPU time (user + system,
from ``resource``) and wall time are taken; the median of each side and their difference
are printed. Then one process with ``-X importtime`` lists the plugin's own modules that such
a run imports and what importing them took.

Runs anywhere (no torch needed): ``python benchmarks/bench_unused.py [--runs N]``. Python's
bytecode is written and used as for an installed wheel (``PYTHONDONTWRITEBYTECODE`` is
dropped, and the package is compiled first).
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest_cgmem

TESTS = """import pytest


@pytest.mark.parametrize("i", range(20))
def test_plain(i):
    pass
"""


def _run(folder: Path, extra: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one pytest process on ``folder``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
        cwd=folder,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def _own_imports(folder: Path, env: dict[str, str]) -> list[tuple[str, int]]:
    """The plugin's modules a plain run imports, with each one's own import time (µs)."""
    found = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    own = []
    for line in found.splitlines():
        if not line.startswith("import time:"):
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        if name.strip().split(".")[0] == "pytest_cgmem":
            own.append((name.strip(), int(self_us)))
    return own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="pairs of processes (default 15)")
    options = parser.parse_args()
    package = Path(pytest_cgmem.__file__).parent
    compileall.compile_dir(str(package), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "test_plain.py").write_text(TESTS)
        _run(folder, [], env)  # this folder's bytecode, written once
        sides: dict[str, list[tuple[float, float]]] = {"plugin": [], "no:cgmem": []}
        for _ in range(options.runs):
            sides["plugin"].append(_run(folder, [], env))
            sides["no:cgmem"].append(_run(folder, ["-p", "no:cgmem"], env))
        own = _own_imports(folder, env)
    medians = {
        side: (statistics.median(c for c, _ in runs), statistics.median(w for _, w in runs))
        for side, runs in sides.items()
    }
    print(f"a pytest run of 20 plain tests, median of {options.runs} processes a side:")
    for side, (cpu, wall) in medians.items():
        print(f"  {side:<10} CPU {cpu * 1e3:7.1f} ms   wall {wall * 1e3:7.1f} ms")
    cpu = medians["plugin"][0] - medians["no:cgmem"][0]
    wall = medians["plugin"][1] - medians["no:cgmem"][1]
    print(f"  the plugin CPU {cpu * 1e3:+7.1f} ms   wall {wall * 1e3:+7.1f} ms")
    total = sum(us for _, us in own)
    print(f"its own modules imported: {len(own)}, {total / 1e3:.1f} ms of import time")
    for name, us in sorted(own, key=lambda pair: -pair[1]):
        print(f"  {name:<36} {us / 1e3:6.1f} ms")


if __name__ == "__main__":
    main()
