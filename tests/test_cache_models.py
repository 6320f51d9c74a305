"""Tests of the page-cache models (btrfsscan.cache) over column tables.

Hand-made tables with every figure worked out by hand in comments, for page
sizes 4K/16K/64K (sector size 4K), and a hypothesis comparison of the interval
implementation against a brute-force per-byte reference written here (tiny
sizes: sector 1..4 bytes, pages 1..8 bytes), for every model, the by-kind
breakdown, per-inode, per-subvolume, pairwise and per-extent figures. The
per_inode rule is also checked against kernel fincore measurements of the
fixture images (parsed from their dump-tree.txt).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from support import facts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btrfsscan.cache import per_subvolume
from btrfsscan.cache.analyze import analyze
from btrfsscan.cache.designs.rfc_as_posted import applies as rfc_applies
from btrfsscan.cache.kinds import KINDS
from btrfsscan.model.tables import EXTENT_DTYPE, INODE_DTYPE, FileTables, LeafTables

K = 4096  # sector size
P4, P16, P64 = 4096, 16384, 65536
KiB = 1024
MiB = 1 << 20
REGF, DIRF, LNKF = 0o100644, 0o040755, 0o120777
INLINE, REG, PREALLOC = 0, 1, 2
ZSTD = 3


# --- building tables ---------------------------------------------------------------


def tables(inodes, extents) -> FileTables:
    """``inodes``: (subvol, ino, size[, nlink[, mode]]); ``extents``: dicts of EXTENT_DTYPE fields."""
    ino = np.zeros(len(inodes), INODE_DTYPE)
    for n, row in enumerate(inodes):
        sv, i, size, *rest = row
        ino[n]["subvol"], ino[n]["ino"], ino[n]["size"] = sv, i, size
        ino[n]["nlink"] = rest[0] if rest else 1
        ino[n]["mode"] = rest[1] if len(rest) > 1 else REGF
    ext = np.zeros(len(extents), EXTENT_DTYPE)
    for n, e in enumerate(extents):
        e = dict(e)
        e.setdefault("type", REG)
        if e["type"] != INLINE:
            e.setdefault("disk_num_bytes", e.get("offset", 0) + e["num_bytes"])
            e.setdefault("ram_bytes", e["disk_num_bytes"])
        for k, v in e.items():
            ext[n][k] = v
    return FileTables(ino, ext)


def shared_leaves(t: FileTables, seed: int = 0) -> LeafTables:
    """The rows of ``t`` cut into leaves the way snapshots share them.

    Each subvolume's rows, in key order, are cut where a hash of the row's
    content says so (cuts fall inside an inode's rows too); leaves with the
    same rows are stored once and shared by every subvolume holding them.
    """
    blank = lambda rows: [bytes(r.tobytes()) for r in rows]  # noqa: E731
    per_sv = defaultdict(list)
    inodes, extents = t.inodes.copy(), t.extents.copy()
    inodes["subvol"], extents["subvol"] = 0, 0
    for n in np.lexsort((t.inodes["ino"], t.inodes["subvol"])):
        per_sv[int(t.inodes["subvol"][n])].append((int(t.inodes["ino"][n]), 0, n))
    for n in np.lexsort((t.extents["ino"], t.extents["subvol"])):
        per_sv[int(t.extents["subvol"][n])].append((int(t.extents["ino"][n]), 1, n))
    leaf_index: dict[bytes, int] = {}
    leaf_rows: list[tuple[list[int], list[int]]] = []
    subvol_leaves: list[list[int]] = []
    for sv in sorted(per_sv):
        rows = sorted(per_sv[sv], key=lambda r: (r[0], r[1]))
        cuts, current = [], ([], [])
        for ino, kind, n in rows:
            (current[kind]).append(n)
            content = (inodes if kind == 0 else extents)[n].tobytes()
            if hash((content, seed)) % 3 == 0:
                cuts.append(current)
                current = ([], [])
        cuts.append(current)
        ids = []
        for ino_rows, ext_rows in cuts:
            key = b"".join(blank(inodes[ino_rows])) + b"|" + b"".join(blank(extents[ext_rows]))
            if key not in leaf_index:
                leaf_index[key] = len(leaf_rows)
                leaf_rows.append((ino_rows, ext_rows))
            ids.append(leaf_index[key])
        subvol_leaves.append(ids)

    def starts(which: int) -> np.ndarray:
        return np.concatenate(([0], np.cumsum([len(r[which]) for r in leaf_rows]))).astype(np.int64)

    return LeafTables(
        inodes[[n for r in leaf_rows for n in r[0]]].astype(INODE_DTYPE),
        extents[[n for r in leaf_rows for n in r[1]]].astype(EXTENT_DTYPE),
        starts(0), starts(1), np.arange(len(leaf_rows), dtype=np.uint64), np.array(sorted(per_sv), np.uint64),
        np.concatenate(([0], np.cumsum([len(x) for x in subvol_leaves]))).astype(np.int64),
        np.array([i for x in subvol_leaves for i in x], np.int64))


def assert_same_analysis(a, b) -> None:
    """Every figure of two analyses equal (fair shares to rounding)."""
    assert pages(a) == pages(b) and a.by_kind == b.by_kind and (a.inodes, a.files) == (b.inodes, b.files)
    sa, sb = a.subvolumes, b.subvolumes
    for name in ("ids", "inodes", "files", "per_inode_pages", "eligible_pages", "exclusive_keys", "shared_keys"):
        assert getattr(sa, name).tolist() == getattr(sb, name).tolist(), name
    assert np.allclose(sa.saved_pages, sb.saved_pages) and sa.shares_with == sb.shares_with
    assert a.top_extents == b.top_extents
    assert [(f.subvol, f.ino, f.pages, f.eligible_pages) for f in a.top_files] == \
        [(f.subvol, f.ino, f.pages, f.eligible_pages) for f in b.top_files]
    assert [f.saved_pages for f in a.top_files] == pytest.approx([f.saved_pages for f in b.top_files])


def item(sv, ino, fo, nb, db, off=0, **kw):
    return dict(subvol=sv, ino=ino, file_offset=fo, num_bytes=nb, disk_bytenr=db, offset=off, **kw)


#: The models these cases count by hand; the content models are counted in test_designs.py.
EXTENT_MODELS = ("per_inode", "shared_extent", "shared_extent_compressed", "rfc_as_posted")


def pages(a):
    return {name: a.models[name].pages for name in EXTENT_MODELS}


# --- brute-force reference ------------------------------------------------------------


@dataclass
class Reference:
    per_inode: int = 0
    shared_extent: int = 0
    shared_extent_compressed: int = 0
    by_kind: Counter = field(default_factory=Counter)
    inode_pages: dict = field(default_factory=dict)
    inode_eligible: dict = field(default_factory=dict)
    inode_shared: dict = field(default_factory=dict)
    inode_saved: dict = field(default_factory=dict)
    subvol_keys: dict = field(default_factory=dict)
    subvol_exclusive: dict = field(default_factory=dict)
    subvol_shared: dict = field(default_factory=dict)
    subvol_pages: dict = field(default_factory=dict)
    subvol_eligible: dict = field(default_factory=dict)
    pairs: dict = field(default_factory=dict)
    extent_file_pages: dict = field(default_factory=dict)
    extent_keys: dict = field(default_factory=dict)


def reference(inodes, extents, P: int, S: int) -> Reference:
    """Every figure by walking every byte of every page (definitions of models.py's docstring)."""
    ref = Reference()
    first_rows = {}
    for row in inodes:
        first_rows.setdefault((int(row["subvol"]), int(row["ino"])), row)
    regular = {k: r for k, r in first_rows.items() if (int(r["mode"]) & 0o170000) == 0o100000}
    items = defaultdict(list)
    data_extents = set()
    for n, e in enumerate(extents):
        key = (int(e["subvol"]), int(e["ino"]))
        if key not in regular or int(e["type"]) > PREALLOC:
            continue
        items[key].append((int(e["file_offset"]), n, e))
        if int(e["type"]) == REG and int(e["compression"]) == 0 and int(e["disk_bytenr"]) != 0:
            data_extents.add(int(e["disk_bytenr"]))
    key_pages = defaultdict(list)  # logical page -> [(subvol, ino) of each file page mapping it]
    ckeys = Counter()
    page_info = {}
    for key in sorted(regular):
        size = int(regular[key]["size"])
        npages = -(-size // P)
        end = min(-(-size // S) * S, npages * P)
        its = [e for _, _, e in sorted(items[key], key=lambda t: (t[0], t[1]))]

        def at(x):
            for e in its:  # the first item in (file_offset, table order) mapping byte x wins
                fo, nb = int(e["file_offset"]), int(e["num_bytes"])
                if fo <= x < fo + nb:
                    t, db, off = int(e["type"]), int(e["disk_bytenr"]), int(e["offset"])
                    if t == INLINE:
                        return ("I",)
                    if db == 0:
                        return ("H",)
                    if t == PREALLOC:
                        return ("R",)
                    if int(e["compression"]):
                        return ("C", db, off + x - fo)
                    return ("D", db + off + x - fo)
            return ("H",)

        ref.per_inode += npages
        ref.inode_pages[key] = npages
        info = []
        for k in range(npages):
            m = [at(x) for x in range(k * P, min((k + 1) * P, end))]
            cats = {c[0] for c in m}
            f = m[0]
            if cats == {"D"} and all(c[1] == f[1] + i for i, c in enumerate(m)) and f[1] % P == 0:
                info.append(("key", f[1] // P))
                key_pages[f[1] // P].append(key)
                continue
            if cats == {"C"} and all(c[1] == f[1] and c[2] == f[2] + i for i, c in enumerate(m)) and f[2] % P == 0:
                ckeys[(f[1], f[2] // P)] += 1
            for kind, cat in (("inline", "I"), ("compressed", "C"), ("unaligned", "D"), ("prealloc", "R")):
                if cat in cats:
                    info.append(("kind", kind))
                    break
            else:
                info.append(("kind", "hole"))
        page_info[key] = info
    mult = {k: len(v) for k, v in key_pages.items()}
    for key, info in page_info.items():
        elig = shared = 0
        saved = 0.0
        for what, val in info:
            if what == "key":
                elig += 1
                shared += mult[val] >= 2
                ref.by_kind["regular_shared" if mult[val] >= 2 else "regular_exclusive"] += 1
                saved += 1 - 1 / mult[val]
            else:
                ref.by_kind[val] += 1
        ref.inode_eligible[key], ref.inode_shared[key], ref.inode_saved[key] = elig, shared, saved
    ref.shared_extent = ref.per_inode - sum(mult.values()) + len(mult)
    ref.shared_extent_compressed = ref.shared_extent - sum(ckeys.values()) + len(ckeys)
    for (sv, ino), n in ref.inode_pages.items():
        ref.subvol_pages[sv] = ref.subvol_pages.get(sv, 0) + n
        ref.subvol_eligible[sv] = ref.subvol_eligible.get(sv, 0) + ref.inode_eligible[(sv, ino)]
        ref.subvol_keys.setdefault(sv, set())
    for k, owners in key_pages.items():
        for sv, _ in owners:
            ref.subvol_keys[sv].add(k)
    for sv, keys in ref.subvol_keys.items():
        others = set().union(*[v for s, v in ref.subvol_keys.items() if s != sv])
        ref.subvol_exclusive[sv] = len(keys - others)
        ref.subvol_shared[sv] = len(keys & others)
    for a in ref.subvol_keys:
        for b in ref.subvol_keys:
            if a < b:
                ref.pairs[(a, b)] = len(ref.subvol_keys[a] & ref.subvol_keys[b])
    starts = sorted(data_extents)
    for k, owners in key_pages.items():
        below = [d for d in starts if d <= k * P]
        if below:  # a key belongs to the data extent holding its first byte
            ref.extent_file_pages[below[-1]] = ref.extent_file_pages.get(below[-1], 0) + len(owners)
            ref.extent_keys[below[-1]] = ref.extent_keys.get(below[-1], 0) + 1
    return ref


def check_against_reference(t: FileTables, P: int, S: int) -> None:
    a = analyze(t, P, facts(S), top=1000)
    ref = reference(t.inodes, t.extents, P, S)
    assert a.models["per_inode"].pages == ref.per_inode
    assert a.models["shared_extent"].pages == ref.shared_extent
    assert a.models["shared_extent_compressed"].pages == ref.shared_extent_compressed
    assert a.by_kind == {k: ref.by_kind.get(k, 0) for k in KINDS}
    lay = a.layout
    for i in range(lay.n_inodes):
        key = (int(lay.subvol[i]), int(lay.ino[i]))
        assert int(lay.npages[i]) == ref.inode_pages[key]
        assert int(a.shared.inode_eligible[i]) == ref.inode_eligible[key]
        assert int(a.shared.inode_shared[i]) == ref.inode_shared[key]
        assert a.shared.inode_saved[i] == pytest.approx(ref.inode_saved[key], abs=1e-9)
    sv = a.subvolumes
    for n, sid in enumerate(sv.ids):
        sid = int(sid)
        assert int(sv.per_inode_pages[n]) == ref.subvol_pages.get(sid, 0)
        assert int(sv.eligible_pages[n]) == ref.subvol_eligible.get(sid, 0)
        assert int(sv.exclusive_keys[n]) == ref.subvol_exclusive.get(sid, 0)
        assert int(sv.shared_keys[n]) == ref.subvol_shared.get(sid, 0)
        expected = sorted(
            ((b if a_ == sid else a_), v) for (a_, b), v in ref.pairs.items() if sid in (a_, b) and v > 0
        )
        expected = sorted(expected, key=lambda t: (-t[1], t[0]))[:3]
        assert sv.shares_with[n] == expected
    a_, b_, both = sv.pairs  # every pair, as the sharing matrix lists them
    assert {(int(sv.ids[x]), int(sv.ids[y])): int(k) for x, y, k in zip(a_, b_, both)} == {
        pair: v for pair, v in ref.pairs.items() if v > 0}
    # the same rows cut into leaves that subvolumes share (as snapshots do) give the same figures
    assert_same_analysis(analyze(shared_leaves(t), P, facts(S), top=1000), a)
    # additivity: unshareable + exclusive per subvolume, plus keys of >= 2 subvolumes
    multi = len(set().union(*[set()] + [k for k in ref.subvol_keys.values()])) - int(sv.exclusive_keys.sum())
    assert int(sv.unshareable_pages.sum() + sv.exclusive_keys.sum()) + multi == ref.shared_extent
    got = {e.logical: (e.file_pages, e.cached_pages) for e in a.top_extents}
    want = {d: (ref.extent_file_pages[d], ref.extent_keys[d]) for d in ref.extent_keys
            if ref.extent_file_pages[d] > ref.extent_keys[d]}
    assert got == want
    assert sum(f.saved_pages * (1 + f.snapshot_copies) for f in a.top_files) == pytest.approx(
        ref.per_inode - ref.shared_extent, abs=1e-6)  # each row: one version, its copies save as much


# --- hand-made tables ----------------------------------------------------------------------


@pytest.mark.parametrize("P", [P4, P16, P64])
def test_misaligned_partial_reflink(P):
    # A: 256K, one extent at 1M. B: 128K cloned from A's [4K, 132K): offset 4K.
    t = tables([(5, 257, 256 * KiB), (5, 258, 128 * KiB)],
               [item(5, 257, 0, 256 * KiB, MiB, disk_num_bytes=256 * KiB), item(5, 258, 0, 128 * KiB, MiB, 4 * KiB, disk_num_bytes=256 * KiB)])
    a = analyze(t, P, facts(K))
    if P == P4:
        # A 64 pages keys 256..320, B 32 pages keys 257..289: 96 pages, 64 distinct keys
        assert pages(a) == {"per_inode": 96, "shared_extent": 64, "shared_extent_compressed": 64, "rfc_as_posted": 64}
        assert a.by_kind["regular_shared"] == 64 and a.by_kind["regular_exclusive"] == 32
        assert a.top_extents[0].saved_pages == 32 and a.top_extents[0].references == 2
    elif P == P16:
        # B's pages start at logical 1M+4K+16K*k: never 16K-aligned -> 8 unaligned; A 16 exclusive
        assert pages(a)["shared_extent"] == 24 and a.by_kind["unaligned"] == 8 and a.by_kind["regular_exclusive"] == 16
        assert not a.models["rfc_as_posted"].applicable
    else:
        # 4 + 2 pages, B's 2 unaligned, nothing saved
        assert pages(a)["shared_extent"] == 6 and a.by_kind["unaligned"] == 2 and a.top_extents == []
    check_against_reference(t, P, K)


@pytest.mark.parametrize("P", [P4, P16, P64])
def test_bookend_extents(P):
    # A (128K): [0,32K)->2M+0, [32K,64K)->3M (overwritten middle), [64K,128K)->2M+64K (bookend).
    # B (128K): the whole 2M extent. C (128K): 2M split at 20K into two contiguous items (one run).
    t = tables(
        [(5, 1, 128 * KiB), (5, 2, 128 * KiB), (5, 3, 128 * KiB)],
        [
            item(5, 1, 0, 32 * KiB, 2 * MiB, disk_num_bytes=128 * KiB),
            item(5, 1, 32 * KiB, 32 * KiB, 3 * MiB),
            item(5, 1, 64 * KiB, 64 * KiB, 2 * MiB, 64 * KiB, disk_num_bytes=128 * KiB),
            item(5, 2, 0, 128 * KiB, 2 * MiB),
            item(5, 3, 0, 20 * KiB, 2 * MiB, disk_num_bytes=128 * KiB),
            item(5, 3, 20 * KiB, 108 * KiB, 2 * MiB, 20 * KiB, disk_num_bytes=128 * KiB),
        ],
    )
    a = analyze(t, P, facts(K))
    if P == P4:
        # 96 pages; keys: 512..544 (2M extent, 32) + 768..776 (3M, 8) = 40 distinct
        assert pages(a)["shared_extent"] == 40
        # A's 24 pages of 2M + B 32 + C 32 share; A's 8 pages of 3M are exclusive
        assert a.by_kind["regular_shared"] == 88 and a.by_kind["regular_exclusive"] == 8
        ext = {e.logical: e for e in a.top_extents}
        assert ext[2 * MiB].file_pages == 88 and ext[2 * MiB].cached_pages == 32 and ext[2 * MiB].references == 5  # A 2 items, B 1, C 2
    elif P == P16:
        # 24 pages, keys 128..136 + 192..194 = 10 distinct
        assert pages(a)["shared_extent"] == 10
    else:
        # 6 pages; A's page 0 mixes 2M and 3M -> unaligned; A p1 key 33, B and C keys 32, 33
        # (C's page 0 spans its two items: one run) -> 5 eligible, 2 distinct: 6 - 5 + 2 = 3
        assert pages(a)["shared_extent"] == 3
        assert a.by_kind == dict(regular_shared=5, regular_exclusive=0, compressed=0, inline=0, prealloc=0, hole=0, unaligned=1)
    check_against_reference(t, P, K)


@pytest.mark.parametrize("P,expected", [(P4, 16), (P16, 4), (P64, 1)])
def test_self_reflink_inside_one_file(P, expected):
    # one 128K file mapping the 64K extent at 4M twice: half its pages are saved
    t = tables([(5, 1, 128 * KiB)], [item(5, 1, 0, 64 * KiB, 4 * MiB), item(5, 1, 64 * KiB, 64 * KiB, 4 * MiB)])
    a = analyze(t, P, facts(K))
    assert pages(a)["per_inode"] == 2 * expected and pages(a)["shared_extent"] == expected
    assert a.by_kind["regular_shared"] == 2 * expected
    assert a.subvolumes.exclusive_keys.tolist() == [expected] and a.subvolumes.shared_keys.tolist() == [0]
    assert a.top_files[0].saved_pages == pytest.approx(expected)
    check_against_reference(t, P, K)


@pytest.mark.parametrize("P,npages", [(P4, 3), (P16, 1), (P64, 1)])
def test_hardlinks_are_one_inode(P, npages):
    # one inode, two links, 10000 bytes in a 12K extent: content ends at 12K (sector-rounded EOF)
    t = tables([(5, 300, 10000, 2)], [item(5, 300, 0, 12 * KiB, 8 * MiB)])
    a = analyze(t, P, facts(K))
    assert pages(a)["per_inode"] == npages and pages(a)["shared_extent"] == npages
    assert a.by_kind["regular_exclusive"] == npages
    assert int(a.subvolumes.files[0]) == 2 and int(a.subvolumes.inodes[0]) == 1
    check_against_reference(t, P, K)


@pytest.mark.parametrize("P,npages", [(P4, 25), (P16, 7), (P64, 2)])
def test_snapshots(P, npages):
    # subvol 256 and its snapshot 257 hold the same 100K file (not a page multiple) in one extent at 16M
    rows = [item(sv, 257, 0, 100 * KiB, 16 * MiB) for sv in (256, 257)]
    t = tables([(256, 257, 100 * KiB), (257, 257, 100 * KiB)], rows)
    a = analyze(t, P, facts(K))
    # the tail page (content [kP, 100K)) is covered by the extent and keyed: every page shared
    assert pages(a) == {"per_inode": 2 * npages, "shared_extent": npages, "shared_extent_compressed": npages,
                        "rfc_as_posted": npages if P == K else None}
    sv = a.subvolumes
    assert sv.exclusive_keys.tolist() == [0, 0] and sv.shared_keys.tolist() == [npages, npages]
    assert sv.shares_with == [[(257, npages)], [(256, npages)]]
    assert sv.saved_pages.tolist() == pytest.approx([npages / 2, npages / 2])
    check_against_reference(t, P, K)


@pytest.mark.parametrize("P,per_inode,compressed_model", [(P4, 88, 32), (P16, 22, 10), (P64, 6, 3)])
def test_compressed_reflinks(P, per_inode, compressed_model):
    # A: 128K in one zstd extent at 32M (16K on disk); B: whole clone; C: clone of [64K,128K);
    # D: clone of [4K, 36K) (decompressed offset 4K: aligned only at 4K pages)
    ext = dict(disk_num_bytes=16 * KiB, ram_bytes=128 * KiB, compression=ZSTD)
    t = tables(
        [(5, 1, 128 * KiB), (5, 2, 128 * KiB), (5, 3, 64 * KiB), (5, 4, 32 * KiB)],
        [item(5, 1, 0, 128 * KiB, 32 * MiB, **ext), item(5, 2, 0, 128 * KiB, 32 * MiB, **ext),
         item(5, 3, 0, 64 * KiB, 32 * MiB, 64 * KiB, **ext), item(5, 4, 0, 32 * KiB, 32 * MiB, 4 * KiB, **ext)],
    )
    a = analyze(t, P, facts(K))
    # per_inode caches decompressed pages per inode; shared_extent cannot share them;
    # shared_extent_compressed keys (32M, page index): 4K: 32 keys; 16K: A,B 0..8, C 4..8, D unaligned
    # -> 22 - 20 + 8 = 10; 64K: A,B 0..2, C 1, D unaligned -> 6 - 5 + 2 = 3
    assert pages(a)["per_inode"] == per_inode and pages(a)["shared_extent"] == per_inode
    assert pages(a)["shared_extent_compressed"] == compressed_model
    assert a.by_kind["compressed"] == per_inode
    check_against_reference(t, P, K)


def test_distinct_compressed_extents_do_not_share():
    # two 8K files in two different compressed extents (adjacent on disk): nothing to share
    ext = dict(disk_num_bytes=4 * KiB, ram_bytes=8 * KiB, compression=ZSTD)
    t = tables([(5, 1, 8 * KiB), (5, 2, 8 * KiB)], [item(5, 1, 0, 8 * KiB, 40 * MiB, **ext), item(5, 2, 0, 8 * KiB, 40 * MiB + 4 * KiB, **ext)])
    a = analyze(t, P4, facts(K))
    assert pages(a)["shared_extent_compressed"] == pages(a)["per_inode"] == 4
    check_against_reference(t, P4, K)


@pytest.mark.parametrize("P", [P4, P16, P64])
def test_prealloc(P):
    # file 1: 16K, prealloc [0, 64K) at 64M (the part past EOF adds nothing)
    # file 2: 16K, [0,8K) written at 68M, [8K,16K) prealloc at 69M
    t = tables([(5, 1, 16 * KiB), (5, 2, 16 * KiB)],
               [item(5, 1, 0, 64 * KiB, 64 * MiB, type=PREALLOC),
                item(5, 2, 0, 8 * KiB, 68 * MiB), item(5, 2, 8 * KiB, 8 * KiB, 69 * MiB, type=PREALLOC)])
    a = analyze(t, P, facts(K))
    if P == P4:
        assert a.by_kind["prealloc"] == 6 and a.by_kind["regular_exclusive"] == 2
    else:
        # one page each; file 2's page mixes written data and prealloc: unaligned (data wins)
        assert a.by_kind["prealloc"] == 1 and a.by_kind["unaligned"] == 1
    assert pages(a)["shared_extent"] == pages(a)["per_inode"]
    check_against_reference(t, P, K)


@pytest.mark.parametrize("P", [P4, P16, P64])
def test_inline_and_empty(P):
    # inline 500 bytes; inline compressed 3000 bytes; an empty file with a prealloc item past EOF;
    # a symlink's inline item does not count
    t = tables(
        [(5, 1, 500), (5, 2, 3000), (5, 3, 0), (5, 4, 7, 1, LNKF)],
        [item(5, 1, 0, 500, 0, type=INLINE, disk_num_bytes=500), item(5, 2, 0, 3000, 0, type=INLINE, compression=1, disk_num_bytes=900),
         item(5, 3, 0, 4 * KiB, 70 * MiB, type=PREALLOC), item(5, 4, 0, 7, 0, type=INLINE, disk_num_bytes=7)],
    )
    a = analyze(t, P, facts(K))
    assert pages(a)["per_inode"] == 2 and pages(a)["shared_extent"] == 2
    assert a.by_kind["inline"] == 2 and sum(a.by_kind.values()) == 2
    check_against_reference(t, P, K)


@pytest.mark.parametrize("P", [P4, P16, P64])
def test_explicit_and_implicit_holes(P):
    # 40K file: [0,8K) explicit hole, [8K,16K) data at 80M, [16K,32K) gap, [32K,36K) data at 81M, [36K,40K) gap
    t = tables([(5, 1, 40 * KiB)],
               [item(5, 1, 0, 8 * KiB, 0), item(5, 1, 8 * KiB, 8 * KiB, 80 * MiB), item(5, 1, 32 * KiB, 4 * KiB, 81 * MiB)])
    a = analyze(t, P, facts(K))
    want = {
        P4: dict(regular_exclusive=3, hole=7),  # 10 pages: 2 + 4 + 1 hole, 2 + 1 data
        P16: dict(unaligned=2, hole=1),  # 3 pages: hole+data, gap, data+gap
        P64: dict(unaligned=1),  # 1 page: everything
    }[P]
    assert a.by_kind == {k: want.get(k, 0) for k in KINDS}
    check_against_reference(t, P, K)


def test_file_size_not_a_page_multiple_and_empty():
    # 5000 bytes in an 8K extent; 8192 bytes mapping the same extent; an empty file
    t = tables([(5, 1, 5000), (5, 2, 8192), (5, 3, 0)], [item(5, 1, 0, 8 * KiB, 128 * MiB), item(5, 2, 0, 8 * KiB, 128 * MiB)])
    for P, per_inode, shared in [(P4, 4, 2), (P16, 2, 1), (P64, 2, 1)]:
        a = analyze(t, P, facts(K))
        # at 16K/64K both single pages have content [0, 8K) keyed 128M/P: one cached page
        assert pages(a)["per_inode"] == per_inode and pages(a)["shared_extent"] == shared
        check_against_reference(t, P, K)


def test_unknown_and_orphan_rows_are_noted():
    t = tables([(5, 1, 4096), (5, 2, 0, 1, DIRF)], [item(5, 1, 0, 4096, MiB, type=7), item(5, 9, 0, 4096, MiB)])
    a = analyze(t, K, facts(K))
    assert pages(a)["per_inode"] == 1 and a.by_kind["hole"] == 1
    assert any("without an inode" in n for n in a.notes) and any("unknown type" in n for n in a.notes)


def test_rfc_applicability():
    assert rfc_applies(facts(K), K) == (True, None)
    ok, reason = rfc_applies(facts(K, data_profiles=("DUP",)), K)
    assert not ok and "DUP" in reason and "two device offsets" in reason
    ok, reason = rfc_applies(facts(K, num_devices=2, data_profiles=("RAID1",)), K)
    assert not ok and "2 devices" in reason and "RAID1" in reason
    ok, reason = rfc_applies(facts(K), P16)
    assert not ok and "sector size" in reason
    t = tables([(5, 1, 4096)], [item(5, 1, 0, 4096, MiB)])
    a = analyze(t, K, facts(K, data_profiles=("DUP",)))
    assert a.models["rfc_as_posted"].pages is None and not a.models["rfc_as_posted"].applicable


def test_empty_tables():
    a = analyze(FileTables(np.zeros(0, INODE_DTYPE), np.zeros(0, EXTENT_DTYPE)), K, facts(K))
    assert pages(a)["per_inode"] == 0 and pages(a)["shared_extent"] == 0
    assert a.top_extents == [] and a.top_files == [] and len(a.subvolumes.ids) == 0


@pytest.mark.parametrize("leaves", [False, True])
def test_shares_with_exact_for_many_subvolumes(leaves):
    # 100 snapshots of subvol 256 sharing one 16-page extent; 300 also has its own file,
    # and 301 reflinks 4 of the shared pages into a second file: every pair is compared
    svs = [256] + list(range(300, 400))
    inodes = [(sv, 257, 64 * KiB) for sv in svs] + [(300, 258, 8 * KiB), (301, 258, 16 * KiB)]
    extents = [item(sv, 257, 0, 64 * KiB, 4 * MiB) for sv in svs]
    extents += [item(300, 258, 0, 8 * KiB, 8 * MiB), item(301, 258, 0, 16 * KiB, 4 * MiB)]
    t = tables(inodes, extents)
    a = analyze(shared_leaves(t) if leaves else t, K, facts(K))
    sv = a.subvolumes
    assert pages(a) == {"per_inode": 101 * 16 + 2 + 4, "shared_extent": 16 + 2, "shared_extent_compressed": 18,
                        "rfc_as_posted": 18}
    assert sv.exclusive_keys.tolist() == [2 if s == 300 else 0 for s in svs]
    assert sv.shared_keys.tolist() == [16] * 101
    assert sv.shares_with[0] == [(300, 16), (301, 16), (302, 16)]
    assert sv.shares_with[1] == [(256, 16), (301, 16), (302, 16)]
    assert sv.inodes.tolist() == [2 if s in (300, 301) else 1 for s in svs]
    assert a.inodes == 103 and a.files == 103
    top = a.top_extents[0]
    assert (top.logical, top.references, top.file_pages, top.cached_pages) == (4 * MiB, 102, 101 * 16 + 4, 16)
    assert len(top.subvolumes) == 101 and top.inodes[:3] == [(256, 257), (300, 257), (301, 257)]


# --- randomized comparison with the reference -------------------------------------------

_POOL = [0, 8, 16, 17, 24, 32, 32, 40, 64, 64]


@st.composite
def small_tables(draw):
    """Tiny tables: 1-3 subvolumes, snapshots and reflinks; half of the cases page-aligned (more sharing)."""
    S = draw(st.sampled_from([1, 2, 4]))
    P = draw(st.sampled_from([1, 2, 4, 8]))
    aligned = draw(st.booleans())
    ints = (lambda lo, hi, step: st.sampled_from(range(lo, hi + 1, step))) if aligned else (lambda lo, hi, step: st.one_of(
        st.sampled_from(range(lo, hi + 1, step)), st.integers(lo, hi)))
    svs = draw(st.lists(st.sampled_from([5, 256, 257, 300]), min_size=1, max_size=3, unique=True))
    inodes, extents = [], []
    for sv in svs:
        for ino in range(257, 257 + draw(st.integers(1, 3))):
            mode = draw(st.sampled_from([REGF] * 6 + [DIRF, LNKF]))
            inodes.append((sv, ino, draw(ints(0, 40, 8)), draw(st.integers(0, 3)), mode))
            for _ in range(draw(st.integers(0, 4))):
                typ = draw(st.sampled_from([REG] * 6 + [PREALLOC, INLINE, 5]))
                comp = draw(st.sampled_from([0, 0, ZSTD]))
                db = draw(st.sampled_from(_POOL)) if typ != INLINE else 0
                off = draw(ints(0, 8, 8)) if typ != INLINE else 0
                extents.append(item(sv, ino, draw(ints(0, 40, 8)), draw(ints(8, 24, 8)), db, off,
                                    type=typ, compression=comp))
    for dst in (999, 1000)[: draw(st.integers(0, 2))]:  # snapshots of the first subvolume (maybe changed)
        src = svs[0]
        inodes += [(dst, *row[1:]) for row in inodes if row[0] == src]
        copied = [{**e, "subvol": dst} for e in extents if e["subvol"] == src]
        if copied and draw(st.booleans()):
            copied[draw(st.integers(0, len(copied) - 1))]["disk_bytenr"] = draw(st.sampled_from(_POOL))
        extents += copied
    if extents and draw(st.booleans()):  # a reflink of some item into another inode at another offset
        e = draw(st.sampled_from(extents))
        target = draw(st.sampled_from(inodes))
        extents.append({**e, "subvol": target[0], "ino": target[1], "file_offset": draw(ints(0, 32, 8))})
    return tables(inodes, extents), P, S


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_tables())
def test_matches_brute_force_reference(case):
    t, P, S = case
    check_against_reference(t, P, S)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_tables())
def test_pairs_expanded_without_the_dense_product(case):
    """The subvolume pairs summed set by set (no matrix product: ``DENSE_SUBVOLUMES`` 0) are the same."""
    t, P, S = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(per_subvolume, "DENSE_SUBVOLUMES", 0)
        check_against_reference(t, P, S)


# --- kernel-made fixtures: per_inode against fincore --------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "files"


def tables_from_dump_tree(text: str) -> FileTables:
    """Inode and file extent items of every fs tree in ``btrfs inspect-internal dump-tree`` output."""
    inodes, extents = [], []
    tree = None
    lines = text.splitlines()
    for n, line in enumerate(lines):
        m = re.match(r"^(?:fs|file) tree key \((\w+) ROOT_ITEM", line)
        if m:
            tree = 5 if m.group(1) == "FS_TREE" else int(m.group(1))
            continue
        if re.match(r"^\w[\w ]* tree key ", line):
            tree = None
            continue
        m = re.match(r"^\titem \d+ key \((\d+) (INODE_ITEM|EXTENT_DATA) (\d+)\)", line)
        if tree is None or not m:
            continue
        obj, kind, off = int(m.group(1)), m.group(2), int(m.group(3))
        body = " ".join(lines[n + 1:n + 5])
        if kind == "INODE_ITEM":
            size = int(re.search(r" size (\d+) nbytes (\d+)", body).group(1))
            mode = int(re.search(r" mode (\d+)", body).group(1), 8)
            links = int(re.search(r" links (\d+)", body).group(1))
            inodes.append((tree, obj, size, links, mode))
        else:
            typ = int(re.search(r"type (\d)", body).group(1))
            if typ == INLINE:
                m2 = re.search(r"inline extent data size (\d+) ram_bytes (\d+) compression (\d+)", body)
                extents.append(item(tree, obj, off, int(m2.group(2)), 0, type=INLINE, disk_num_bytes=int(m2.group(1)),
                                    ram_bytes=int(m2.group(2)), compression=int(m2.group(3))))
            else:
                db, dnb = map(int, re.search(r"data disk byte (\d+) nr (\d+)", body).groups())
                o, nb = map(int, re.search(r"data offset (\d+) nr (\d+)", body).groups())
                ram = re.search(r" ram (\d+)", body)
                comp = re.search(r"compression (\d+)", body)
                extents.append(item(tree, obj, off, nb, db, o, type=typ, disk_num_bytes=dnb,
                                    ram_bytes=int(ram.group(1)) if ram else nb, compression=int(comp.group(1)) if comp else 0))
    return tables(inodes, extents)


@pytest.mark.parametrize("name", ["reflinks", "compress", "subvols", "sparse-holes", "sparse-noholes", "raid1-files", "many"])
def test_per_inode_matches_kernel_fincore(name, dump_tree):
    expected = FIXTURES / name / "expected"
    t = tables_from_dump_tree(dump_tree("files", name))
    a = analyze(t, P4, facts(K))
    lay = a.layout
    pages_of = {(int(s), int(i)): int(p) for s, i, p in zip(lay.subvol, lay.ino, lay.npages)}
    fincore = json.loads((expected / "fincore.json").read_text())
    assert fincore
    for entry in fincore:
        assert pages_of[(entry["subvol"], entry["st_ino"])] * P4 == entry["res"], entry
    assert sum(a.by_kind.values()) == a.models["per_inode"].pages
