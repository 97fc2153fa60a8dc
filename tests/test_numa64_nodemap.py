"""numa64 2.6.25's early_node_map[] against mm/page_alloc.c of 2.6.25: add_active_range()'s
merges and __absent_pages_in_range() (its BUG on an overlapping map, and on sorted maps the
holes, checked by brute force)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st


def _map(*adds: tuple[int, int, int]) -> Any:
    from bootemu_arches.numa64.srat_2625 import NodeMap

    node_map = NodeMap(3200)
    boot = type("B", (), {"printk": lambda *a, **k: None})()
    for nid, s, e in adds:
        node_map.add(boot, nid, s, e)
    return node_map


def test_add_active_range_merges_only_within_a_node() -> None:
    # The hull kernel's sequence on the seed layout (the real log's add_active_range lines):
    # node 0's (0, 159) again is covered, (256, 786400) merges forward over (256, 524288),
    # node 1's (524288, 786400) is covered by its own entry, its (1048576, 2359296) is new.
    node_map = _map(
        (0, 0, 159),
        (0, 256, 524288),
        (1, 524288, 786400),
        (0, 0, 159),
        (0, 256, 786400),
        (0, 1048576, 1572864),
        (1, 524288, 786400),
        (1, 1048576, 2359296),
    )
    assert node_map.entries == [
        [0, 0, 159],
        [0, 256, 786400],
        [1, 524288, 786400],
        [0, 1048576, 1572864],
        [1, 1048576, 2359296],
    ]


def test_absent_pages_bug_on_an_overlapping_map() -> None:
    from bootemu.models import KernelBug

    node_map = _map((0, 0, 159), (0, 256, 786400), (1, 524288, 786400))
    with pytest.raises(KernelBug, match="__absent_pages_in_range"):
        node_map.absent(None, 0, 1572864)


@given(
    st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 1 << 16)), max_size=8),
    st.integers(0, 1 << 21),
    st.integers(0, 1 << 21),
)
def test_absent_pages_counts_the_holes_of_a_sorted_map(pieces, lo, hi) -> None:
    """On a sorted, disjoint map __absent_pages_in_range() is the pfns of [lo, hi) no range
    covers (counted here by brute force over the merged ranges)."""
    ranges, end = [], 0
    for gap, size in pieces:  # sorted and disjoint by construction
        start = end + gap % 4096
        ranges.append((start, start + size))
        end = start + size + 1
    node_map = _map(*[(n % 2, s, e) for n, (s, e) in enumerate(ranges)])
    if hi < lo:
        lo, hi = hi, lo
    covered = sum(max(0, min(e, hi) - max(s, lo)) for s, e in ranges)
    # 2.6.25 quirk: with no active range at all the answer is 0 ("if (i == -1) return 0").
    assert node_map.absent(None, lo, hi) == ((hi - lo) - covered if ranges else 0)
