"""Test matrices for the CPU tiers (tests/unit, tests/plugin; GPU tests are elsewhere).

    nox -l                              # every session
    nox                                 # tests: each Python 3.10-3.15 found x oldest/newest pytest
    nox -s "tests-3.11(pytest='9')"     # one combination (.ci/run runs this one)
    nox -s torch                        # the CPU tiers under each supported torch release
    nox -s "torch(torch='2.4.1')"       # one of them

A Python that is not installed is skipped with a note, never an error, on CI too. (With pyenv,
PYENV_VERSION=3.10.13:3.11.7:3.12.1:3.13.0, say, puts its other Pythons on the PATH.)

torch: the tests sessions install $CGMEM_TORCH_SPEC (pip arguments, default torch==2.13.0, and
torch==2.15.0 on Python 3.15, which 2.13.0 has no wheel for), as ./dev does. The torch sessions
pin each release, and pass $CGMEM_TORCH_PIP_ARGS to that install: on Linux x86_64 PyPI's wheels
are CUDA builds that run on a CPU but weigh several GB with their nvidia-* packages; name a CPU
wheel index there (--index-url ...) to get the CPU builds instead.
"""

from __future__ import annotations

import os

import nox

nox.options.error_on_missing_interpreters = False
nox.options.download_python = "never"
nox.options.sessions = ["tests"]  # the torch sessions download a lot: only when asked for

PYTHONS = ["3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
#: oldest and newest supported pytest
PYTESTS = {"8.1": "pytest==8.1.*", "9": "pytest>=9,<10"}
#: the oldest supported, each release where the torch facts the plugin relies on change
#: (torch.accelerator 2.6, snapshots by mempool_id 2.8, PYTORCH_ALLOC_CONF 2.9-2.10, light
#: snapshots 2.11, accelerator.Graph and the settings getter 2.12, per-pool stats 2.13, global
#: graph hooks 2.14), and the newest on PyPI (2.4 has no wheel for Python 3.13)
TORCHES = [
    "2.4.1",
    "2.6.0",
    "2.8.0",
    "2.9.1",
    "2.11.0",
    "2.12.1",
    "2.13.0",
    "2.14.1",
    "2.15.0",
]
CPU_TIERS = ["tests/unit", "tests/plugin"]


def _run_cpu_tiers(session: nox.Session) -> None:
    versions = (
        "import pytest, torch; print('pytest', pytest.__version__, 'torch', torch.__version__)"
    )
    session.run("python", "-c", versions)
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *CPU_TIERS, *session.posargs)


@nox.session(python=PYTHONS)
@nox.parametrize("pytest", list(PYTESTS))
def tests(session: nox.Session, pytest: str) -> None:
    """The CPU tiers against one pytest (8.1 = oldest supported, 9 = newest)."""
    default = "torch==2.15.0" if session.python == "3.15" else "torch==2.13.0"
    session.install(*os.environ.get("CGMEM_TORCH_SPEC", default).split())
    session.install("-e", ".[test]", PYTESTS[pytest])
    _run_cpu_tiers(session)


@nox.session(python="3.11")
@nox.parametrize("torch", TORCHES)
def torch(session: nox.Session, torch: str) -> None:
    """The CPU tiers under one torch release (a torch-API contract test joins them later)."""
    session.install(f"torch=={torch}", *os.environ.get("CGMEM_TORCH_PIP_ARGS", "").split())
    session.install("-e", ".[test]")
    _run_cpu_tiers(session)
