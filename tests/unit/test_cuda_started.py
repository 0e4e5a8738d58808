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


def _initialized(answer: object) -> types.ModuleType:
    cuda = types.ModuleType("torch.cuda")

    def is_initialized() -> object:
        if isinstance(answer, Exception):
            raise answer
        return answer

    cuda.is_initialized = is_initialized  # type: ignore[attr-defined]
    return cuda


@pytest.mark.parametrize(
    ("cuda", "started"),
    [
        (_initialized(True), True),
        (_initialized(False), False),
        (_initialized(1), False),  # only True is an answer
        (_initialized(RuntimeError("driver")), False),
        (mock.MagicMock(), False),  # a test patched torch.cuda
        (None, False),
    ],
    ids=["started", "not-started", "not-a-bool", "raises", "patched", "not-imported"],
)
def test_the_installed_torch_is_asked_whether_cuda_started(
    monkeypatch: pytest.MonkeyPatch, cuda: object, started: bool
) -> None:
    monkeypatch.setitem(sys.modules, "torch", _module("/site/torch/__init__.py"))
    if cuda is None:
        monkeypatch.delitem(sys.modules, "torch.cuda", raising=False)
    else:
        monkeypatch.setitem(sys.modules, "torch.cuda", cuda)
    assert cuda_started() is started


def test_no_torch_imported_has_not_started_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setitem(sys.modules, "torch.cuda", _initialized(True))
    assert cuda_started() is False
