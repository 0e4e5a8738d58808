"""The one order in which the benchmarks run their variants: round robin, turning by one
every round, so that each variant follows each other one equally often and the machine's
drift and a test's after-effects land on every variant alike."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def interleaved(items: Sequence[T], variant: Callable[[T], str]) -> list[T]:
    """``items`` in rounds of one of each variant (in first-seen order of the variants)."""
    groups: dict[str, list[T]] = defaultdict(list)
    for item in items:
        groups[variant(item)].append(item)
    ordered: list[T] = []
    for number, row in enumerate(itertools.zip_longest(*groups.values())):
        present = [item for item in row if item is not None]
        turn = number % len(present)
        ordered += present[turn:] + present[:turn]
    return ordered
