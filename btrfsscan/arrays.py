"""numpy building blocks shared by the filesystem model and the page-cache models.

Bulk per-inode and per-extent data lives in column arrays; these helpers do
the grouped and segmented operations on them (sums, running maxima, ranges,
grouping equal sequences) without a Python loop per row.
"""

from __future__ import annotations

import numpy as np

I64 = np.int64


#: float64 holds every integer below this exactly.
_EXACT_FLOAT = 2 ** 53


def group_sum(groups: np.ndarray, values: np.ndarray, n: int, dtype=I64) -> np.ndarray:
    """``out[g]`` = sum of ``values`` whose group is ``g``, for ``g < n``.

    ``np.bincount`` adds in float64, in element order as ``np.add.at`` does
    but several times faster: the same floats, and exact integers while no
    partial sum can reach 2**53 (bounded by the largest magnitude times the
    count); ``np.add.at`` otherwise.
    """
    if not len(groups):
        return np.zeros(n, dtype)
    integral = np.issubdtype(dtype, np.integer)
    if integral and max(-int(values.min()), int(values.max())) * len(values) >= _EXACT_FLOAT:
        out = np.zeros(n, dtype)
        np.add.at(out, groups, values.astype(dtype, copy=False))
        return out
    out = np.bincount(groups, values.astype(np.float64, copy=False), n)
    if len(out) != n:
        raise IndexError(f"group {len(out) - 1} out of bounds for {n} groups")
    return out.astype(dtype, copy=False)


def prefix(values: np.ndarray) -> np.ndarray:
    """Cumulative sums with a leading 0: ``sum(values[a:b]) == p[b] - p[a]``."""
    out = np.zeros(len(values) + 1, values.dtype if values.dtype != bool else I64)
    np.cumsum(values, out=out[1:])
    return out


def segmented_cummax(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Running maximum of ``values``, restarting where ``groups`` (non-decreasing) changes.

    Ranks of (group, value) pairs: at position i the largest rank seen so far
    belongs to i's own group (every earlier group ranks lower), so the running
    maximum of ranks names the largest value of the group so far.
    """
    n = len(values)
    if n == 0:
        return values.copy()
    order = np.lexsort((values, groups))
    rank = np.empty(n, I64)
    rank[order] = np.arange(n, dtype=I64)
    return values[order[np.maximum.accumulate(rank)]]


def run_bounds(first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the first and last element of each run, given a 'starts a run' mask."""
    firsts = np.flatnonzero(first)
    lasts = np.empty_like(firsts)
    if len(firsts):
        lasts[:-1] = firsts[1:] - 1
        lasts[-1] = len(first) - 1
    return firsts, lasts


def first_seen_ranks(values: np.ndarray) -> np.ndarray:
    """Each of ``values`` (non-negative integers, bounded) replaced by the rank of its first appearance:
    0 for the first distinct value met, 1 for the next, ... Linear in the values and their bound (no sort)."""
    bound = int(values.max(initial=-1)) + 1
    first = np.full(bound, len(values), I64)
    np.minimum.at(first, values, np.arange(len(values), dtype=I64))
    is_first = np.zeros(len(values), bool)
    is_first[first[values]] = True
    rank = np.empty(bound, I64)
    rank[values[is_first]] = np.arange(int(is_first.sum()), dtype=I64)
    return rank[values]


def ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(starts[i], ends[i])`` over i (empty ranges allowed)."""
    starts = np.asarray(starts, I64)
    lengths = np.maximum(np.asarray(ends, I64) - starts, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, I64)
    offsets = np.repeat(starts - prefix(lengths)[:-1], lengths)
    return offsets + np.arange(total, dtype=I64)


def distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by sorting: numpy's hash-based unique is several times slower on large arrays."""
    out = np.sort(values)
    if len(out) > 1:
        out = out[np.concatenate(([True], out[1:] != out[:-1]))]
    return out


def _dense_span(values: np.ndarray) -> tuple[int, int] | None:
    """``(low, high - low + 1)`` of integer ``values`` (non-empty) that lie in a range at most about twice
    as long as there are of them (ids, indices, neighbouring addresses): those are grouped by counting, in
    linear time, instead of by a sort; None otherwise."""
    if values.dtype.kind not in "iu":
        return None
    low, high = int(values.min()), int(values.max())
    return (low, high - low + 1) if high - low < 2 * len(values) + 4096 else None


def _sorted_runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An unstable sort of ``values`` (non-empty, 1-D): ``(order, ordered, starts)``, ``starts`` marking the
    first of each run of equal values."""
    order = np.argsort(values)
    ordered = values[order]
    starts = np.empty(len(values), bool)
    starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    return order, ordered, starts


def _inverse(order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per original position, the index of its run (``_sorted_runs``)."""
    inverse = np.empty(len(order), I64)
    inverse[order] = np.cumsum(starts, dtype=I64) - 1
    return inverse


def _counted(values: np.ndarray, low: int, span: int) -> tuple[np.ndarray, np.ndarray]:
    """``distinct_inverse`` of values in ``[low, low + span)``, by marking which occur."""
    offsets = values - values.dtype.type(low) if low else values
    present = np.zeros(span, bool)
    present[offsets] = True
    distinct = np.flatnonzero(present).astype(values.dtype, copy=False)
    if low:
        distinct += values.dtype.type(low)
    return distinct, (np.cumsum(present, dtype=I64) - 1)[offsets]


def distinct_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of a 1-D integer array, by counting (values in a short
    range) or an unstable sort."""
    values = np.asarray(values).reshape(-1)
    if not len(values):
        return values.copy(), np.zeros(0, I64)
    span = _dense_span(values)
    if span is not None:
        return _counted(values, *span)
    order, ordered, starts = _sorted_runs(values)
    return ordered[starts], _inverse(order, starts)


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(values, return_index=True, return_inverse=True)`` of a 1-D integer array, as
    ``(distinct, inverse, first)``.

    numpy's unique sorts stably (a mergesort) to find first occurrences; counting (values in a short
    range) or an unstable sort plus the smallest original index of each run gives the same answer
    several times faster.
    """
    values = np.asarray(values).reshape(-1)
    if not len(values):
        return values.copy(), np.zeros(0, I64), np.zeros(0, I64)
    span = _dense_span(values)
    if span is not None:
        distinct, inverse = _counted(values, *span)
        first = np.full(len(distinct), len(values), I64)
        np.minimum.at(first, inverse, np.arange(len(values), dtype=I64))
        return distinct, inverse, first
    order, ordered, starts = _sorted_runs(values)
    run_starts = np.flatnonzero(starts)
    return ordered[run_starts], _inverse(order, starts), np.minimum.reduceat(order, run_starts).astype(I64, copy=False)


def dense_rows(words: np.ndarray) -> np.ndarray:
    """Dense ids (0..) of equal rows of a 2-D uint64 array, numbered in the rows' lexicographic order.

    Rows whose words fit in 63 bits together (small fields) are packed into one key. Wider rows are
    hashes or checksums, where equal first words almost always mean equal rows: one unstable sort by
    the first word then gives that order, and numpy's stable multi-key sort (several times slower)
    runs only when it does not.
    """
    if not len(words):
        return np.zeros(0, I64)
    widths = [int(column.max()).bit_length() for column in words.T]
    if sum(widths) <= 63:
        key = words[:, 0].astype(I64)
        for column, width in zip(words.T[1:], widths[1:]):
            key = (key << width) | column.astype(I64)
        return distinct_inverse(key)[1]
    order = np.argsort(words[:, 0])
    ordered = words[order]
    new = np.ones(len(words), bool)
    np.not_equal(ordered[1:, 0], ordered[:-1, 0], out=new[1:])
    differ = (ordered[1:, 1:] != ordered[:-1, 1:]).any(axis=1)
    if differ[~new[1:]].any():
        order = np.lexsort(words.T[::-1])
        ordered = words[order]
        new[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    out = np.empty(len(words), I64)
    out[order] = np.cumsum(new) - 1
    return out


def take_fields(table: np.ndarray, index: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """``table[list(names)][index]`` as a packed table: only the columns a caller reads, gathered one by one."""
    out = np.empty(len(index), np.dtype([(name, table.dtype.fields[name][0]) for name in names]))
    for name in names:
        out[name] = table[name][index]
    return out


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a well-spread 64-bit hash of each value (wrapping arithmetic)."""
    return _mix_in_place(x.astype(np.uint64))


def _mix_in_place(x: np.ndarray) -> np.ndarray:
    """``_mix`` of a uint64 array, computed in it (one temporary at a time)."""
    x += np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def take_groups(starts: np.ndarray, values: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups ``ids`` of the sequences ``values[starts[i]:starts[i+1]]``, as starts and values of their own."""
    ids = np.asarray(ids, I64)
    sizes = starts[ids + 1] - starts[ids]
    return prefix(sizes), values[ranges(starts[ids], starts[ids] + sizes)]


def distinct_groups(starts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``group_ids``, with the distinct sequences themselves (starts and values, in id order)."""
    ids, first = group_ids(starts, values)
    return (ids, *take_groups(np.asarray(starts, I64), values, first))


def group_ids(starts: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ids of equal sequences ``values[starts[i]:starts[i+1]]`` (non-empty groups).

    Returns ``(ids, first)``: ``ids[i]`` the id of group i, ``first[j]`` the
    first group with id j. Groups are hashed position by position, then every
    group is compared element by element with the first group of its hash, so
    the result is exact; a hash collision (never seen) takes a slower path.
    """
    starts = np.asarray(starts, I64)
    n = len(starts) - 1
    if n <= 0:
        return np.zeros(0, I64), np.zeros(0, I64)
    sizes = np.diff(starts)
    values = np.asarray(values, I64)
    # one mix per element, of (value, position in its group), computed in place to keep memory low: the
    # result is checked element by element below, the hash only has to spread
    h = np.repeat(-starts[:-1], sizes).view(np.uint64)
    h += np.arange(len(values), dtype=np.uint64)
    h *= np.uint64(0xD6E8FEB86659FD93)
    h ^= values.view(np.uint64)
    group_hash = np.add.reduceat(_mix_in_place(h), starts[:-1]) if len(h) else np.zeros(n, np.uint64)
    del h
    _, ids, first = unique_inverse(_mix(group_hash ^ _mix(sizes)))
    rep = first[ids]
    if (sizes[rep] == sizes).all():
        same = np.repeat(starts[rep] - starts[:-1], sizes)
        same += np.arange(len(values), dtype=I64)  # each element's counterpart in its representative
        if (values == values[same]).all():
            return ids, first
    table: dict[bytes, int] = {}
    out = np.empty(n, I64)
    firsts: list[int] = []
    for g in range(n):
        key = values[starts[g]:starts[g + 1]].tobytes()
        if key not in table:
            table[key] = len(firsts)
            firsts.append(g)
        out[g] = table[key]
    return out, np.array(firsts, I64)
