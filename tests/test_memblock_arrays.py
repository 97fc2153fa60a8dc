"""memblock's region arrays on chunked sorted sets, held to plain-list models of the kernel's.

mm/memblock.c (6.1) keeps each type as one sorted array of ``(base, size, nid)``:
memblock_add_range() inserts the uncovered pieces of a range, then memblock_merge_regions()
joins every pair of neighbours that touch and have the same nid; memblock_remove_range()
isolates the range (memblock_isolate_range() splits the regions crossing its bounds) and drops
the regions inside. The models below do exactly that on a Python list, the way the kernel does
on its array; the emulation (bootemu_plugins._memblock_types on
bootemu_plugins._sorted_keys) must hold the same regions after every step, and its gap index
must name the same gaps, in the same order, as a walk over the model's gaps. Chunks are made
tiny (LOAD = 2) so that splitting and dropping chunks happens all the time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import bootemu_plugins._sorted_keys as sk
from bootemu_plugins._memblock_types import INF, NUMA_NO_NODE, MemblockType, round_up
from bootemu_plugins._sorted_keys import SortedKeys
from bootemu_plugins.memblock import Memblock
from hypothesis import given, settings
from hypothesis import strategies as st


@contextlib.contextmanager
def tiny_chunks() -> Iterator[None]:
    saved, sk.LOAD = sk.LOAD, 2
    try:
        yield
    finally:
        sk.LOAD = saved


# ------------------------------------------------------------------------------------------
# SortedKeys against a sorted list

key_ops = st.lists(st.tuples(st.booleans(), st.integers(0, 60)), max_size=120)


@settings(max_examples=150, deadline=None)
@given(key_ops, st.lists(st.integers(-2, 62), min_size=1, max_size=8))
def test_sorted_keys_match_a_sorted_list(ops, probes):
    with tiny_chunks():
        keys, model = SortedKeys(), []
        for add, x in ops:
            if add and x not in model:
                keys.add(x)
                model.append(x)
            elif not add and x in model:
                keys.remove(x)
                model.remove(x)
            model.sort()
            assert list(keys) == model and len(keys) == len(model)
            for p in probes:
                assert keys.floor(p) == max((k for k in model if k <= p), default=None)
                assert keys.lower(p) == max((k for k in model if k < p), default=None)
                assert keys.higher(p) == min((k for k in model if k > p), default=None)
                assert list(keys.asc(p)) == [k for k in model if k >= p]
                assert list(keys.desc(p)) == [k for k in reversed(model) if k < p]
                assert keys.between(p, p + 7) == [k for k in model if p <= k < p + 7]


def test_removing_a_missing_key_is_a_key_error():
    keys = SortedKeys()
    keys.add(5)
    for x in (4, 6):
        try:
            keys.remove(x)
        except KeyError:
            continue
        raise AssertionError(f"{x} removed")


# ------------------------------------------------------------------------------------------
# the region array against the kernel's plain array


def model_add(regs: list[tuple[int, int, int]], base: int, size: int, nid: int) -> None:
    """memblock_add_range(): insert what of [base, base + size) no region covers, then
    memblock_merge_regions() over the whole array."""
    end, pos, new = base + size, base, []
    for b, s, _ in regs:
        if b + s <= pos:
            continue
        if b >= end:
            break
        if b > pos:
            new.append((pos, b - pos, nid))
        pos = max(pos, b + s)
    if pos < end:
        new.append((pos, end - pos, nid))
    regs += new
    regs.sort()
    i = 0
    while i < len(regs) - 1:
        (b, s, n), (b2, s2, n2) = regs[i], regs[i + 1]
        if b + s == b2 and n == n2:
            regs[i : i + 2] = [(b, s + s2, n)]
        else:
            i += 1


def model_isolate(regs: list[tuple[int, int, int]], base: int, size: int) -> None:
    """memblock_isolate_range(): split the regions that cross base or base + size."""
    out = []
    for b, s, n in regs:
        cuts = sorted({b, b + s} | {x for x in (base, base + size) if b < x < b + s})
        out += [(x, y - x, n) for x, y in zip(cuts, cuts[1:], strict=False)]
    regs[:] = out


def model_remove(regs: list[tuple[int, int, int]], base: int, size: int) -> None:
    """memblock_remove_range(): isolate, then drop every region inside."""
    model_isolate(regs, base, size)
    regs[:] = [r for r in regs if not (base <= r[0] and r[0] + r[1] <= base + size)]


def model_gaps(regs: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    pos, out = 0, []
    for b, s, _ in regs:
        if b > pos:
            out.append((pos, b))
        pos = b + s
    return out + [(pos, INF)]


region_ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "remove", "isolate"]),
        st.integers(0, 400),
        st.integers(0, 90),
        st.sampled_from([NUMA_NO_NODE, 0, 1]),
    ),
    max_size=60,
)
searches = st.lists(
    st.tuples(st.integers(0, 520), st.integers(0, 200), st.sampled_from([1, 4, 16, 64, 24])),
    min_size=1,
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(region_ops, searches)
def test_region_array_matches_the_kernels_array(ops, probes):
    with tiny_chunks():
        mb = Memblock()  # no boot: 64-bit phys_addr_t, never resized (max set huge)
        t = MemblockType("reserved", indexed=True)
        t.max = 1 << 30
        model: list[tuple[int, int, int]] = []
        for op, base, size, nid in ops:
            if op == "add":
                assert mb.add_range(t, base, size, nid) == 0
                if size:
                    model_add(model, base, size, nid)
            else:
                span = mb.isolate_range(t, base, size)
                if size:
                    model_isolate(model, base, size)
                if op == "isolate":  # the split array itself, before anything is dropped
                    assert t.regions == model
                assert span is not None
                t.delete(*span)
                if size:
                    model_remove(model, base, size)
            assert t.regions == model
            assert t.cnt == (len(model) or 1)
            assert t.total_size == sum(s for _, s, _ in model)
            for hi, size, align in probes:
                end = hi + size
                covered = [(b, b + s) for b, s, _ in model if b < end and b + s > hi]
                assert t.overlaps(hi, end) == bool(covered)
                holder = [n for b, s, n in model if b <= hi < b + s]
                assert t.node_at(hi) == (holder[0] if holder else None)
                # the gap index: every gap below hi holding size bytes aligned, highest first
                assert t.gaps is not None
                # an alignment that is not a power of two is indexed as 1 (the gap's length)
                align = align if align & (align - 1) == 0 else 1
                want = [
                    (s, e)
                    for s, e in reversed(model_gaps(model))
                    if s < hi and 0 < e - round_up(s, align) and e - round_up(s, align) >= size
                ]
                assert list(t.gaps.desc(hi, size, align)) == want
