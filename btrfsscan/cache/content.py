"""What each file page holds: content ids from the checksum tree or from hashed data. Pure computation.

The content models (``designs``) need, for every page of every inode
version (``PageLayout``), a *content id*: equal ids for pages the page cache
would hold with equal bytes: 0 is the zero page, -1 unknown (cached per
inode), 1.. the rest (bounded by the checksums and pages, not dense). They
are computed once per distinct mapping (``mappings.distinct_mappings``:
versions with the same size and segments hold the same bytes), so the cost
follows the distinct mappings, not the versions or the snapshots, and over
their pages with every multi-page hole compacted to one (``sparse``), so a
sparse file costs its items, not its i_size.

From the checksum tree (``content_source = "csum_tree"``; works on
btrfs-image dumps, which keep the tree) a page is the sequence of its
``P / S`` sectors, each keyed as:

* a sector of written, uncompressed data: the checksum of its on-disk bytes
  (the whole sector, also past EOF: the kernel writes the tail of the last
  sector as zeros); a checksum equal to that of a zero sector is the zero
  sector;
* holes, prealloc and the page past EOF: the zero sector;
* compressed data: (the extent's sequence of checksums of its compressed
  bytes, the decompressed sector): identical content is recognised only
  where it was compressed identically -- a lower bound on sharing;
* data with no checksum (nodatasum/NOCOW) or misaligned: unknown;
* an inline extent: its ``inline_hash`` (stored bytes when compressed),
  the rest of its sector zero; a page holding other sectors after it is the
  sequence of its sectors, the inline one keyed by that hash (so not equal
  to a page of the same bytes written as data); unknown on a btrfs-image
  dump, which zeroes inline data, and where EOF lies inside the inline data.

A page with any unknown sector is unknown; a page of zero sectors only is
the zero page. With crc32c the checksums are 32 bits: ``expected_false_merges``
estimates (birthday bound) how many distinct pages were merged by a
collision.

From the data (``content_source = "data"``): ``page_requests`` lists where
each page's bytes are, ``model.file_data.hash_pages`` reads and hashes them
(each extent once), and ``content_from_hashes`` turns the hashes into ids:
exact up to xxh3-128 collisions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..arrays import I64, dense_rows, distinct, distinct_inverse, group_ids, prefix, ranges, unique_inverse
from ..concurrency import Once, shared
from ..format.constants import CsumType
from ..model.content_hash import UNKNOWN_HASH, ZERO_PAGE_HASH
from ..model.csums import CsumTable
from ..model.file_data import INLINE_PIECE_DTYPE, PIECE_DTYPE, READ_EXTENT_DTYPE
from .layout import SEG_COMPRESSED, SEG_DATA, SEG_INLINE, PageLayout
from .mappings import DistinctMappings
from .sparse import CompactPages, compact_pages

UNKNOWN = -1
ZERO = 0
CSUM_TREE = "csum_tree"
DATA = "data"


@dataclass
class PageContent:
    """A content id for every page of the distinct mappings of a layout, their holes compacted
    (``pages.layout``, index ``pages.layout.base[g] + k``; page ``c`` stands for ``weight[c]`` pages, see
    ``sparse``: a compacted gap is the zero page, never unknown); version v's pages are those of
    ``mappings.of_version[v]``.

    Ids are bounded by the checksums and pages, not necessarily dense."""

    source: str
    page_size: int
    page_id: np.ndarray  # int64: ZERO, UNKNOWN or 1..
    mappings: DistinctMappings
    pages: CompactPages
    expected_false_merges: float = 0.0
    notes: list[str] = field(default_factory=list)
    _once: Once = field(default_factory=Once, repr=False, compare=False)

    @property
    def known(self) -> np.ndarray:
        return self.page_id != UNKNOWN

    @shared
    def weight(self) -> np.ndarray:
        """``pages.weight()`` (8 bytes a page, made once: every content design reads it)."""
        return self.pages.weight()

    @shared
    def page_mapping(self) -> np.ndarray:
        """The distinct mapping (index into ``pages.layout``) of each page (8 bytes a page, made once)."""
        layout = self.pages.layout
        return np.repeat(np.arange(layout.n_inodes), layout.npages)

    @shared
    def unknown_pages(self) -> int:
        """Pages (every (subvolume, inode) pair) whose content is unknown."""
        distinct = self.pages.layout  # a compacted gap is never unknown: every unknown page is one page
        return distinct.total(np.bincount(self.page_mapping[~self.known], minlength=distinct.n_inodes))


def _hash_words(hashes: np.ndarray) -> np.ndarray:
    """16-byte hashes as (n, 2) uint64."""
    return np.ascontiguousarray(hashes).view("<u8").reshape(-1, 2)


def _ids_of_hashes(hashes: np.ndarray) -> np.ndarray:
    """Content ids of page hashes: ZERO for the zero page's hash, UNKNOWN for UNKNOWN_HASH, 1.. otherwise."""
    words = _hash_words(hashes)
    ids = dense_rows(words) + 1
    zero = (words == _hash_words(np.frombuffer(ZERO_PAGE_HASH, "V16"))[0]).all(axis=1)
    unknown = (words == 0).all(axis=1)
    ids[zero | unknown] = 0
    return np.where(unknown, UNKNOWN, _renumber(ids))


def _renumber(ids: np.ndarray) -> np.ndarray:
    """ids (non-negative, bounded by their number) with gaps made dense, in order, 0 kept as 0."""
    present = np.zeros(int(ids.max(initial=0)) + 1, bool)
    present[ids] = True
    present[0] = False
    return np.cumsum(present)[ids]


@dataclass
class _InlineSegments:
    """A layout's inline segments: ``page`` (global index) and ``inode`` (version) of each, its ``inline_hash``,
    ``length`` (its bytes inside EOF), ``readable`` (it starts the file and its hash is known: its bytes can
    be placed in its page) and ``whole`` (readable, and the file not shorter than it: the hash is its page's
    content when nothing else lies in that page)."""

    page: np.ndarray
    inode: np.ndarray
    hash: np.ndarray
    length: np.ndarray
    readable: np.ndarray
    whole: np.ndarray


def _inline_segments(layout: PageLayout) -> _InlineSegments:
    sel = np.flatnonzero(layout.seg_kind == SEG_INLINE)
    inode = layout.seg_inode[sel]
    ext = layout.versions.extents
    rows = layout.seg_row[sel]
    hashes = ext["inline_hash"][rows]
    data_bytes = ext["num_bytes"][rows].astype(I64)
    readable = (layout.seg_start[sel] == 0) & ~(_hash_words(hashes) == 0).all(axis=1)
    return _InlineSegments(layout.base[inode] + layout.seg_start[sel] // layout.page_size, inode, hashes,
                           np.minimum(data_bytes, layout.size[inode]), readable,
                           readable & (layout.size[inode] >= data_bytes))


# --- from the checksum tree ---------------------------------------------------------------


def _sectors(layout: PageLayout, sel: np.ndarray, s: np.ndarray, e: np.ndarray,
             a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every sector of the pieces ``[s, e)`` (file bytes) of segments ``sel``, at address ``a`` (logical, or
    decompressed offset): its slot (global page * P/S + sector in page), segment, address of its first byte,
    whether the piece is sector-aligned, and how many of its bytes lie inside EOF where EOF cuts it (0: the
    whole sector is inside)."""
    S = layout.sectorsize
    per_page = layout.page_size // S
    aligned = (s % S == 0) & (a % S == 0) & layout.seg_valid[sel]
    first, last = s // S, -(-e // S)
    file_sector = ranges(first, last)
    which = np.repeat(np.arange(len(sel)), last - first)
    seg = sel[which]
    inode = layout.seg_inode[seg]
    slot = layout.base[inode] * per_page + file_sector
    addr = a[which] + file_sector * S - s[which]
    inside = layout.size[inode] - file_sector * S
    return slot, seg, addr, aligned[which], np.where(inside < S, inside, 0)


def _segments(layout: PageLayout, kind: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    sel = np.flatnonzero(layout.seg_kind == kind)
    return sel, layout.seg_start[sel], layout.seg_end[sel], layout.seg_addr[sel]


@dataclass
class _WholePages:
    """Pages wholly backed by one aligned data segment, inside EOF: keyed by their logical page.

    ``runs`` of ``count`` such pages start at global page ``page`` and
    logical address ``logical``; ``distinct`` lists each logical page once
    and ``index`` is where a run's first page is in the expansion of the
    distinct runs (``run_pages``), ``of_run_page`` its distinct page."""

    page: np.ndarray
    count: np.ndarray
    distinct: np.ndarray
    run_start: np.ndarray
    of_run_page: np.ndarray

    def global_pages(self) -> np.ndarray:
        return ranges(self.page, self.page + self.count)

    def distinct_of_pages(self) -> np.ndarray:
        """The distinct logical page (index into ``distinct``) of every page of ``global_pages``."""
        return self.of_run_page[ranges(self.run_start, self.run_start + self.count)]


def _whole_pages(layout: PageLayout, sel: np.ndarray, s: np.ndarray, e: np.ndarray,
                 a: np.ndarray) -> tuple[_WholePages, np.ndarray, np.ndarray]:
    """The whole pages of data segments ``sel`` (see ``_WholePages``), and per segment where its whole
    pages start and end (file bytes; equal where it has none)."""
    P, S = layout.page_size, layout.sectorsize
    inode = layout.seg_inode[sel]
    k0 = -(-s // P)
    k1 = np.minimum(e, layout.size[inode]) // P
    ok = layout.seg_valid[sel] & (s % S == 0) & (a % S == 0) & (k1 > k0)
    k1 = np.where(ok, k1, k0)
    runs = np.flatnonzero(ok)
    logical = a[runs] + k0[runs] * P - s[runs]
    count = (k1 - k0)[runs]
    # distinct runs first (snapshots' versions repeat them), then distinct logical pages among their pages
    order = np.lexsort((count, logical))
    new = np.ones(len(order), bool)
    new[1:] = (logical[order[1:]] != logical[order[:-1]]) | (count[order[1:]] != count[order[:-1]])
    run_of = np.empty(len(order), I64)
    run_of[order] = np.cumsum(new) - 1
    uniq = np.stack((logical[order[new]], count[order[new]]), axis=1).reshape(-1, 2)
    run_pages = ranges(np.zeros(len(uniq), I64), uniq[:, 1]) * P + np.repeat(uniq[:, 0], uniq[:, 1])
    # by sector number (every address is sector-aligned): neighbouring pages make a range short enough to count
    distinct_sectors, of_run_page = distinct_inverse(run_pages // S)
    distinct_pages = distinct_sectors * S
    run_start = prefix(uniq[:, 1])[:-1][run_of]
    whole = _WholePages(layout.base[inode[runs]] + k0[runs], count, distinct_pages, run_start,
                        of_run_page)
    return whole, k0 * P, k1 * P


def _cut_at_eof(values: np.ndarray, inside: np.ndarray, sectorsize: int) -> np.ndarray:
    """Sector keys with the EOF cut folded in: the page cache zero-fills past EOF, but the sector on disk
    may hold older bytes there (a truncate that did not rewrite it), so a cut sector is keyed by
    (its key, bytes inside EOF)."""
    return values * sectorsize + inside


def _compressed_extent_ids(layout: PageLayout, table: CsumTable, segs: np.ndarray) -> np.ndarray:
    """Per segment of ``segs`` (compressed), the id (0..) of its extent's (algorithm, checksums of the
    compressed bytes); -1 where a compressed sector has no checksum."""
    S = layout.sectorsize
    rows = layout.seg_row[segs]
    ext = layout.versions.extents
    db = ext["disk_bytenr"][rows].astype(I64)
    extents, inverse, first = unique_inverse(db)
    dnb = ext["disk_num_bytes"][rows][first].astype(I64)
    n_sectors = -(-dnb // S)
    located = table.locate(np.repeat(extents, n_sectors) + ranges(np.zeros(len(extents), I64), n_sectors) * S)
    per_extent = prefix(n_sectors)
    missing = np.add.reduceat(located < 0, per_extent[:-1]) > 0 if len(located) else np.zeros(len(extents), bool)
    values = np.where(located >= 0, table.value_ids[np.maximum(located, 0)], -1) if table.n_sectors \
        else np.full(len(located), -1, I64)
    # each extent's sequence: its algorithm, then its checksum ids
    algo = ext["compression"][rows][first].astype(I64)
    seq_start = prefix(n_sectors + 1)
    seq = np.empty(int(seq_start[-1]), I64)
    heads = seq_start[:-1]
    seq[heads] = algo
    body = np.ones(len(seq), bool)
    body[heads] = False
    seq[body] = values
    ids, _ = group_ids(seq_start, seq) if len(extents) else (np.zeros(0, I64), None)
    ids = np.where(missing, -1, ids)
    return ids[inverse]


def _key_data_sectors(layout: PageLayout, table: CsumTable, slots: np.ndarray,
                      unknown_page: np.ndarray) -> tuple[_WholePages, int]:
    """Key the sectors of data segments outside their whole pages in ``slots`` (a whole sector: its
    checksum's id, 1..; one EOF cuts: an id after those), mark pages with a sector of no checksum in
    ``unknown_page``; the whole pages (keyed later by logical page) and the ids used. (A function of its
    own: its temporaries, a few arrays per sector, are gone once it returns.)"""
    S, per_page = layout.sectorsize, layout.page_size // layout.sectorsize
    sel, s, e, a = _segments(layout, SEG_DATA)
    whole, w0, w1 = _whole_pages(layout, sel, s, e, a)
    # the rest of each data segment: before and after its whole pages
    has_whole = w1 > w0
    head_end = np.where(has_whole, w0, e)  # a segment without whole pages is all head
    tail = np.where(has_whole, w1, e)
    parts = [(sel, s, head_end, a), (sel, tail, e, a + (tail - s))]
    pieces = [np.concatenate(x) for x in zip(*parts)]
    keep = pieces[1] < pieces[2]
    slot, _, addr, aligned, inside = _sectors(layout, *(x[keep] for x in pieces))
    located = table.locate(addr)
    ok = aligned & (located >= 0)
    values = table.value_ids[np.maximum(located, 0)] if table.n_sectors else np.zeros(len(slot), I64)
    slots[slot[ok]] = values[ok]  # a whole sector: its checksum's id, 1..n_csum (0: the zero sector)
    n_data = int(table.value_ids.max(initial=0))
    cut = np.flatnonzero(ok & (inside > 0) & (values != 0))
    if len(cut):  # sectors EOF cuts: keyed by (checksum, bytes inside EOF), ids after the whole ones
        cut_keys, of_cut = distinct_inverse(_cut_at_eof(values[cut], inside[cut], S))
        slots[slot[cut]] = n_data + 1 + of_cut
        n_data += len(cut_keys)
    unknown_page[slot[~ok] // per_page] = True
    return whole, n_data


def _key_compressed_sectors(layout: PageLayout, table: CsumTable, slots: np.ndarray, unknown_page: np.ndarray,
                            n_data: int) -> None:
    """Key the sectors of compressed segments in ``slots`` by (their extent's checksums, decompressed
    sector), ids after the ``n_data`` used; mark pages with a sector of no checksum in ``unknown_page``."""
    S, per_page = layout.sectorsize, layout.page_size // layout.sectorsize
    slot, seg, addr, aligned, inside = _sectors(layout, *_segments(layout, SEG_COMPRESSED))
    if len(slot):
        segs, seg_index = distinct_inverse(seg)
        extent_id = _compressed_extent_ids(layout, table, segs)[seg_index]
        ok = aligned & (extent_id >= 0)
        decompressed_sector = addr // S
        width = int(decompressed_sector.max(initial=0)) + 1
        packed = (extent_id * width + decompressed_sector)[ok] * S + inside[ok]
        slots[slot[ok]] = n_data + 1 + distinct_inverse(packed)[1]
        unknown_page[slot[~ok] // per_page] = True


def content_from_csums(mappings: DistinctMappings, table: CsumTable, inline_data: bool = True) -> PageContent:
    """Content ids of every page from the checksum tree (see the module docstring), computed once per
    distinct mapping (``mappings.layout``).

    ``inline_data=False`` where the inline extents' bytes are not the file's
    (a btrfs-image dump zeroes them): inline pages are unknown then.
    """
    pages = compact_pages(mappings.layout)
    layout = pages.layout
    P, S = layout.page_size, layout.sectorsize
    notes: list[str] = []
    n_pages = int(layout.npages.sum())
    if P % S or table.sectorsize != S:
        notes.append(f"page size {P} is not a multiple of the sector size {S}: every page's content is unknown")
        return PageContent(CSUM_TREE, P, np.full(n_pages, UNKNOWN, I64), mappings, pages, 0.0, notes)
    per_page = P // S
    slots = np.zeros(n_pages * per_page, I64)  # ZERO: holes, prealloc, gaps, past EOF
    unknown_page = np.zeros(n_pages, bool)
    whole, n_data = _key_data_sectors(layout, table, slots, unknown_page)
    _key_compressed_sectors(layout, table, slots, unknown_page, n_data)

    # each distinct logical page of the whole pages: its sectors' checksum ids, once
    located = table.locate((whole.distinct[:, None] + np.arange(per_page) * S).reshape(-1))
    whole_keys = np.where(located >= 0, table.value_ids[np.maximum(located, 0)] if table.n_sectors else 0, 0)
    whole_keys = whole_keys.reshape(-1, per_page)
    whole_unknown = (located < 0).reshape(-1, per_page).any(axis=1)

    unknown_page |= ~_valid_kinds(layout, n_pages)
    grid = slots.reshape(n_pages, per_page)
    page_id = np.zeros(n_pages, I64)
    whole_page = whole.global_pages()
    nonzero = (grid != 0).any(axis=1)
    inline = _inline_segments(layout)
    inline_page = inline.page
    is_inline = np.zeros(n_pages, bool)
    is_inline[inline_page] = True
    # an inline page holding other sectors too (a page larger than a sector; a reflink to offset 4096 of a
    # small file keeps its inline extent): keyed by its sectors, the inline one by the inline hash (ids
    # above every other sector's); inline pages of nothing else get ids from their hashes below
    mixed = inline.whole & nonzero[inline_page] & inline_data
    top = int(slots.max(initial=0))
    inline_keys = _ids_of_hashes(inline.hash[mixed])
    grid[inline_page[mixed], 0] = np.where(inline_keys > 0, top + inline_keys, inline_keys)
    is_mixed = np.zeros(n_pages, bool)
    is_mixed[inline_page[mixed]] = True
    unknown_page[inline_page[~inline.whole]] = True  # not at offset 0, not hashed, or EOF inside the data
    unknown_page |= is_inline & nonzero & ~is_mixed
    keyed = nonzero & ~unknown_page & (~is_inline | is_mixed)
    keyed[whole_page] = False  # never set by the rest; keyed below by logical page
    rows = np.flatnonzero(keyed)
    w_rows = np.flatnonzero(~whole_unknown & (whole_keys != 0).any(axis=1))
    keys = np.concatenate((grid[rows], whole_keys[w_rows]))
    if per_page == 1:  # a page is one sector: its sector key is its id
        seq_ids = keys[:, 0] - 1
    elif len(keys):
        seq_ids, _ = group_ids(np.arange(len(keys) + 1) * per_page, keys.reshape(-1))
    else:
        seq_ids = np.zeros(0, I64)
    merges = _false_merges(table.csum_type, keys, seq_ids, n_data)
    del slots, grid, keys, located, whole_keys, nonzero, keyed, is_inline, is_mixed  # a few bytes a sector each
    page_id[rows] = seq_ids[:len(rows)] + 1
    distinct_id = np.zeros(len(whole.distinct), I64)  # ZERO where every sector is the zero sector
    distinct_id[w_rows] = seq_ids[len(rows):] + 1
    distinct_id[whole_unknown] = UNKNOWN
    page_id[whole_page] = distinct_id[whole.distinct_of_pages()]
    n_keyed = int(seq_ids.max(initial=-1)) + 1  # ids are bounded (by the checksums and pages), not dense
    if not inline_data:
        unknown_page[inline_page] = True
        notes.append("inline data is not in the input (a metadata dump zeroes it): inline pages are unknown")
    good_inline = inline.whole & ~unknown_page[inline_page] & ~mixed
    inline_ids = _ids_of_hashes(inline.hash[good_inline])
    page_id[inline_page[good_inline]] = np.where(inline_ids > 0, inline_ids + n_keyed, inline_ids)
    page_id[unknown_page] = UNKNOWN
    return PageContent(CSUM_TREE, P, page_id, mappings, pages, merges, notes)


def _valid_kinds(layout: PageLayout, n_pages: int) -> np.ndarray:
    """Per page: no segment of it had an address that overflowed (corrupt items read as unknown)."""
    P = layout.page_size
    bad = np.flatnonzero(~layout.seg_valid & ((layout.seg_kind == SEG_DATA) | (layout.seg_kind == SEG_COMPRESSED)))
    out = np.ones(n_pages, bool)
    first = layout.base[layout.seg_inode[bad]] + layout.seg_start[bad] // P
    last = layout.base[layout.seg_inode[bad]] + -(-layout.seg_end[bad] // P)
    out[ranges(first, last)] = False
    return out


def _false_merges(csum_type: CsumType, grid: np.ndarray, seq_ids: np.ndarray, n_data: int) -> float:
    """Expected number of distinct pages merged by checksum collisions (birthday bound).

    A page key made of ``w`` checksums of ``b`` bits each collides with
    another such key with probability ``2**-(b*w)``: over the ``n_w``
    distinct keys of ``w`` checksums, ``n_w (n_w - 1) / 2`` pairs. A
    compressed sector counts one checksum (its extent's shortest). Plus the
    chance a written sector's checksum equals the zero sector's.
    """
    bits = 8 * csum_type.size
    if not len(grid):
        return float(n_data) * 2.0 ** -bits
    first = unique_inverse(seq_ids)[2]  # one page of each distinct key (the ids have gaps)
    words = (grid[first] > 0).sum(axis=1)
    counts = np.bincount(words)
    sizes = np.flatnonzero(counts)
    counts = counts[sizes]
    pairs = counts.astype(np.float64) * (counts - 1) / 2
    return float((pairs * np.exp2(-bits * sizes.astype(np.float64))).sum() + n_data * 2.0 ** -bits)


# --- from the data --------------------------------------------------------------------------


@dataclass
class PageRequests:
    """What ``model.file_data.hash_pages`` must read and hash for a layout, and how to map the result back.

    Output page ``o`` is a distinct window of bytes; ``page_output[g]`` the
    output page of page ``g`` of ``pages.layout`` (the distinct mappings,
    holes compacted; -1: no bytes to read: zero or inline), ``unknown[g]``
    pages whose content cannot be known (misaligned or overflowing items, an
    inline extent not at offset 0 or that did not decompress). ``inline``:
    the inline extents whose bytes begin an output page holding more than
    them (``INLINE_PIECE_DTYPE``; the hashing reads each again).
    ``inline_page``/``inline_hash``: every inline segment's page and hash,
    the content of that page unless it is read.
    """

    mappings: DistinctMappings
    pages: CompactPages
    extents: np.ndarray  # READ_EXTENT_DTYPE
    pieces: np.ndarray  # PIECE_DTYPE
    n_outputs: int
    page_output: np.ndarray
    unknown: np.ndarray
    inline: np.ndarray
    inline_page: np.ndarray
    inline_hash: np.ndarray


def page_requests(mappings: DistinctMappings) -> PageRequests:
    """The pieces of every page backed by data or compressed extents, windows shared by several pages once.

    A page's content is its file bytes inside EOF (``i_size``, not rounded),
    zero-filled: each data or compressed segment contributes the part of it
    inside the page and inside EOF. Pages are those of the distinct mappings, holes compacted.
    """
    pages = compact_pages(mappings.layout)
    layout = pages.layout
    P = layout.page_size
    n_pages = int(layout.npages.sum())
    ext = layout.versions.extents
    sel = np.flatnonzero(((layout.seg_kind == SEG_DATA) | (layout.seg_kind == SEG_COMPRESSED)) & layout.seg_valid)
    inode = layout.seg_inode[sel]
    s = layout.seg_start[sel]
    e = np.minimum(layout.seg_end[sel], layout.size[inode])
    live = s < e
    sel, inode, s, e = sel[live], inode[live], s[live], e[live]
    rows = layout.seg_row[sel]
    compressed = layout.seg_kind[sel] == SEG_COMPRESSED
    db = ext["disk_bytenr"][rows].astype(I64)
    # distinct extents to read: by (disk_bytenr, compressed); a data segment's bytes from its extent's start
    key = db * 2 + compressed
    keys, extent_of, first = unique_inverse(key)
    extents = np.zeros(len(keys), READ_EXTENT_DTYPE)
    extents["disk_bytenr"] = db[first]
    extents["compression"] = np.where(compressed[first], ext["compression"][rows][first], 0)
    extents["ram_bytes"] = ext["ram_bytes"][rows][first]
    extents["disk_num_bytes"] = ext["disk_num_bytes"][rows][first]
    src0 = np.where(compressed, layout.seg_addr[sel], layout.seg_addr[sel] - db)

    # pages wholly inside one aligned data segment: one request per distinct logical page
    data = np.flatnonzero(~compressed)
    whole, w0, w1 = _whole_pages(layout, sel[data], s[data], e[data], layout.seg_addr[sel[data]])
    has_whole = w1 > w0
    cut_at, resume = s.copy(), e.copy()  # each segment: [s, cut_at) and [resume, e) are left to cut
    cut_at[data] = np.where(has_whole, w0, e[data])
    resume[data] = np.where(has_whole, w1, e[data])
    cut_at[compressed] = e[compressed]
    parts = np.concatenate((np.arange(len(sel)), np.arange(len(sel))))
    part_s, part_e = np.concatenate((s, resume)), np.concatenate((cut_at, e))
    live = part_s < part_e
    parts, part_s, part_e = parts[live], part_s[live], part_e[live]
    src0, inode = src0[parts] + part_s - s[parts], inode[parts]
    extent_of, s, e = extent_of[parts], part_s, part_e
    sel = sel[parts]

    # cut each remaining piece at page boundaries
    p0, p1 = s // P, -(-e // P)
    which = np.repeat(np.arange(len(sel)), p1 - p0)
    page_in_file = ranges(p0, p1)
    lo = np.maximum(s[which], page_in_file * P)
    hi = np.minimum(e[which], (page_in_file + 1) * P)
    pieces = np.zeros(len(which), PIECE_DTYPE)
    global_page = layout.base[inode[which]] + page_in_file
    pieces["extent"] = extent_of[which]
    pieces["src"] = src0[which] + lo - s[which]
    pieces["dst"] = lo - page_in_file * P
    pieces["length"] = hi - lo

    unknown = ~_valid_kinds(layout, n_pages)
    whole_page = whole.global_pages()
    has_piece = np.zeros(n_pages, bool)
    has_piece[global_page] = True
    has_piece[whole_page] = True
    # an inline page with more than its data inside EOF (other extents, or an EOF inside the inline data) is
    # assembled: the inline extent's bytes are read again (``inline``), the other pieces placed after them
    inline = _inline_segments(layout)
    assembled = inline.readable & (has_piece[inline.page] | ~inline.whole)
    unknown[inline.page[~inline.readable]] = True
    with_inline = np.zeros(n_pages, bool)
    with_inline[inline.page[assembled]] = True

    # pages of one piece at offset 0 are windows: equal windows read and hashed once
    n_of = np.bincount(global_page, minlength=n_pages)
    window = (n_of[global_page] == 1) & (pieces["dst"] == 0) & ~with_inline[global_page]
    w_key = np.stack((pieces["extent"][window], pieces["src"][window], pieces["length"][window]), axis=1)
    w_id = dense_rows(w_key.astype(np.uint64))
    n_windows = int(w_id.max(initial=-1)) + 1
    page_output = np.full(n_pages, -1, I64)
    page_output[global_page[window]] = w_id
    multi_pages = distinct(np.concatenate((global_page[~window], inline.page[assembled])))
    page_output[multi_pages] = n_windows + np.arange(len(multi_pages))
    keep = ~window
    if window.any():
        _, _, first_of_window = unique_inverse(w_id)
        keep[np.flatnonzero(window)[first_of_window]] = True
    pieces["page"] = page_output[global_page]
    n_out = n_windows + len(multi_pages)
    # the distinct logical pages of whole pages, after those: (extent holding it, offset in it, P bytes)
    of_logical = np.searchsorted(keys, whole.distinct * 2, side="right") - 1
    logical = np.zeros(len(whole.distinct), PIECE_DTYPE)
    logical["page"] = n_out + np.arange(len(whole.distinct))
    logical["extent"] = of_logical
    logical["src"] = whole.distinct - extents["disk_bytenr"][of_logical].astype(I64)
    logical["length"] = P
    page_output[whole_page] = n_out + whole.distinct_of_pages()
    requests = np.zeros(int(assembled.sum()), INLINE_PIECE_DTYPE)
    at = inline.inode[assembled]
    requests["page"] = page_output[inline.page[assembled]]
    requests["subvol"], requests["ino"] = layout.subvol[at], layout.ino[at]
    requests["length"] = inline.length[assembled]
    requests["inline_hash"] = inline.hash[assembled]
    return PageRequests(mappings, pages, extents, np.concatenate((pieces[keep], logical)),
                        n_out + len(whole.distinct), page_output, unknown, requests, inline.page, inline.hash)


def content_from_hashes(requests: PageRequests, hashes: np.ndarray, known: np.ndarray) -> PageContent:
    """Content ids of every page from the hashes ``hash_pages`` returned for ``requests``; inline pages from
    their ``inline_hash`` (exact when the fs trees were scanned with ``decompress_inline``)."""
    layout = requests.pages.layout
    page_hashes = np.zeros(int(layout.npages.sum()), "V16")
    page_hashes[:] = ZERO_PAGE_HASH
    page_hashes[requests.inline_page] = requests.inline_hash
    out = requests.page_output
    read = out >= 0  # assembled inline pages among them
    page_hashes[read] = hashes[out[read]]
    unknown = requests.unknown.copy()
    unknown[read] |= ~known[out[read]]
    page_hashes[unknown] = UNKNOWN_HASH
    return PageContent(DATA, layout.page_size, _ids_of_hashes(page_hashes), requests.mappings, requests.pages)


# --- the sources a run passes to the models (``sources={"content": ...}``) ---------------------


class ContentSource(Protocol):
    """Where a run's content ids come from; ``name`` is ``CSUM_TREE`` or ``DATA``."""

    name: str

    def prepare(self) -> None:
        """Whatever needs no page layout (``cache.analyze`` runs it while it builds the layout)."""

    def page_content(self, mappings: DistinctMappings) -> PageContent: ...


@dataclass
class CsumTreeContent:
    """Content ids from the checksum tree (``inline_data=False`` on a metadata dump)."""

    table: CsumTable
    inline_data: bool = True
    name: str = CSUM_TREE

    def prepare(self) -> None:
        self.table.value_ids  # noqa: B018  the ids of the checksum values (a sort of every checksum)

    def page_content(self, mappings: DistinctMappings) -> PageContent:
        return content_from_csums(mappings, self.table, self.inline_data)


@dataclass
class DataContent:
    """Content ids from the file data: ``hash_requests(requests)`` reads and hashes what ``page_requests``
    lists (``model.file_data.hash_pages``) and returns (hashes, known)."""

    hash_requests: Callable[[PageRequests], tuple[np.ndarray, np.ndarray]]
    name: str = DATA

    def prepare(self) -> None:
        pass  # what it reads follows from the layout

    def page_content(self, mappings: DistinctMappings) -> PageContent:
        requests = page_requests(mappings)
        hashes, known = self.hash_requests(requests)
        return content_from_hashes(requests, hashes, known)
