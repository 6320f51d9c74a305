"""Tests of btrfsscan.arrays: the grouped numpy operations the models rely on, against plain Python."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btrfsscan import arrays

groups_of_ints = st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=4), min_size=1, max_size=30)


def _csr(groups: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    starts = np.cumsum([0] + [len(g) for g in groups]).astype(np.int64)
    return starts, np.array([v for g in groups for v in g], np.int64)


def _check_group_ids(groups: list[list[int]]) -> None:
    ids, first = arrays.group_ids(*_csr(groups))
    seen: dict[tuple[int, ...], int] = {}
    for n, g in enumerate(groups):
        j = int(ids[n])
        assert groups[int(first[j])] == g  # the first group of an id is equal to it
        assert seen.setdefault(tuple(g), j) == j  # equal groups, one id
    assert len(set(ids.tolist())) == len(seen) == len(first)


@settings(max_examples=200, deadline=None)
@given(groups_of_ints)
def test_group_ids_names_equal_sequences_alike(groups):
    _check_group_ids(groups)


@settings(max_examples=50, deadline=None)
@given(groups_of_ints)
def test_group_ids_exact_when_every_hash_collides(groups):
    saved = arrays._mix
    arrays._mix = lambda x: np.zeros(len(x), np.uint64)  # every group hashes alike: the exact fallback decides
    try:
        _check_group_ids(groups)
    finally:
        arrays._mix = saved


@settings(max_examples=100, deadline=None)
@given(groups_of_ints)
def test_distinct_groups_lists_each_sequence_once(groups):
    ids, starts, values = arrays.distinct_groups(*_csr(groups))
    table = [values[a:b].tolist() for a, b in zip(starts[:-1], starts[1:])]
    assert sorted(map(tuple, table)) == sorted(set(map(tuple, groups)))
    assert [table[i] for i in ids.tolist()] == groups


def test_take_groups_picks_sequences_in_the_order_asked():
    starts, values = _csr([[1, 2], [3], [4, 5, 6]])
    got_starts, got_values = arrays.take_groups(starts, values, np.array([2, 0, 2]))
    assert got_starts.tolist() == [0, 3, 5, 8] and got_values.tolist() == [4, 5, 6, 1, 2, 4, 5, 6]


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 5)), max_size=20))
def test_ranges_concatenates_aranges(pairs):
    starts = np.array([a for a, _ in pairs], np.int64)
    ends = np.array([a + n for a, n in pairs], np.int64)
    want = [x for a, n in pairs for x in range(a, a + n)]
    assert arrays.ranges(starts, ends).tolist() == want


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 100)), max_size=30))
def test_segmented_cummax_restarts_per_group(rows):
    rows = sorted(rows, key=lambda r: r[0])  # groups non-decreasing, values in any order
    groups = np.array([g for g, _ in rows], np.int64)
    values = np.array([v for _, v in rows], np.int64)
    want, best, last = [], None, None
    for g, v in rows:
        best = v if g != last else max(best, v)
        last = g
        want.append(best)
    assert arrays.segmented_cummax(values, groups).tolist() == want


def test_take_fields_gathers_the_named_columns():
    table = np.zeros(4, [("a", "<u8"), ("b", "u1"), ("c", "<u4")])
    table["a"], table["b"], table["c"] = [10, 11, 12, 13], [1, 2, 3, 4], [7, 7, 7, 7]
    got = arrays.take_fields(table, np.array([3, 0, 3]), ("b", "a"))
    assert got.dtype.names == ("b", "a") and got.dtype.itemsize == 9
    assert got.tolist() == [(4, 13), (1, 10), (4, 13)]


@given(st.lists(st.integers(-5, 5), max_size=30))
def test_distinct_is_sorted_unique(values):
    assert arrays.distinct(np.array(values, np.int64)).tolist() == sorted(set(values))


@given(st.lists(st.integers(0, 40), max_size=200))
@settings(max_examples=200, deadline=None)
def test_first_seen_ranks_against_a_dict(values):
    """Ranks in order of first appearance, checked against a dict filled value by value."""
    seen: dict[int, int] = {}
    want = [seen.setdefault(v, len(seen)) for v in values]
    assert arrays.first_seen_ranks(np.array(values, np.int64)).tolist() == want


@given(st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 6), max_size=200))
@settings(max_examples=200, deadline=None)
def test_unique_inverse_against_plain_python(values):
    """Distinct values sorted, each value's index among them, the first position of each (uint64 wide)."""
    got, inverse, first = arrays.unique_inverse(np.array(values, np.uint64))
    want = sorted(set(values))
    assert got.tolist() == want
    assert inverse.tolist() == [want.index(v) for v in values]
    assert first.tolist() == [values.index(v) for v in want]


@given(st.integers(-2**63, 2**63 - 1), st.lists(st.integers(0, 300), max_size=200), st.booleans())
@settings(max_examples=200, deadline=None)
def test_unique_and_distinct_inverse_of_values_in_a_short_range(low, offsets, spread):
    """Values near each other (grouped by counting), or spread wide (sorted), anywhere in int64."""
    values = [max(-2**63, min(2**63 - 1, low + (o << 40 if spread else o))) for o in offsets]
    got, inverse, first = arrays.unique_inverse(np.array(values, np.int64))
    distinct, inverse_only = arrays.distinct_inverse(np.array(values, np.int64))
    want = sorted(set(values))
    assert got.tolist() == distinct.tolist() == want
    assert inverse.tolist() == inverse_only.tolist() == [want.index(v) for v in values]
    assert first.tolist() == [values.index(v) for v in want]


@given(st.lists(st.tuples(st.integers(0, 9), st.integers(-2**56, 2**56)), max_size=100), st.booleans())
@settings(max_examples=200, deadline=None)
def test_group_sum_is_exact(rows, small):
    """float64 sums where they are exact (small values), np.add.at where a sum could pass 2**53."""
    rows = [(g, v % 1000 if small else v) for g, v in rows]
    groups = np.array([g for g, _ in rows], np.int64)
    values = np.array([v for _, v in rows], np.int64)
    want = [sum(v for g, v in rows if g == k) for k in range(10)]
    got = arrays.group_sum(groups, values, 10)
    assert got.dtype == np.int64 and got.tolist() == want
    floats = arrays.group_sum(groups, values.astype(np.float64) / 7, 10, np.float64)
    by_add_at = np.zeros(10)
    np.add.at(by_add_at, groups, values.astype(np.float64) / 7)
    assert floats.tolist() == by_add_at.tolist()  # the same additions in the same order


def test_group_sum_refuses_a_group_out_of_range():
    with pytest.raises(IndexError):
        arrays.group_sum(np.array([0, 3]), np.array([1, 1]), 3)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2**64 - 1) | st.just(0)), max_size=60),
       st.integers(1, 3))
@settings(max_examples=200, deadline=None)
def test_dense_rows_numbers_equal_rows_in_lexicographic_order(rows, width):
    """Rows equal in their first word but not the rest take the multi-key path; ids against sorted()."""
    rows = [r[:width] for r in rows]
    want = sorted(set(rows))
    got = arrays.dense_rows(np.array(rows, np.uint64).reshape(-1, width))
    assert got.tolist() == [want.index(r) for r in rows]


def test_dense_rows_of_small_fields_and_wide_ones():
    # --read-data's windows (extent, src, length): packed into one key, or sorted as rows where the
    # fields do not fit in 63 bits together
    for big in (0, 1 << 62):
        rows = [(3, 8192, 4096), (0, big, 4096), (3, 0, 4096), (3, 8192, 4096), (0, big, 100), (7, 0, 1)]
        got = arrays.dense_rows(np.array(rows, np.uint64))
        want = sorted(set(rows))
        assert got.tolist() == [want.index(r) for r in rows]
