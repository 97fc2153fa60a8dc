"""The representations that keep cost independent of RAM size hold the same sets as the
plain ones: RunMap against a bitarray, SpreadRanges against one ByteRanges."""

from __future__ import annotations

from bitarray import bitarray
from hypothesis import given, settings
from hypothesis import strategies as st

from bootemu.byteranges import ByteRanges, SpreadRanges
from bootemu.runmap import RunMap

SIZE = 64

_ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "find", "count", "runs", "get", "setall"]),
        st.integers(0, 1),
        st.integers(0, SIZE),
        st.integers(0, SIZE),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(init=st.integers(0, 1), ops=_ops)
def test_runmap_behaves_like_bitarray(init, ops):
    model = bitarray(SIZE)
    model.setall(init)
    runs = RunMap(SIZE, init)
    for op, v, a, b in ops:
        if op == "set":
            model[a:b] = v
            runs[a:b] = v
        elif op == "setall":
            model.setall(v)
            runs.setall(v)
        elif op == "find":
            assert runs.find(v, a, b) == model.find(v, a, b)
            assert runs.find(v, a, b, right=True) == model.find(v, a, b, right=True)
        elif op == "count":
            assert runs.count(v, a, b) == (model.count(v, a, b) if a < b else 0)
        elif op == "get" and a < SIZE:
            assert runs[a] == model[a]
        elif op == "runs":
            got = list(runs.runs(v, a, b))
            want, pos = [], a
            while a < b and pos < b:
                i = model.find(v, pos, b)
                if i < 0:
                    break
                j = model.find(1 - v, i, b)
                j = b if j < 0 else j
                want.append((i, j))
                pos = j
            assert got == want
        # the stored runs stay sorted, disjoint and never adjacent
        pairs = list(zip(runs._s, runs._e, strict=True))
        assert all(s < e for s, e in pairs)
        assert all(e1 < s2 for (_, e1), (s2, _) in zip(pairs, pairs[1:], strict=False))
    assert [runs[i] for i in range(SIZE)] == model.tolist()


def test_a_huge_map_costs_its_runs_not_its_bits():
    # 2**46 bits (a 64 TiB node span in pages would be 2**34; this is beyond any bitarray
    # that fits in memory): three operations, three stored runs at most.
    big = RunMap(1 << 46, 1)
    big[1 << 20 : 1 << 40] = 0
    big[1 << 30 : (1 << 30) + 5] = 1
    assert big.nruns == 2 + 1
    assert big.find(0) == 1 << 20
    assert big.find(1, 1 << 20) == 1 << 30
    assert big.count(0) == (1 << 40) - (1 << 20) - 5


# SpreadRanges (the recorder's ledger) must be the same set as one ByteRanges, whatever the
# bucket size: here 8-byte buckets, so ranges cross buckets and large ones go whole.
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "remove"]), st.integers(0, 60), st.integers(0, 20)),
        max_size=40,
    ),
    st.integers(0, 70),
    st.integers(0, 20),
)
def test_spread_ranges_equal_byte_ranges(ops, qs, qn):
    one, spread = ByteRanges(), SpreadRanges(shift=3)
    for op, start, n in ops:
        getattr(one, op)(start, start + n)
        getattr(spread, op)(start, start + n)
    assert spread.ranges == one.ranges
    assert spread.overlapping(qs, qs + qn) == one.overlapping(qs, qs + qn)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20)), max_size=30),
    st.integers(0, 70),
    st.integers(0, 20),
)
def test_intersects_agrees_with_overlapping(adds, qs, qn):
    one, spread = ByteRanges(), SpreadRanges(shift=3)
    for start, n in adds:
        one.add(start, start + n)
        spread.add(start, start + n)
    want = bool(one.overlapping(qs, qs + qn))
    assert one.intersects(qs, qs + qn) == want
    assert spread.intersects(qs, qs + qn) == want
