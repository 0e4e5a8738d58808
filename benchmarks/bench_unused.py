"""What the plugin costs a pytest run that measures nothing (installed but unused).

A folder of 20 plain tests is run by pytest in fresh processes, with the plugin and with
``-p no:cgmem``, interleaved (``--runs`` pairs), and each process's CPU time (user + system,
from ``resource``) and wall time are taken; the median of each side and their difference
are printed. Then fresh processes import pytest and time the plugin's import, and the
package's modules it loads are listed.

Runs anywhere (no torch needed): ``python benchmarks/bench_unused.py [--runs N]``. Python's
bytecode is written and used as for an installed wheel (``PYTHONDONTWRITEBYTECODE`` is
dropped, and the package is compiled first).
"""

from __future__ import annotations

import argparse
import compileall
import json
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


IMPORT_PLUGIN = """
import json, sys, time
import pytest
start = time.perf_counter()
import pytest_cgmem.plugin
seconds = time.perf_counter() - start
ours = sorted(m for m in sys.modules if m.split(".")[0] == "pytest_cgmem")
print(json.dumps([seconds, ours]))
"""


def _plugin_import(env: dict[str, str], runs: int) -> tuple[float, list[str]]:
    """The median time a fresh process takes to import the plugin module once pytest is
    imported, and the package's modules that import loads (a run that measures nothing
    loads no more: ``tests/plugin/test_no_gpu.py``)."""
    times, modules = [], []
    for _ in range(runs):
        found = subprocess.run(
            [sys.executable, "-c", IMPORT_PLUGIN], env=env, check=True, capture_output=True
        )
        seconds, modules = json.loads(found.stdout)
        times.append(seconds)
    return statistics.median(times), modules


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
    seconds, modules = _plugin_import(env, options.runs)
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
    names = ", ".join(m.removeprefix("pytest_cgmem.") for m in modules)
    print(f"importing the plugin after pytest: {seconds * 1e3:.1f} ms (median)")
    print(f"  {len(modules)} of its modules: {names}")


if __name__ == "__main__":
    main()
