"""The suite's own process and its pytester runs: what costs time and is not what they test."""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import pkgutil

import pytest

LEAN_RUNS = ("benchmark", "rerunfailures", "hypothesispytest")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "lean_runs(on=True, keep=()): the test's pytester runs (in process, in subprocesses, "
        "their xdist workers) load none of pytest-benchmark, pytest-rerunfailures and "
        "Hypothesis's plugin, which are not what it checks; keep is a tuple of those of the "
        "three it checks (keep=('rerunfailures',)), "
        "and lean_runs(False) on a test of a marked module loads all three again",
    )


@pytest.fixture
def pytester(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """The project's pytester (conftest.py), lean where the test is marked ``lean_runs``
    (less the plugins its ``keep`` names): loading the three plugins, and pytest-benchmark's
    start (it runs ``git`` and ``file``), is a good part of a short run's cost (an in-process
    run of one test: 43 ms of CPU lean, 66 ms with both; Hypothesis's plugin imports
    Hypothesis at a run's end, about 0.1 s of CPU in each pytest subprocess). Its runs print
    80 columns wide whatever the terminal, so the lines a test matches do not depend on
    where the suite runs (a wide terminal gives a short summary line room for the message,
    a narrow one cuts it).

    A GPU test's runs start with no garbage left by the tests before it in this process: an
    earlier in-process run's test modules become garbage when pytester takes them out of
    ``sys.modules`` (each function and its module's globals make a cycle), with the CUDA
    tensors they kept. The plugin's leak check collects garbage before it calls anything a
    leak, and garbage from before a region that it frees offsets a leak of up to its size
    (docs/measuring.md): a kept tensor would pass beside an earlier run's of the same size.
    """
    if request.node.get_closest_marker("gpu") is not None:
        gc.collect()
    monkeypatch.setenv("COLUMNS", "80")
    mark = request.node.get_closest_marker("lean_runs")
    if mark is not None and (mark.args[0] if mark.args else True):
        keep = mark.kwargs.get("keep", ())
        if not isinstance(keep, tuple) or not set(keep) <= set(LEAN_RUNS):
            raise ValueError(f"lean_runs(keep=...) takes a tuple of {LEAN_RUNS}, got {keep!r}")
        blocked = " ".join(f"-p no:{name}" for name in LEAN_RUNS if name not in keep)
        addopts = os.environ.get("PYTEST_ADDOPTS", "")
        monkeypatch.setenv("PYTEST_ADDOPTS", f"{addopts} {blocked}".strip())
    return pytester


SHARED_WITH_RUNS = ("xdist.dsession", "jsonschema")
"""Imported by in-process runs (an inner ``-n`` run's controller, a run file's schema
check) and by no test module: 27 and 60 ms at each run that imports them again."""


def _import_for_every_run() -> None:
    """Every module of the plugin, and ``SHARED_WITH_RUNS``, imported once in this process.

    An in-process pytester run takes out of ``sys.modules`` what it imported, but not off
    the package that holds it: a later run's test module then gets the old copy with
    ``from pytest_cgmem.cuda import distributed`` while the plugin imports a new one (a
    test patched the old copy's ``_GRACE``, and waited 12 s instead of 3), and an earlier
    run's ``RegionResult`` is not the class a later run's recorder takes. Imported here,
    before any run, each stays for every run."""
    import pytest_cgmem

    plugin = [m.name for m in pkgutil.walk_packages(pytest_cgmem.__path__, "pytest_cgmem.")]
    for name in (*plugin, *SHARED_WITH_RUNS):
        with contextlib.suppress(ImportError):  # cuda/ without torch; a package not installed
            importlib.import_module(name)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Every module the runs share imported once (``_import_for_every_run``); then what
    collection built (the test modules, torch and the rest they import, the items, those
    modules) lives to the end of the run: frozen, full collections no longer walk it. Each one
    walked it all, 0.3 s on the 2-core CI machine, and the pytester runs' garbage makes the
    collector run one every few tests (about 10 s of a run's CPU). Garbage made from now
    on is collected as before: only what is here now is frozen, after a last collection."""
    _import_for_every_run()
    gc.collect()
    gc.freeze()
