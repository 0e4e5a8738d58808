"""The ``cgmem report`` page piece by piece, as docs/cli.md describes it."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_cgmem.reports import html

MiB = 2**20


@pytest.mark.parametrize(
    ("metric", "value", "limit", "cell"),
    [
        ("peak", None, MiB, '<td class="n">–</td>'),
        ("peak", MiB, None, '<td class="n">1.00 MiB</td>'),
        ("peak", MiB, MiB, '<td class="n">1.00 MiB<div class="b">/ 1.00 MiB</div></td>'),
        ("peak", MiB + 1, MiB, '<td class="n over">1.00 MiB<div class="b">/ 1.00 MiB</div></td>'),
        ("graphs", 3, 2, '<td class="n over">3<div class="b">/ 2</div></td>'),
        # a budget of 0 (leak=0, docs/diagnostics.md) is shown like any other
        ("leak", 0, 0, '<td class="n">0 B<div class="b">/ 0 B</div></td>'),
        ("leak", 512, 0, '<td class="n over">512 B<div class="b">/ 0 B</div></td>'),
        ("device", -MiB, None, '<td class="n">-1.00 MiB</td>'),
    ],
)
def test_a_cell_shows_the_figure_its_budget_and_whether_it_is_over(
    metric: str, value: Any, limit: Any, cell: str
) -> None:
    assert html._cell(metric, value, limit) == cell
