"""The memblock gap search past its first probes: many gaps, every fitting one in order.

:meth:`bootemu_plugins._memblock_types.GapIndex.desc` tries the highest ``PROBE`` gaps filed for an
alignment one by one, then merges the size classes below the last one tried. Here ``reserved``
gets dozens of separate regions (more gaps than ``PROBE``), from one-piece adds (the shortcut
that splits one gap) and adds spanning several regions (the general refresh), and every
search must list exactly the gaps a one-flag-per-byte model of the covered addresses gives:
those starting below ``hi`` whose largest ``align``-aligned block holds ``size`` bytes,
highest first.
"""

from __future__ import annotations

import bootemu_plugins._memblock_types as mt
from bootemu_plugins._memblock_types import INF, NUMA_NO_NODE, MemblockType, round_up
from bootemu_plugins.memblock import Memblock
from hypothesis import given, settings
from hypothesis import strategies as st

SPAN = 4200  # every add ends below this


def gaps_of(covered: bytearray) -> list[tuple[int, int]]:
    """The maximal runs of uncovered bytes, ascending; the last one runs on to INF."""
    gaps, start = [], None
    for x in range(SPAN):
        if not covered[x] and start is None:
            start = x
        elif covered[x] and start is not None:
            gaps.append((start, x))
            start = None
    gaps.append((SPAN if start is None else start, INF))
    return gaps


adds = st.lists(
    st.tuples(st.integers(0, 4000), st.integers(1, 120), st.sampled_from([NUMA_NO_NODE, 0])),
    min_size=mt.PROBE * 2,
    max_size=80,
)
searches = st.lists(
    st.tuples(st.integers(0, 4200), st.integers(0, 300), st.sampled_from([1, 8, 64, 256])),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(adds, searches)
def test_search_past_the_probes_lists_every_fitting_gap(ops, probes):
    mb = Memblock()  # no boot: never resized (max set huge)
    t = MemblockType("reserved", indexed=True)
    t.max = 1 << 30
    covered = bytearray(SPAN)  # the model: one flag per byte
    for base, size, nid in ops:
        assert mb.add_range(t, base, size, nid) == 0
        covered[base : base + size] = b"\x01" * size
        gaps = gaps_of(covered)
        for hi, want_size, align in probes:
            want = [
                (s, e)
                for s, e in reversed(gaps)
                if s < hi and e - round_up(s, align) > 0 and e - round_up(s, align) >= want_size
            ]
            assert t.gaps is not None
            assert list(t.gaps.desc(hi, want_size, align)) == want
