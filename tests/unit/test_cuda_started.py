"""``cuda_started`` trusts only the installed torch package, never a stand-in for it."""

from __future__ import annotations

import sys
import types
from unittest import mock

import pytest

from pytest_cgmem.cuda import _genuine, cuda_started


def _module(file: str | None) -> types.ModuleType:
    module = types.ModuleType("torch")
    if file is not None:
        module.__file__ = file
    return module


@pytest.mark.parametrize(
    ("module", "genuine"),
    [
        (_module("/site/torch/__init__.py"), True),
        (_module("/app/torch/__init__.pyc"), True),  # a sourceless install
        (_module(None), False),
        (_module("/tests/fake_torch.py"), False),
        (_module("/site/torch/version.py"), False),
        (_module("/site/other/__init__.py"), False),
        (mock.MagicMock(), False),
    ],
    ids=[
        "installed",
        "sourceless",
        "bare-module",
        "another-file",
        "another-torch-file",
        "another-package",
        "magicmock",
    ],
)
def test_only_the_torch_package_is_genuine(module: object, genuine: bool) -> None:
    assert _genuine(module) is genuine


def test_a_stand_in_in_sys_modules_has_not_started_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in = mock.MagicMock()
    stand_in.cuda.is_initialized.return_value = True
    monkeypatch.setitem(sys.modules, "torch", stand_in)
    assert cuda_started() is False


def _cuda_module(initialized: object) -> types.ModuleType:
    """A ``torch.cuda`` whose state says ``initialized``, and whose public
    ``is_initialized`` a test patched to say the opposite and to spy on its callers."""
    cuda = types.ModuleType("torch.cuda")
    cuda._initialized = initialized  # type: ignore[attr-defined]
    cuda.is_initialized = mock.MagicMock(return_value=initialized is not True)  # type: ignore[attr-defined]
    return cuda


def _bindings(in_bad_fork: object) -> types.ModuleType:
    """A ``torch._C``: a CUDA build's (``_cuda_isInBadFork`` answers ``in_bad_fork``), or
    a CPU build's (None: no such binding)."""
    bindings = types.ModuleType("torch._C")
    if in_bad_fork is not None:

        def _cuda_isInBadFork() -> object:
            if isinstance(in_bad_fork, Exception):
                raise in_bad_fork
            return in_bad_fork

        bindings._cuda_isInBadFork = _cuda_isInBadFork  # type: ignore[attr-defined]
    return bindings


@pytest.mark.parametrize(
    ("initialized", "in_bad_fork", "started"),
    [
        (True, False, True),
        (False, False, False),
        (True, True, False),  # a forked child: its parent's CUDA is none of its own
        (1, False, False),  # only True is torch's answer
        (True, RuntimeError("driver"), False),
        (True, None, False),  # a build without CUDA: its CUDA never starts
    ],
    ids=["started", "not-started", "bad-fork", "not-a-bool", "raises", "cpu-build"],
)
def test_torch_s_own_state_says_whether_cuda_started(
    monkeypatch: pytest.MonkeyPatch, initialized: object, in_bad_fork: object, started: bool
) -> None:
    """Read as ``torch.cuda.is_initialized()`` reads it, without calling it: a fake-GPU
    fixture's patched answer is not taken, and a spy on it sees no call of the plugin's."""
    cuda = _cuda_module(initialized)
    monkeypatch.setitem(sys.modules, "torch", _module("/site/torch/__init__.py"))
    monkeypatch.setitem(sys.modules, "torch._C", _bindings(in_bad_fork))
    monkeypatch.setitem(sys.modules, "torch.cuda", cuda)
    assert cuda_started() is started
    cuda.is_initialized.assert_not_called()  # type: ignore[attr-defined]


@pytest.mark.parametrize("cuda", [mock.MagicMock(), None], ids=["patched", "not-imported"])
def test_a_torch_cuda_that_is_no_module_has_not_started(
    monkeypatch: pytest.MonkeyPatch, cuda: object
) -> None:
    monkeypatch.setitem(sys.modules, "torch", _module("/site/torch/__init__.py"))
    monkeypatch.setitem(sys.modules, "torch._C", _bindings(False))
    if cuda is None:
        monkeypatch.delitem(sys.modules, "torch.cuda", raising=False)
    else:
        monkeypatch.setitem(sys.modules, "torch.cuda", cuda)
    assert cuda_started() is False


def test_no_torch_imported_has_not_started_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setitem(sys.modules, "torch._C", _bindings(False))
    monkeypatch.setitem(sys.modules, "torch.cuda", _cuda_module(True))
    assert cuda_started() is False
