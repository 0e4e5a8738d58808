"""PyTorch's own ``CudaMemoryLeakCheck`` around each test's call, as a pytest plugin.

``python -m pytest -p pytorch_leak_check`` (with this folder on ``PYTHONPATH``) wraps each
test's call phase in ``torch.testing._internal.common_utils.CudaMemoryLeakCheck``, as
``PYTORCH_TEST_CUDA_MEM_LEAK_CHECK=1`` wraps a test method in PyTorch's suites: a test that
raised is not checked; a leak the driver confirms fails the test (RuntimeError); one only
the caching allocator sees is a warning and the test passes. Each test's verdict is
written, as JSON, to the file ``PYTORCH_LEAK_CHECK_OUT`` names: ``leak`` (the RuntimeError),
``warning`` (the allocator-only leak), ``clean`` or ``raised`` (``no CUDA`` where CUDA is
not available: the check needs it). ``bench_external.py
--pytorch`` runs a suite this way beside plain and cgmem.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Generator
from typing import Any

import pytest

VERDICTS: dict[str, str] = {}


class _Case:
    """What ``CudaMemoryLeakCheck`` asks of its test case."""

    def __init__(self, name: str) -> None:
        self.name = name

    def id(self) -> str:
        return self.name

    def before_cuda_memory_leak_check(self) -> None:
        pass


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    import torch

    if not torch.cuda.is_available():  # the check asserts CUDA is there
        VERDICTS[item.nodeid] = "no CUDA"
        return (yield)
    from torch.testing._internal import common_utils

    leak_check: Any = common_utils.CudaMemoryLeakCheck  # untyped in torch
    check = leak_check(_Case(item.nodeid))
    check.__enter__()
    try:
        outcome = yield
    except BaseException as exc:
        check.__exit__(type(exc), exc, exc.__traceback__)
        VERDICTS[item.nodeid] = "raised"
        raise
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            check.__exit__(None, None, None)
        except RuntimeError:
            VERDICTS[item.nodeid] = "leak"
            raise
    leaked = any("memory leak" in str(w.message) for w in caught)
    VERDICTS[item.nodeid] = "warning" if leaked else "clean"
    return outcome


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("PYTORCH_LEAK_CHECK_OUT")
    if path:
        with open(path, "w") as f:
            json.dump(VERDICTS, f)
