"""The content designs (overlay_copy_up, file_fingerprint, content_dedupe), their content sources
(checksum tree, --read-data) and the checksum tree parser.

Expected values never come from btrfsscan: ``dump-tree -t csum`` and the
image bytes hashed here (checksum tree); brute-force counts over file bytes
built here (hand-made cases); counts read through the kernel
(``design_truth``: committed ``designs.json`` of the kernel-made fixtures,
and recomputed on a read-only mount in the kernel-backed test).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import types
import zlib
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import xxhash

from btrfsscan import concurrency
from btrfsscan.cache import content as C
from btrfsscan.cache.designs import content_dedupe, file_fingerprint, overlay_copy_up
from btrfsscan.cache.layout import build_layout
from btrfsscan.cache.mappings import distinct_mappings
from btrfsscan.errors import Warnings
from btrfsscan.format import compression
from btrfsscan.format.constants import Compression, CsumType, FileExtentType, ObjectId
from btrfsscan.model.content_hash import page_hash
from btrfsscan.model.csums import CsumItems, csum_table, read_csum_tree
from btrfsscan.model.file_data import NoFileDataError, hash_pages
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.model.fs_tree import FileScanner
from btrfsscan.model.tables import EXTENT_DTYPE, INODE_DTYPE, S_IFREG, FileTables
from btrfsscan.model.versions import inode_versions, versions_of

from support import decompress_sparse, kernel_unavailable, run, run_json

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
PAGE_SIZES = (4096, 16384, 65536)
S = 4096


# --- the checksum tree ------------------------------------------------------------------------

_DIGEST = {
    "crc32c": lambda b: google_crc32c.value(b).to_bytes(4, "little"),
    "xxhash": lambda b: xxhash.xxh64_intdigest(b).to_bytes(8, "little"),
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "blake2": lambda b: hashlib.blake2b(b, digest_size=32).digest(),
}


def _data_chunks(text: str) -> list[tuple[int, int, int]]:
    """(logical, length, physical) of the DATA chunks in ``dump-tree -t chunk`` (single profile)."""
    out = []
    for m in re.finditer(r"CHUNK_ITEM (\d+)\)[^\n]*\n\s+length (\d+) [^\n]*type DATA\|single[^\n]*\n"
                         r"(?:[^\n]*\n)*?\s+stripe 0 devid 1 offset (\d+)", text):
        out.append(tuple(int(x) for x in m.groups()))
    return out


@pytest.mark.parametrize("kind", ["crc32c", "xxhash", "sha256", "blake2"])
def test_csum_tree_matches_dump_tree_and_the_bytes(tmp_path, kind):
    fixture = FIXTURES / "volumes" / f"csum-{kind}"
    img = tmp_path / "dev1.img"
    decompress_sparse(fixture / "dev1.img.xz", img)
    expected = (fixture / "expected" / "dump-tree-csum.txt").read_text()
    ranges = [tuple(map(int, m)) for m in re.findall(r"range start (\d+) end (\d+) length (\d+)", expected)]
    sizes = [int(m) for m in re.findall(r"EXTENT_CSUM EXTENT_CSUM \d+\) itemoff \d+ itemsize (\d+)", expected)]
    fs = open_filesystem([img])
    try:
        table = read_csum_tree(fs.reader, fs.tree_root(ObjectId.CSUM_TREE), fs.superblock.csum, S, fs.warnings)
        assert not fs.warnings
        assert [(int(a), int(a) + int(n) * S, int(n) * S) for a, n in zip(table.start, table.sectors)] == ranges
        assert (table.sectors * table.csum_type.size).tolist() == sizes
        chunks = _data_chunks((fixture / "expected" / "dump-tree-chunk.txt").read_text())
        assert chunks
        with open(img, "rb") as f:
            for start, n, first in zip(table.start.tolist(), table.sectors.tolist(), table.first.tolist()):
                (logical, _, physical), = [c for c in chunks if c[0] <= start < c[0] + c[1]]
                f.seek(physical + start - logical)
                data = f.read(n * S)
                want = b"".join(_DIGEST[kind](data[i * S:(i + 1) * S]) for i in range(n))
                assert table.csums[first:first + n].tobytes() == want
    finally:
        fs.close()


# --- decompression ----------------------------------------------------------------------------


def test_lzo_framing_with_padding():
    """btrfs lzo: 4-byte total, per-sector segments, a header never straddling a sector (zero padding)."""
    lzo = pytest.importorskip("lzo")
    sector = 4096
    rng = random.Random(1)
    plain = b"".join(rng.randbytes(300) * 13 + bytes(196) for _ in range(3))[:3 * sector]
    out = bytearray(4)
    for k in range(3):
        seg = lzo.compress(plain[k * sector:(k + 1) * sector], 1, False)
        if sector - len(out) % sector < 4:
            out += bytes(sector - len(out) % sector)
        out += len(seg).to_bytes(4, "little") + seg
    out[:4] = len(out).to_bytes(4, "little")
    assert compression.decompress(Compression.LZO, bytes(out), len(plain), sector) == plain


def test_damaged_streams_raise_decompression_error():
    for kind in (Compression.ZLIB, Compression.ZSTD, Compression.LZO):
        with pytest.raises(compression.DecompressionError):
            compression.decompress(kind, b"\x07" * 40, 4096, 4096)


# --- hand-made cases at every page size -----------------------------------------------------


class Disk:
    """Logical sectors with seeded bytes, and the crc32c checksum tree of those written with checksums."""

    def __init__(self):
        self.sectors: dict[int, bytes] = {}
        self.nodatasum: set[int] = set()

    def write(self, logical: int, data: bytes, csum: bool = True) -> None:
        for i in range(0, len(data), S):
            self.sectors[logical + i] = data[i:i + S].ljust(S, b"\0")
            if not csum:
                self.nodatasum.add(logical + i)

    def table(self):
        items = [CsumItems(np.array([a], np.uint64), np.array([1], np.int64),
                           np.frombuffer(_DIGEST["crc32c"](b), np.uint8))
                 for a, b in sorted(self.sectors.items()) if a not in self.nodatasum]
        return csum_table(items, CsumType.CRC32C, S)


class _DiskVolume:
    """A ``Disk`` as the volume ``hash_pages`` reads: one copy, unwritten sectors zero."""

    metadump = None

    def __init__(self, disk: Disk) -> None:
        self.disk = disk
        self.superblock = types.SimpleNamespace(sectorsize=S)

    def num_copies(self, logical: int) -> int:
        return 1

    def view(self, logical: int, length: int) -> None:
        return None  # not mapped: every range is read

    def read(self, logical: int, length: int, mirror: int = 1) -> bytes:
        return b"".join(self.disk.sectors.get(a, bytes(S)) for a in range(logical, logical + length, S))[:length]


def _rng_bytes(seed, n):
    return random.Random(seed).randbytes(n)


class _Files:
    """Hand-made files over a ``Disk``: their inode and extent rows, and the bytes each one reads."""

    def __init__(self, disk: Disk) -> None:
        self.disk = disk
        self.inodes, self.extents, self.truth, self.inline = [], [], {}, {}

    def file(self, sv, ino, size, items, inline: bytes | None = None):
        """``items``: (file offset, disk_bytenr, offset, num_bytes, type) of regular extents; ``inline``:
        the data of an inline extent at offset 0 (uncompressed)."""
        self.inodes.append((sv, ino, size))
        content = bytearray(size)
        if inline is not None:
            self.extents.append((sv, ino, 0, len(inline), 0, len(inline), 0, FileExtentType.INLINE,
                                 page_hash(inline)))
            content[:len(inline)] = inline[:size]
            self.inline[(sv, ino)] = inline
        for fo, db, off, nb, typ in items:
            self.extents.append((sv, ino, fo, nb, db, nb, off, typ, bytes(16)))
            if db and typ == FileExtentType.REG:
                for pos in range(0, nb, S):
                    if fo + pos < size:
                        chunk = self.disk.sectors[db + off + pos]
                        content[fo + pos:fo + pos + S] = chunk[:size - fo - pos]
        self.truth[(sv, ino)] = bytes(content)

    def tables(self) -> FileTables:
        ino = np.zeros(len(self.inodes), INODE_DTYPE)
        for i, (sv, n, size) in enumerate(self.inodes):
            ino[i]["subvol"], ino[i]["ino"], ino[i]["size"], ino[i]["nlink"] = sv, n, size, 1
            ino[i]["mode"] = S_IFREG | 0o644
        ext = np.zeros(len(self.extents), EXTENT_DTYPE)
        for i, (sv, n, fo, nb, db, dnb, off, typ, inline_hash) in enumerate(self.extents):
            row = ext[i]
            row["subvol"], row["ino"], row["file_offset"], row["num_bytes"] = sv, n, fo, nb
            row["disk_bytenr"], row["disk_num_bytes"], row["offset"], row["ram_bytes"] = db, 64 * 1024, off, nb
            row["type"], row["inline_hash"] = typ, inline_hash
            if typ == FileExtentType.INLINE:
                row["disk_num_bytes"] = nb
        return FileTables(ino, ext)


def _case():
    """(FileTables, Disk, file bytes per (subvol, ino)): every kind of sharing the designs tell apart."""
    disk = Disk()
    a = _rng_bytes("a", 64 * 1024)
    disk.write(1 << 20, a)                       # extent A
    disk.write(2 << 20, a)                       # the same bytes written again (extent B)
    disk.write(3 << 20, _rng_bytes("c", 16 * 1024) + bytes(4096))  # extent C: data then a zero sector
    disk.write(4 << 20, a[:32768], csum=False)   # NOCOW copy of A's first half
    files = _Files(disk)
    file = files.file
    REG = FileExtentType.REG
    for sv in (256, 257):                                      # 257: a snapshot of 256
        file(sv, 257, 64 * 1024, [(0, 1 << 20, 0, 64 * 1024, REG)])
    file(256, 258, 64 * 1024, [(0, 1 << 20, 0, 64 * 1024, REG)])       # reflink of 257
    file(256, 259, 64 * 1024, [(0, 2 << 20, 0, 64 * 1024, REG)])       # same bytes, own extent
    file(257, 260, 40000, [(4096, 1 << 20, 8192, 20480, REG)])          # hole, then a 4K-aligned window of A
    file(256, 261, 20480, [(0, 3 << 20, 0, 20480, REG)])                # data then written zeros
    file(256, 262, 65536, [(0, 4 << 20, 0, 32768, REG)])                # NOCOW: no checksums
    file(257, 257 + 1000, 64 * 1024, [(0, 1 << 20, 0, 64 * 1024, REG)])  # another ino, same extent
    file(258, 257, 64 * 1024, [(0, 1 << 20, 0, 32768, REG), (32768, 2 << 20, 32768, 32768, REG)])  # copied up
    return files.tables(), disk, files.truth


def _brute(truth: dict, P: int, unknown: set = frozenset()) -> dict:
    """The designs counted from file bytes; files in ``unknown`` cached per inode page by page."""
    pages, files, per_inode, alone = set(), set(), 0, 0
    for key, data in truth.items():
        n = -(-len(data) // P)
        per_inode += n
        if key in unknown:
            alone += n
            continue
        files.add((len(data), hashlib.sha256(data).digest()))
        for k in range(n):
            pages.add(data[k * P:(k + 1) * P].ljust(P, b"\0"))
    return {"per_inode": per_inode, "content_dedupe": len(pages) + alone,
            "file_fingerprint": sum(-(-size // P) for size, _ in files) + alone}


@pytest.mark.parametrize("P", PAGE_SIZES)
def test_hand_made_designs(P):
    tables, disk, truth = _case()
    layout = build_layout(versions_of(tables), P, S)
    maps = distinct_mappings(layout)
    content = C.content_from_csums(maps, disk.table())
    # NOCOW inode 262: its data pages are unknown (cached per inode); the rest of its pages is a hole
    nocow_pages = -(-32768 // P)
    fingerprint = file_fingerprint.figures(layout, content)
    dedupe = content_dedupe.figures(layout, content)
    exact_without_nocow = _brute({k: v for k, v in truth.items() if k != (256, 262)}, P)
    assert dedupe.per_inode_pages == _brute(truth, P)["per_inode"]
    assert dedupe.unknown_pages == nocow_pages
    zero_tail = 1 if (65536 - 32768) // P and not any(
        not d[k * P:(k + 1) * P].strip(b"\0") for key, d in truth.items() if key != (256, 262)
        for k in range(-(-len(d) // P))) else 0
    assert dedupe.pages == exact_without_nocow["content_dedupe"] + nocow_pages + zero_tail
    assert fingerprint.pages == exact_without_nocow["file_fingerprint"] + 65536 // P
    # overlay: ino 257 of subvols 256 and 257 is one lower file; 258's (new mapping) is copied up; other
    # inodes are cached on their own even where they share extents or content
    overlay = overlay_copy_up.figures(layout, maps)
    npages = {key: -(-len(d) // P) for key, d in truth.items()}
    assert overlay.pages == sum(npages.values()) - npages[(257, 257)]
    assert abs(overlay.subvolumes.saved_pages.sum() - overlay.saved_pages) < 1e-6
    assert overlay.subvolumes.exclusive_pages.sum() + overlay.subvolumes.shared_pages.sum() / 2 == overlay.pages
    assert content.expected_false_merges > 0



def test_false_merges_count_each_distinct_key_once():
    """The birthday bound over distinct page keys: ids have gaps (checksums only unknown pages use, the zero
    sector's), and a gap is no key."""
    grid = np.array([[5, 0], [9, 0], [5, 0], [2, 7], [3, 3], [40, 0], [2, 7]])
    seq_ids = np.array([4, 8, 4, 100, 200, 39, 100])  # one-checksum keys 4, 8, 39; two-checksum keys 100, 200
    n_data = 17
    want = 3 * 2 / 2 * 2.0 ** -32 + 2 * 1 / 2 * 2.0 ** -64 + n_data * 2.0 ** -32
    assert C._false_merges(CsumType.CRC32C, grid, seq_ids, n_data) == pytest.approx(want, rel=1e-12)
    assert C._false_merges(CsumType.SHA256, grid, seq_ids, n_data) == pytest.approx(
        3 * 2.0 ** -256 + 2.0 ** -512 + n_data * 2.0 ** -256, rel=1e-12)

def _sparse_case():
    """Sparse files (holes of many pages, and at EOF) whose content only the holes tell apart."""
    disk = Disk()
    a = _rng_bytes("sparse", 64 * 1024)
    disk.write(1 << 20, a)  # extent A
    disk.write(2 << 20, a)  # the same bytes written again (extent B)
    disk.write(3 << 20, bytes(64 * 1024))  # written zeros
    files = _Files(disk)
    REG, M = FileExtentType.REG, 1 << 20
    size = 8 * M + 100
    files.file(256, 257, size, [(4 * M, 1 << 20, 0, 64 * 1024, REG)])  # hole, A, hole to EOF
    files.file(256, 258, size, [(0, 3 << 20, 0, 64 * 1024, REG), (4 * M, 2 << 20, 0, 64 * 1024, REG)])  # zeros
    files.file(257, 257, size, [(4 * M, 1 << 20, 0, 64 * 1024, REG)])  # a snapshot's copy of 256/257
    files.file(256, 259, size, [])  # all hole
    files.file(256, 260, 2 * size, [])  # all hole, twice as long
    files.file(256, 261, size, [(4 * M + 4096, 1 << 20, 0, 64 * 1024, REG)])  # A one page later
    return files.tables(), disk, files.truth


@pytest.mark.parametrize("P", PAGE_SIZES)
def test_sparse_files_compacted(P):
    """Holes of many pages are compacted to one page each (``cache.sparse``): the designs still equal the
    brute-force counts over the files' bytes, a hole and written zeros are the same content, and the
    compacted pages stand for every page of the layout exactly once."""
    tables, disk, truth = _sparse_case()
    layout = build_layout(versions_of(tables), P, S)
    maps = distinct_mappings(layout)
    content = C.content_from_csums(maps, disk.table())
    pages, weight = content.pages, content.weight
    total = int(maps.layout.npages.sum())
    first = pages.original(np.arange(len(weight)))  # the compacted pages tile the original ones in order
    assert first[0] == 0 and (first[1:] == first[:-1] + weight[:-1]).all() and first[-1] + weight[-1] == total
    assert len(weight) < total // 10
    assert not (weight[~content.known] > 1).any()  # a compacted gap is the zero page
    brute = _brute(truth, P)
    assert content_dedupe.figures(layout, content).pages == brute["content_dedupe"]
    assert file_fingerprint.figures(layout, content).pages == brute["file_fingerprint"]
    requests = C.page_requests(maps)
    hashes, known = hash_pages(_DiskVolume(disk), requests.extents, requests.pieces, requests.n_outputs, P,
                               Warnings())
    exact = C.content_from_hashes(requests, hashes, known)
    assert content_dedupe.figures(layout, exact).pages == brute["content_dedupe"]
    assert file_fingerprint.figures(layout, exact).pages == brute["file_fingerprint"]


@pytest.mark.parametrize("P", PAGE_SIZES)
def test_overlay_compares_prealloc_by_its_place(P):
    """overlay_copy_up: a prealloc range reads as zeros, so (like a hole) it is the same data at the same file
    range, whatever its logical address and however many items make it; not where it lies elsewhere, nor
    against a hole. (Found by the random kernel test: a snapshot's copy re-fallocated.)"""
    disk = Disk()
    disk.write(1 << 20, _rng_bytes("prealloc-data", 8192))
    files = _Files(disk)
    REG, PRE, K = FileExtentType.REG, FileExtentType.PREALLOC, 1024
    size = 96 * K
    data = (0, 1 << 20, 0, 8 * K, REG)
    files.file(256, 257, size, [data, (8 * K, 5 << 20, 0, 88 * K, PRE)])
    files.file(257, 257, size, [data, (8 * K, 6 << 20, 0, 88 * K, PRE)])  # re-fallocated elsewhere: shares
    files.file(258, 257, size, [data, (8 * K, 7 << 20, 0, 40 * K, PRE), (48 * K, 8 << 20, 0, 48 * K, PRE)])  # two
    files.file(259, 257, size, [data, (8 * K, 9 << 20, 0, 80 * K, PRE)])  # a shorter range (a hole after it)
    files.file(260, 257, size, [data])  # a hole there instead
    tables = files.tables()
    layout = build_layout(versions_of(tables), P, S)
    pages = -(-size // P)
    assert overlay_copy_up.figures(layout, distinct_mappings(layout)).pages == 3 * pages


def test_overlay_tells_compressed_inline_data_from_plain():
    """One inode's inline data, compressed in one snapshot and not in the other: rewritten there (FIEMAP says
    ENCODED for one only), so copied up, even where both hash alike (``--read-data`` hashes decompressed)."""
    files = _Files(Disk())
    head = _rng_bytes("inline-twice", 417)
    for sv in (256, 257, 258):
        files.file(sv, 257, len(head), [], inline=head)
    tables = files.tables()
    tables.extents["compression"][tables.extents["subvol"] == 258] = Compression.ZSTD
    layout = build_layout(versions_of(tables), S, S)
    assert overlay_copy_up.figures(layout, distinct_mappings(layout)).pages == 2


def _inline_case():
    """Inline extents that share their page with more: a regular extent after them (what a reflink to
    offset 4096 of a small file makes), an EOF inside them; and the same bytes as regular extents only."""
    disk = Disk()
    head, body = _rng_bytes("head", 1363), _rng_bytes("body", 16384)
    disk.write(1 << 20, body)
    disk.write(2 << 20, head + bytes(S - len(head)) + body)
    files = _Files(disk)
    REG = FileExtentType.REG
    files.file(256, 257, S + len(body), [(S, 1 << 20, 0, len(body), REG)], inline=head)  # inline, then body
    files.file(257, 257, S + len(body), [(S, 1 << 20, 0, len(body), REG)], inline=head)  # its snapshot's copy
    files.file(256, 258, S + len(body), [(0, 2 << 20, 0, S + len(body), REG)])  # the same bytes, one extent
    files.file(256, 259, 1000, [], inline=head)   # EOF inside the inline data
    files.file(256, 260, 1000, [(0, 2 << 20, 0, S, REG)])  # its bytes, in a regular extent
    files.file(256, 261, len(head), [], inline=head)  # a plain inline file
    return files.tables(), disk, files


@pytest.mark.parametrize("P", PAGE_SIZES)
def test_inline_pages_holding_more_are_assembled(P):
    """``--read-data``: a page that begins with an inline extent and holds more (later extents, or an EOF
    inside the inline data) is assembled from the inline bytes (read again: ``requests.inline``) and the
    rest, so the counts equal the brute force over the files' bytes at every page size; from the checksum
    tree the inline one is keyed by its hash (equal to the same inline extent only: a lower bound)."""
    tables, disk, files = _inline_case()
    layout = build_layout(versions_of(tables), P, S)
    maps = distinct_mappings(layout)
    requests = C.page_requests(maps)
    assert sorted(zip(requests.inline["subvol"].tolist(), requests.inline["ino"].tolist())) == \
        ([(256, 257), (256, 259)] if P > S else [(256, 259)])  # the snapshot's copy is the same mapping
    inline = {int(r["page"]): files.inline[(int(r["subvol"]), int(r["ino"]))][:int(r["length"])]
              for r in requests.inline}
    hashes, known = hash_pages(_DiskVolume(disk), requests.extents, requests.pieces, requests.n_outputs, P,
                               Warnings(), inline=inline)
    exact = C.content_from_hashes(requests, hashes, known)
    assert exact.known.all()
    brute = _brute(files.truth, P)
    assert content_dedupe.figures(layout, exact).pages == brute["content_dedupe"]
    assert file_fingerprint.figures(layout, exact).pages == brute["file_fingerprint"]
    unknown = {int(r["page"]): None for r in requests.inline}  # an inline extent not found again
    hashes, known = hash_pages(_DiskVolume(disk), requests.extents, requests.pieces, requests.n_outputs, P,
                               Warnings(), inline=unknown)
    assert (~C.content_from_hashes(requests, hashes, known).known).sum() == len(unknown)
    # from the checksum tree two pages more: the page with EOF inside its inline data is unknown, and the
    # same bytes as inline data and as a data sector are not equal there (an inline extent in front of
    # data is keyed by its sectors, the inline one by its hash: its snapshot's copy shares it)
    from_csums = C.content_from_csums(maps, disk.table())
    assert (~from_csums.known).sum() == 1
    assert content_dedupe.figures(layout, from_csums).pages == brute["content_dedupe"] + 2


@pytest.mark.parametrize("P", PAGE_SIZES)
def test_fair_shares_add_up(P):
    tables, disk, _ = _case()
    layout = build_layout(versions_of(tables), P, S)
    maps = distinct_mappings(layout)
    content = C.content_from_csums(maps, disk.table())
    for result in (overlay_copy_up.figures(layout, maps), file_fingerprint.figures(layout, content), content_dedupe.figures(layout, content)):
        assert abs(float(result.subvolumes.saved_pages.sum()) - result.saved_pages) < 1e-6
        assert result.subvolumes.per_inode_pages.sum() == result.per_inode_pages
        assert result.top_files == sorted(result.top_files, key=lambda f: (-f.saved_pages, f.subvol, f.ino))


@pytest.mark.parametrize("P", PAGE_SIZES)
def test_overlay_per_subvolume_over_many_mask_words(P):
    # 101 subvolumes (two 64-bit holder masks): ino 257 one lower file in all; ino 258 the same in 300 and
    # 370 (a mask with a bit in each word); ino 259 only in 399; ino 260 in 256 and 301 with different data
    svs = [256] + list(range(300, 400))
    files = {(sv, 257): [(0, 1 << 20, 65536)] for sv in svs}
    files.update({(300, 258): [(0, 2 << 20, 32768)], (370, 258): [(0, 2 << 20, 32768)],
                  (399, 259): [(0, 3 << 20, 20480)], (256, 260): [(0, 4 << 20, 8192)],
                  (301, 260): [(0, 5 << 20, 8192)]})
    ino = np.zeros(len(files), INODE_DTYPE)
    ext = np.zeros(sum(len(v) for v in files.values()), EXTENT_DTYPE)
    row = 0
    for i, ((sv, n), items) in enumerate(files.items()):
        ino[i]["subvol"], ino[i]["ino"], ino[i]["nlink"], ino[i]["mode"] = sv, n, 1, S_IFREG | 0o644
        ino[i]["size"] = sum(nb for _, _, nb in items)
        for fo, db, nb in items:
            e = ext[row]
            e["subvol"], e["ino"], e["file_offset"], e["num_bytes"], e["type"] = sv, n, fo, nb, FileExtentType.REG
            e["disk_bytenr"], e["disk_num_bytes"], e["ram_bytes"] = db, nb, nb
            row += 1
    layout = build_layout(versions_of(FileTables(ino, ext)), P, S)
    got = overlay_copy_up.figures(layout, distinct_mappings(layout)).subvolumes
    # brute force: a lower file is one (ino, data) pair; the subvolumes holding it share it
    holders: dict = {}
    for (sv, n), items in files.items():
        holders.setdefault((n, tuple(items)), set()).add(sv)
    exclusive, shared = dict.fromkeys(svs, 0), dict.fromkeys(svs, 0)
    for (n, items), subvols in holders.items():
        npages = -(-sum(nb for _, _, nb in items) // P)
        for sv in subvols:
            (shared if len(subvols) > 1 else exclusive)[sv] += npages
    assert got.ids.tolist() == svs
    assert got.exclusive_pages.tolist() == [exclusive[sv] for sv in svs]
    assert got.shared_pages.tolist() == [shared[sv] for sv in svs]
    assert shared[370] == shared[300] > shared[302] > 0 and exclusive[399] > 0


# --- kernel-made fixtures ---------------------------------------------------------------------


def _figures(img: Path, subvol_ids: set[int], P: int, read_data: bool, inline_data: bool = True,
             group=distinct_mappings) -> dict:
    """The three designs' figures on the subvolumes ``subvol_ids`` of ``img``; ``group``: how the versions
    are grouped by mapping (``distinct_mappings``, or a stand-in the test passes)."""
    fs = open_filesystem([img])
    try:
        subvols = [s for s in fs.subvolumes.live() if s.id in subvol_ids]
        versions = inode_versions(FileScanner(fs.reader, fs.warnings, decompress_inline=read_data)
                                  .scan_leaves(subvols), fs.warnings)
        layout = build_layout(versions, P, fs.superblock.sectorsize)
        maps = group(layout)
        if read_data:
            requests = C.page_requests(maps)
            hashes, known = hash_pages(fs.volume, requests.extents, requests.pieces, requests.n_outputs, P,
                                       fs.warnings)
            content = C.content_from_hashes(requests, hashes, known)
        else:
            table = read_csum_tree(fs.reader, fs.tree_root(ObjectId.CSUM_TREE), fs.superblock.csum,
                                   fs.superblock.sectorsize, fs.warnings)
            content = C.content_from_csums(maps, table, inline_data)
        results = [overlay_copy_up.figures(layout, maps, inline_data=inline_data), file_fingerprint.figures(layout, content),
                   content_dedupe.figures(layout, content)]
        assert not fs.warnings, fs.warnings.messages()
        out = {"per_inode": results[0].per_inode_pages, "inodes": layout.total(np.ones(layout.n_inodes, np.int64))}
        out.update({r.name: r.pages for r in results})
        out["unknown"] = results[2].unknown_pages
        out["false_merges"] = content.expected_false_merges
        out["source"] = content.source
        return out
    finally:
        fs.close()


@pytest.fixture(scope="module", params=["designs-crc32c", "designs-sha256"])
def designs_image(request, tmp_path_factory):
    name = request.param
    img = tmp_path_factory.mktemp(name) / "dev0.img"
    decompress_sparse(FIXTURES / "files" / name / "dev0.img.xz", img)
    truth = json.loads((FIXTURES / "files" / name / "expected" / "designs.json").read_text())
    return name, img, truth


_DESIGNS = ("per_inode", "inodes", "overlay_copy_up", "file_fingerprint", "content_dedupe")


def _nocow_pages(name: str, P: int) -> int:
    listing = [json.loads(line.rstrip(",")) for line in
               (FIXTURES / "files" / name / "expected" / "listing.json").read_text().splitlines()[1:-1]]
    return sum(-(-r["size"] // P) for r in listing if r["type"] == "file" and r["path"].startswith("nocow/"))


@pytest.mark.parametrize("P", PAGE_SIZES)
def test_read_data_equals_the_kernel_counts(designs_image, P):
    name, img, truth = designs_image
    for scope in ("all", "plain"):
        got = _figures(img, set(truth[scope]["subvolumes"].values()), P, read_data=True)
        want = truth[scope]["pages"][str(P)]
        assert {k: got[k] for k in _DESIGNS} == {k: want[k] for k in _DESIGNS}, scope
        assert got["unknown"] == 0 and got["source"] == "data"


@pytest.mark.parametrize("P", (16384, 65536))
def test_read_data_exact_with_tiny_read_and_assembly_buffers(designs_image, P, monkeypatch):
    """Pages larger than a sector straddle extents: assembled one page at a time, every read a sector or
    two and never merged across a gap, the counts stay the kernel's."""
    from btrfsscan.model import file_data

    name, img, truth = designs_image
    monkeypatch.setattr(file_data, "ASSEMBLY_BYTES", 1)
    monkeypatch.setattr(file_data, "READ_BYTES", 4096)
    monkeypatch.setattr(file_data, "MERGE_GAP", 0)
    got = _figures(img, set(truth["all"]["subvolumes"].values()), P, read_data=True)
    want = truth["all"]["pages"][str(P)]
    assert {k: got[k] for k in _DESIGNS} == {k: want[k] for k in _DESIGNS}


@pytest.mark.parametrize("P", PAGE_SIZES)
def test_distinct_mappings_change_no_figure(designs_image, P):
    """Content and overlay mappings computed once per distinct mapping give the figures of those computed
    per version."""
    from btrfsscan.cache import mappings

    name, img, truth = designs_image
    ids = set(truth["all"]["subvolumes"].values())
    sizes = []

    def recorded(layout):
        found = mappings.distinct_mappings(layout)
        sizes.append((found.layout.n_inodes, layout.n_inodes))
        return found

    grouped = _figures(img, ids, P, read_data=False, group=recorded)
    assert sizes and all(groups < versions for groups, versions in sizes)  # the snapshots' files did group

    def one_per_version(layout):
        n = layout.n_inodes
        return mappings.DistinctMappings(np.arange(n), mappings._subset(layout, np.arange(n), np.arange(n)))

    assert _figures(img, ids, P, read_data=False, group=one_per_version) == grouped


@pytest.mark.parametrize("P", PAGE_SIZES)
def test_csum_figures_exact_without_compression_and_bounded_with_it(designs_image, P):
    name, img, truth = designs_image
    plain = _figures(img, set(truth["plain"]["subvolumes"].values()), P, read_data=False)
    want = truth["plain"]["pages"][str(P)]
    assert {k: plain[k] for k in _DESIGNS} == {k: want[k] for k in _DESIGNS}
    everything = _figures(img, set(truth["all"]["subvolumes"].values()), P, read_data=False)
    want = truth["all"]["pages"][str(P)]
    assert everything["overlay_copy_up"] == want["overlay_copy_up"]
    for design in ("content_dedupe", "file_fingerprint"):  # compressed and NOCOW: less sharing seen, never more
        assert everything[design] > want[design]
    assert everything["unknown"] == _nocow_pages(name, P)
    if name == "designs-crc32c":
        assert 0 < everything["false_merges"] < 0.01
    else:
        assert everything["false_merges"] < 1e-60


def test_metadata_dump_keeps_the_csum_figures(designs_image, tmp_path):
    """btrfs-image keeps the checksum tree but zeroes inline data: the figures with inline data unknown
    are the same on the dump as on the image, and --read-data is refused with a clear error."""
    if not shutil.which("btrfs-image"):
        pytest.skip("btrfs-image (btrfs-progs) not installed")
    name, img, truth = designs_image
    dump = tmp_path / "dump.img"
    subprocess.run(["btrfs-image", "-c", "9", str(img), str(dump)], check=True, capture_output=True)
    ids = set(truth["all"]["subvolumes"].values())
    for P in PAGE_SIZES:
        on_dump = _figures(dump, ids, P, read_data=False, inline_data=False)
        on_image = _figures(img, ids, P, read_data=False, inline_data=False)
        assert on_dump == on_image
        want = truth["all"]["pages"][str(P)]
        assert all(on_dump[d] >= want[d] for d in ("content_dedupe", "file_fingerprint", "overlay_copy_up"))
    with pytest.raises(NoFileDataError, match="metadata dump holds no file data"):
        _figures(dump, ids, 4096, read_data=True)


# --- through the report command ---------------------------------------------------------------


@pytest.mark.parametrize("P", PAGE_SIZES)
def test_report_read_data_equals_the_kernel_counts(designs_image, P):
    """``report --read-data``: the whole filesystem is the fixture's "all" scope (the top level holds no files)."""
    name, img, truth = designs_image
    doc = run_json("report", "--read-data", "--json", "--page-size", P, img)
    models, want = doc["totals"]["models"], truth["all"]["pages"][str(P)]
    assert {d: models[d]["pages"] for d in ("overlay_copy_up", "file_fingerprint", "content_dedupe")} == \
        {d: want[d] for d in ("overlay_copy_up", "file_fingerprint", "content_dedupe")}
    assert doc["totals"]["per_inode"]["pages"] == want["per_inode"]
    for d in ("file_fingerprint", "content_dedupe"):
        assert (models[d]["content_source"], models[d]["unknown_pages"]) == ("data", 0)
    assert models["overlay_copy_up"]["content_source"] is None
    for d in ("overlay_copy_up", "file_fingerprint", "content_dedupe"):  # fair shares add up to the saving
        assert sum(s["saved_pages"] for s in models[d]["subvolumes"]) == pytest.approx(models[d]["saved_pages"],
                                                                                      abs=0.01)
        assert sum(s["per_inode_pages"] for s in models[d]["subvolumes"]) == want["per_inode"]


def test_report_default_is_the_checksum_tree(designs_image):
    name, img, truth = designs_image
    doc = run_json("report", "--json", img)
    models = doc["totals"]["models"]
    want = truth["all"]["pages"]["4096"]
    assert models["content_dedupe"]["content_source"] == "csum_tree"
    assert models["content_dedupe"]["unknown_pages"] == _nocow_pages(name, 4096)
    assert models["overlay_copy_up"]["pages"] == want["overlay_copy_up"]
    assert models["content_dedupe"]["pages"] > want["content_dedupe"]  # compressed and NOCOW: a lower bound
    merges = models["content_dedupe"]["expected_false_merges"]
    assert (0 < merges < 0.01) if name == "designs-crc32c" else merges < 1e-60
    text = run("report", img).stdout
    assert "Page-content dedupe saves the most" in text and "Of the designs that apply, EROFS file fingerprints" in text



@pytest.mark.parametrize("page_size", ["4096", "65536"])
def test_report_the_same_on_one_core_and_on_several(designs_image, monkeypatch, page_size):
    """The models and breakdowns run side by side (``btrfsscan.concurrency``): the document does not depend
    on it, nor on the order the threads ran in."""
    name, img, truth = designs_image
    args = ("report", "--json", "--top", "50", "--page-size", page_size, img)
    monkeypatch.setattr(concurrency, "cores", lambda: 4)
    several = run_json(*args)
    monkeypatch.setattr(concurrency, "cores", lambda: 1)
    assert run_json(*args) == several

def test_report_read_data_refused_on_a_metadata_dump(designs_image, tmp_path):
    if not shutil.which("btrfs-image"):
        pytest.skip("btrfs-image (btrfs-progs) not installed")
    name, img, truth = designs_image
    dump = tmp_path / "dump.img"
    subprocess.run(["btrfs-image", "-c", "9", str(img), str(dump)], check=True, capture_output=True)
    result = run("report", "--read-data", dump)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "metadata dump holds no file data" in lines[0], result.stderr
    doc = run_json("report", "--json", dump)  # the checksum-tree figures still work
    assert doc["totals"]["models"]["content_dedupe"]["content_source"] == "csum_tree"
    assert doc["totals"]["models"]["content_dedupe"]["pages"] >= truth["all"]["pages"]["4096"]["content_dedupe"]


def test_page_hash_ignores_where_eof_falls():
    assert page_hash(b"ab") == page_hash(b"ab" + bytes(4094)) == page_hash(memoryview(b"ab\0\0"))
    assert page_hash(bytes(4096)) == page_hash(b"")
    assert page_hash(b"ab\0c") != page_hash(b"abc")


def _kernel_unavailable() -> str | None:
    return kernel_unavailable(("losetup",))


@pytest.mark.kernel
@pytest.mark.skipif(_kernel_unavailable() is not None, reason=_kernel_unavailable() or "")
def test_read_data_equals_a_live_kernel_count(designs_image):
    """Mount the committed image read-only, read and hash every regular inode now, count each design."""
    import design_truth
    import kernel

    name, img, truth = designs_image
    with kernel.loop_devices([img]) as devices:
        with kernel.mounted(devices[0], "ro,subvolid=5") as mnt:
            live = {scope: design_truth.count(mnt, set(t["subvolumes"].values())) for scope, t in truth.items()}
    for scope, t in truth.items():
        assert live[scope] == t["pages"], scope
        for P in PAGE_SIZES:
            got = _figures(img, set(t["subvolumes"].values()), P, read_data=True)
            assert {k: got[k] for k in _DESIGNS} == {k: live[scope][str(P)][k] for k in _DESIGNS}


def test_an_empty_checksum_tree_locates_nothing():
    """No EXTENT_CSUM item at all (nodatasum data, or a csum tree skipped as damaged): every sector is unknown."""
    table = csum_table([], CsumType.CRC32C, 4096)
    assert table.locate(np.array([0, 4096, 1 << 30])).tolist() == [-1, -1, -1]


@pytest.mark.parametrize("name", ["many", "sample", "reflinks"])
def test_overlay_units_over_distinct_mappings_are_the_per_version_ones(name, fixture_images):
    """``overlay_units`` compares mappings once per distinct mapping: the versions it puts in one unit are
    exactly those with equal (ino, overlay mapping of the version itself), grouped here by a dict; and the
    representatives keep the layout's order (their segments grouped by version, as ``overlay_mapping``
    needs)."""
    fs = open_filesystem(list(fixture_images("files", name).values()))
    try:
        versions = inode_versions(FileScanner(fs.reader, fs.warnings).scan_leaves(fs.subvolumes.live()), fs.warnings)
    finally:
        fs.close()
    layout = build_layout(versions, 4096, 4096)
    maps = distinct_mappings(layout)
    assert maps.layout.n_inodes < layout.n_inodes
    assert (np.diff(maps.layout.seg_inode) >= 0).all()
    starts, values = overlay_copy_up.overlay_mapping(layout)
    seen: dict[tuple, int] = {}
    want = [seen.setdefault((int(layout.ino[v]), *values[starts[v]:starts[v + 1]].tolist()), len(seen))
            for v in range(layout.n_inodes)]
    shown = layout.npages > 0
    # inode numbers past 2^40 no longer pack with the mapping id into one key: the general grouping
    for ino_offset in (0, 1 << 62):
        units = overlay_copy_up.overlay_units(dataclasses.replace(layout, ino=layout.ino + np.uint64(ino_offset)), maps)
        got = np.full(layout.n_inodes, -1)
        got[units.holder] = units.unit
        pairs = set(zip(np.array(want)[shown].tolist(), got[shown].tolist()))
        assert len(pairs) == len({w for w, _ in pairs}) == len({g for _, g in pairs})


@pytest.mark.parametrize("name", ["compress", "reflinks", "sparse-holes"])
@pytest.mark.parametrize("tiny", [False, True])
def test_read_data_progress_ends_at_its_total(name, tiny, fixture_images, monkeypatch):
    """``hash_pages``'s progress rises to exactly the bytes of the pieces (what the progress bar's total
    is), whatever is read through or read whole (compressed extents, merged gaps, tiny batches)."""
    from btrfsscan.model import file_data

    if tiny:
        monkeypatch.setattr(file_data, "ASSEMBLY_BYTES", 1)
        monkeypatch.setattr(file_data, "READ_BYTES", 4096)
    fs = open_filesystem(list(fixture_images("files", name).values()))
    try:
        versions = inode_versions(FileScanner(fs.reader, fs.warnings, decompress_inline=True)
                                  .scan_leaves(fs.subvolumes.live()), fs.warnings)
        requests = C.page_requests(distinct_mappings(build_layout(versions, 16384, fs.superblock.sectorsize)))
        seen: list[int] = []
        hash_pages(fs.volume, requests.extents, requests.pieces, requests.n_outputs, 16384, fs.warnings, seen.append)
    finally:
        fs.close()
    assert seen and seen == sorted(seen)
    assert seen[-1] == int(requests.pieces["length"].sum())


@pytest.mark.kernel
@pytest.mark.skipif(_kernel_unavailable() is not None, reason=_kernel_unavailable() or "")
def test_inline_extents_followed_by_data_read_exactly(tmp_path):
    """Small files (inline, one of them compressed) with a reflink to offset 4096 after their inline extent,
    which the kernel keeps (``x``, ``xz``), and the same bytes written as one regular extent (``y``, ``yz``):
    ``report --read-data`` equals the count made by reading every file through the kernel at 4K, 16K and
    64K pages, with no unknown page; from the checksum tree too they are known (a lower bound: ``x``'s first
    page is not equal to ``y``'s there, its inline sector keyed by the inline data's hash)."""
    import design_truth
    import kernel

    img = kernel.make_sparse_image(tmp_path / "inline.img", 256 << 20)
    with kernel.loop_devices([img]) as (dev,):
        kernel.make_fs([dev])
        with kernel.mounted(dev) as mnt:
            body = kernel.seeded_content("inline-body", 16384)
            (mnt / "body").write_bytes(body)
            heads = {"x": kernel.seeded_content("inline-head", 1363), "xz": b"compressible " * 100}
            for name, head in heads.items():
                (mnt / name).touch()
                if name == "xz":
                    subprocess.run(["btrfs", "property", "set", str(mnt / name), "compression", "zstd"],
                                   check=True, capture_output=True)
                (mnt / name).write_bytes(head)
                os.sync()
                subprocess.run(["xfs_io", "-c", f"reflink {mnt / 'body'} 0 4096 16384", str(mnt / name)],
                               check=True, capture_output=True)
                (mnt / ("y" + name[1:])).write_bytes(head + bytes(4096 - len(head)) + body)
            os.sync()
        dump = subprocess.run(["btrfs", "inspect-internal", "dump-tree", "-t", "5", str(img)],
                              capture_output=True, text=True, check=True).stdout
        assert dump.count("type 0 (inline)") == 2 and "compression 3 (zstd)" in dump  # what the kernel kept
        with kernel.mounted(dev, "ro,subvolid=5") as mnt:
            want = design_truth.count(mnt)
    designs = ("per_inode", "overlay_copy_up", "file_fingerprint", "content_dedupe")
    for P in PAGE_SIZES:
        models = run_json("report", "--read-data", "--json", "--page-size", P, img)["totals"]["models"]
        assert {d: models[d]["pages"] for d in designs} == {d: want[str(P)][d] for d in designs}, P
        assert all(models[d]["unknown_pages"] == 0 for d in ("file_fingerprint", "content_dedupe"))
        by_csums = run_json("report", "--json", "--page-size", P, img)["totals"]["models"]["content_dedupe"]
        assert by_csums["unknown_pages"] == 0
        assert by_csums["pages"] == want[str(P)]["content_dedupe"] + 2  # x's and xz's first page: not y's


@pytest.mark.kernel
@pytest.mark.skipif(_kernel_unavailable() is not None, reason=_kernel_unavailable() or "")
def test_terabyte_sparse_files_cost_their_items(tmp_path):
    """Three 1 TiB sparse files made by the kernel (one seeded page at 512 GiB each, written separately;
    one also with 1 MiB of written zeros first), a 64 GiB fallocated file with that page in its middle,
    and a small file: every design counts their pages, the content designs see the three sparse files as
    one content (a hole reads as zeros) and prealloc as the zero page, and the report's memory follows
    the items, not the pages (before: ~15 GB and a minute)."""
    import kernel

    TiB, GiB, P = 1 << 40, 1 << 30, 4096
    page = kernel.seeded_content("sparse-page", P)
    img = kernel.make_sparse_image(tmp_path / "sparse.img", 80 * GiB)  # sparse: prealloc writes no data
    with kernel.loop_devices([img]) as (dev,):
        kernel.make_fs([dev])
        with kernel.mounted(dev) as mnt:
            for name, zeros in (("a", 0), ("b", 0), ("c", 1 << 20)):
                with open(mnt / name, "wb") as f:
                    f.write(bytes(zeros))
                    f.truncate(TiB)
                    os.pwrite(f.fileno(), page, TiB // 2)
            with open(mnt / "prealloc", "wb") as f:
                os.posix_fallocate(f.fileno(), 0, 64 * GiB)
                os.pwrite(f.fileno(), page, 32 * GiB)
            (mnt / "small").write_bytes(b"hi\n")
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.returncode); "
             "sys.stdout.write(r.stdout)")
    done = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "btrfsscan", "report", "--json",
                           str(img)], capture_output=True, text=True, timeout=300, check=True)
    peak_kib, code, out = done.stdout.split("\n", 2)
    assert code == "0", done.stderr
    models = json.loads(out)["totals"]["models"]
    pages = 3 * (TiB // P) + 64 * GiB // P + 1
    assert {name: m["pages"] for name, m in models.items()} == {
        "per_inode": pages, "shared_extent": pages, "shared_extent_compressed": pages, "rfc_as_posted": pages,
        "overlay_copy_up": pages, "file_fingerprint": TiB // P + 64 * GiB // P + 1,
        "content_dedupe": 3}  # the zero page, the seeded page, "hi\n"
    assert int(peak_kib) < 200 * 1024


def _inline_item(data: bytes, compression: Compression = Compression.NONE, ram_bytes: int | None = None) -> bytes:
    """A raw inline EXTENT_DATA item (btrfs_file_extent_item_head, then the data)."""
    head = struct.pack("<QQBBHB", 7, len(data) if ram_bytes is None else ram_bytes, compression, 0, 0,
                       FileExtentType.INLINE)
    return head + data


class _Namespace:
    """``first_extent(sub, ino)`` from a dict (an exception value is raised), subvolumes by id."""

    def __init__(self, items: dict):
        self.items = items
        self.subvols = {sub: object() for sub, _ in items}
        self._sub_id = {id(v): k for k, v in self.subvols.items()}

    def first_extent(self, sub, ino):
        found = self.items.get((self._sub_id[id(sub)], ino))
        if isinstance(found, Exception):
            raise found
        return found


def test_inline_pieces_read_again_or_unknown_with_a_warning():
    """--read-data reads an inline extent again where it begins a page holding more: as the scan read it,
    or, where it is gone, changed, damaged or no longer inline, the page is unknown with one warning."""
    from btrfsscan.errors import CorruptionError
    from btrfsscan.model.file_data import INLINE_PIECE_DTYPE, inline_pieces

    data = bytes(range(1, 201))
    packed = zlib.compress(data)
    regular = struct.pack("<QQBBHB", 7, 4096, 0, 0, 0, FileExtentType.REG) + bytes(32)
    items = {(256, 257): _inline_item(data), (256, 258): _inline_item(packed, Compression.ZLIB, len(data)),
             (256, 259): _inline_item(b"changed since the scan"), (256, 260): regular,
             (256, 261): CorruptionError("tree 256 leaf 30408704: bad checksum")}
    rows = [(0, 256, 257, 150), (1, 256, 258, 200), (2, 256, 259, 10), (3, 256, 260, 10), (4, 256, 261, 10),
            (5, 256, 262, 10), (6, 999, 257, 10)]
    requests = np.zeros(len(rows), INLINE_PIECE_DTYPE)
    for i, (page, sub, ino, length) in enumerate(rows):
        requests[i] = (page, sub, ino, length, page_hash(data))
    warnings = Warnings()
    got = inline_pieces(_Namespace(items), requests, 4096, warnings)
    assert got == {0: data[:150], 1: data, 2: None, 3: None, 4: None, 5: None, 6: None}
    said = warnings.messages()
    assert len(said) == 5
    for ino in (259, 260, 262):
        assert any(f"subvolume 256 inode {ino}: not found again as the scan read it" in m for m in said), said
    assert any("subvolume 256 inode 261: tree 256 leaf 30408704: bad checksum; the pages it begins are unknown" in m
               for m in said), said
    assert any("subvolume 999 inode 257: not found again" in m for m in said), said
