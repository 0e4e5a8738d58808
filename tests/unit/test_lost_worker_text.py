"""What a run file keeps of xdist's word for a worker that died: one line of at most 500
characters, its start and its end, since a traceback says what was raised last."""

from __future__ import annotations

import pytest

from pytest_cgmem.session import _ends_kept


@pytest.mark.parametrize("length", [0, 1, 499, 500])
def test_a_short_text_is_kept_whole(length: int) -> None:
    text = "x" * length
    assert _ends_kept(text) == text


def test_a_long_traceback_keeps_its_start_and_what_was_raised() -> None:
    frames = " ".join(f'File "conftest.py", line {n}, in helper_{n}' for n in range(60))
    text = f"Traceback (most recent call last): {frames} RuntimeError: worker conftest"
    kept = _ends_kept(text)
    assert len(kept) == 500
    assert kept.startswith("Traceback (most recent call last): ")
    assert kept.endswith("RuntimeError: worker conftest")
    assert " ... " in kept
