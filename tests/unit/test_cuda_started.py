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
        (mock.MagicMock(), False),
    ],
    ids=["installed", "sourceless", "bare-module", "another-file", "magicmock"],
)
def test_only_the_torch_package_is_genuine(module: object, genuine: bool) -> None:
    assert _genuine(module) is genuine


def test_a_stand_in_in_sys_modules_has_not_started_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in = mock.MagicMock()
    stand_in.cuda.is_initialized.return_value = True
    monkeypatch.setitem(sys.modules, "torch", stand_in)
    assert cuda_started() is False
