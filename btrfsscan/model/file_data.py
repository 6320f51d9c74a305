"""Reading file data to hash pages exactly (``--read-data``).

The caller (the content layer) says which pages it wants and where their
bytes are: ``extents`` (distinct data extents, each read once, however many
files and snapshots reference it) and ``pieces`` (a range of one extent's
bytes -- logical, or decompressed for a compressed extent -- placed in one
output page). Only each output page's 16-byte hash is kept
(``content_hash.page_hash``).

* A page that is one piece at offset 0 (nearly all: a page inside one
  extent) is hashed straight from the read buffer. Uncompressed extents are
  read in logical order, neighbours merged into reads of up to
  ``READ_BYTES`` (gaps of up to ``MERGE_GAP`` read through), large extents
  in slices of that size; a read that copy 1 holds in one range of a
  mapped device is hashed where it lies, without a copy, once the kernel
  has mapped all its pages (``Volume.view``; a page it cannot read sends it
  through ``read``, which says why).
* A compressed extent is read whole and decompressed once.
* A page of several pieces (it straddles extents, or starts inside one:
  pages larger than a sector) is assembled in a buffer of at most
  ``ASSEMBLY_BYTES``: such pages are taken in batches, each batch's pieces
  read in logical order (merged like the rest), then hashed. The few pages
  that begin with an inline extent and hold more (later extents in a page
  larger than a sector, or an EOF inside compressed inline data) get its
  bytes first (``inline_pieces``: the item read again from its fs tree).

So memory stays bounded whatever the extents' sizes and layout. Reads go
through the volume's logical reads (any RAID profile, every mirror tried);
a merged read that fails is retried extent by extent, so one bad extent
costs only its own pages. A btrfs-image metadata dump holds no file data:
refused with one clear error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import xxhash

from ..errors import BtrfsScanError, Warnings
from ..format.compression import DecompressionError, decompress
from ..format.constants import Compression, FileExtentType
from ..format.items import FileExtentItem
from ..volumes.volume import Volume
from . import log_items
from .content_hash import page_hash

if TYPE_CHECKING:
    from .namespace import Namespace

#: One distinct extent to read: uncompressed, its logical range; compressed, the whole on-disk extent.
READ_EXTENT_DTYPE = np.dtype([("disk_bytenr", "<u8"), ("disk_num_bytes", "<u8"), ("ram_bytes", "<u8"),
                              ("compression", "u1")])
#: ``length`` bytes from ``src`` of extent ``extent`` (from its start; decompressed bytes if compressed),
#: placed at ``dst`` of output page ``page``.
PIECE_DTYPE = np.dtype([("page", "<i8"), ("extent", "<i8"), ("src", "<i8"), ("dst", "<i4"), ("length", "<i4")])
#: An inline extent whose bytes (``length`` of them, decompressed) begin output page ``page``, which holds more
#: than them: read again from inode ``ino``'s EXTENT_DATA item at offset 0 in subvolume ``subvol``, and
#: checked against ``inline_hash``, which the scan took.
INLINE_PIECE_DTYPE = np.dtype([("page", "<i8"), ("subvol", "<u8"), ("ino", "<u8"), ("length", "<i4"),
                               ("inline_hash", "V16")])
#: The most bytes read at once (one buffer).
READ_BYTES = 4 << 20
#: Unneeded bytes between two needed ranges that are read through rather than starting a new read.
MERGE_GAP = 256 << 10
#: The most bytes of pages of several pieces assembled at once.
ASSEMBLY_BYTES = 32 << 20

_I64 = np.int64


class NoFileDataError(BtrfsScanError):
    """The input has no file data to read (a btrfs-image metadata dump)."""


def check_has_data(volume: Volume) -> None:
    """NoFileDataError for a metadata dump: its data extents were never copied."""
    if volume.metadump is not None:
        raise NoFileDataError(
            f"{next(iter(volume.devices.values())).name}: a btrfs-image metadata dump holds no file data, so "
            "--read-data cannot hash pages; the checksum-tree figures (the default) work on dumps")


def _hash_all(buffer: memoryview, raw: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """``page_hash`` of ``buffer[start:start + length]`` for each (one tight loop: a call per page costs more
    than the hash), as ``V16``."""
    out = np.empty(len(start), "V16")
    end = start + length
    full = (length > 0) & (raw[np.maximum(end - 1, 0)] != 0)
    digest = xxhash.xxh3_128_digest
    out[full] = np.frombuffer(b"".join([digest(buffer[a:b]) for a, b in zip(start[full].tolist(), end[full].tolist())]),
                              "V16")
    rest = ~full
    out[rest] = np.frombuffer(b"".join([page_hash(buffer[a:b]) for a, b in zip(start[rest].tolist(),
                                                                                 end[rest].tolist())]), "V16")
    return out


def _reads(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Read numbers for needed ranges ``[lo, hi)`` sorted by ``lo``: a new read where the gap to everything
    before exceeds ``MERGE_GAP`` or the read would pass ``READ_BYTES``."""
    if not len(lo):
        return np.zeros(0, _I64)
    reach = np.maximum.accumulate(hi)
    gap = np.ones(len(lo), bool)
    gap[1:] = lo[1:] > reach[:-1] + MERGE_GAP
    run = np.cumsum(gap) - 1
    run_lo = lo[gap][run]
    # within a run of close ranges, one read per READ_BYTES of it
    slice_of = (lo - run_lo) // READ_BYTES
    new = gap.copy()
    new[1:] |= slice_of[1:] != slice_of[:-1]
    return np.cumsum(new) - 1


class _Reader:
    """Logical reads with the fallbacks and the warnings of ``hash_pages``."""

    def __init__(self, volume: Volume, sectorsize: int, warnings: Warnings,
                 progress: Callable[[int], None] | None) -> None:
        self.volume, self.sectorsize, self.warnings, self.progress = volume, sectorsize, warnings, progress
        self.done = 0
        self.bad: set[int] = set()

    def read(self, logical: int, length: int) -> bytes:
        return _read(self.volume, logical, length)

    def hashed(self, pieces: np.ndarray) -> None:
        """``pieces`` are done (hashed, or unknown): their bytes count as progress."""
        self.done += int(pieces["length"].sum())
        if self.progress:
            self.progress(self.done)

    def fail(self, logical: int, exc: Exception) -> None:
        if logical not in self.bad:
            self.bad.add(logical)
            self.warnings.add(f"data extent unreadable, its pages are counted as unknown: {exc}",
                              f"data extent at logical {logical}")

    def spans(self, lo: np.ndarray, hi: np.ndarray, extent_start: np.ndarray):
        """For ranges ``[lo, hi)`` (logical, sorted by ``lo``) of extents starting at ``extent_start``: yields
        (indices, buffer or None, its logical start) per read; a failed read is retried per extent, and an
        extent that cannot be read yields None for its ranges (warned once)."""
        S = self.sectorsize
        read_of = _reads(lo, hi)
        bounds = np.flatnonzero(np.diff(read_of, prepend=-1, append=read_of[-1] + 1 if len(read_of) else 0))
        for r0, r1 in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            at = int(lo[r0]) // S * S
            end = -(-int(hi[r0:r1].max()) // S) * S
            mapped = self.volume.view(at, end - at)
            if mapped is not None:  # hashed where the mapped device holds it, not copied
                view, done = mapped
                try:
                    yield np.arange(r0, r1), view, at
                finally:
                    done()
                continue
            try:
                yield np.arange(r0, r1), self.read(at, end - at), at
                continue
            except BtrfsScanError:
                pass
            for x in np.unique(extent_start[r0:r1]).tolist():  # one extent at a time
                mine = r0 + np.flatnonzero(extent_start[r0:r1] == x)
                at = int(lo[mine].min()) // S * S
                end = -(-int(hi[mine].max()) // S) * S
                try:
                    yield mine, self.read(at, end - at), at
                except BtrfsScanError as exc:
                    self.fail(x, exc)
                    yield mine, None, at


def inline_pieces(namespace: Namespace, requests: np.ndarray, sectorsize: int,
                  warnings: Warnings) -> dict[int, bytes | None]:
    """Output page -> the bytes its inline extent places at its start, for ``requests``
    (``INLINE_PIECE_DTYPE``): the item read again (through the log replay, as the scan read it), decompressed;
    None, with a warning, where it is gone or its data no longer hashes as the scan's."""
    out: dict[int, bytes | None] = {}
    for row in requests:
        subvol, ino = int(row["subvol"]), int(row["ino"])
        where = f"inline extent of subvolume {subvol} inode {ino}"
        sub = namespace.subvols.get(subvol)
        try:
            item = namespace.first_extent(sub, ino) if sub is not None else None
            data = None if item is None else _inline_data(item, sectorsize, where)
        except (BtrfsScanError, DecompressionError) as exc:
            warnings.add(f"{where}: {exc}; the pages it begins are unknown")
            data = None
        else:
            if data is None or page_hash(data) != bytes(row["inline_hash"]):
                warnings.add(f"{where}: not found again as the scan read it; the pages it begins are unknown")
                data = None
        out[int(row["page"])] = None if data is None else data[:int(row["length"])]
    return out


def _inline_data(item: bytes, sectorsize: int, where: str) -> bytes | None:
    """The file bytes of a raw EXTENT_DATA item, decompressed; None when it is not inline (CorruptionError
    when it cannot be read)."""
    extent = log_items.extent(item, where)
    if extent.type != FileExtentType.INLINE:
        return None
    data = item[FileExtentItem.HEAD.size:]
    return decompress(extent.compression, data, extent.ram_bytes, sectorsize) if extent.compression else data


def hash_pages(volume: Volume, extents: np.ndarray, pieces: np.ndarray, n_pages: int, page_size: int,
               warnings: Warnings, progress: Callable[[int], None] | None = None,
               inline: Mapping[int, bytes | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per output page: its hash (``V16``) and whether it is known (see the module docstring).

    Pages no piece names hash as the zero page. A page with a piece from an
    extent that cannot be read or decompressed is unknown, with one warning
    per such extent. ``inline`` (``inline_pieces``): the bytes that begin
    some pages, None where unknown. ``progress(n)`` is called with the bytes of the pieces done so far,
    which end at ``pieces["length"].sum()`` (the bytes read differ: gaps between close ranges are read
    through, a compressed extent is read whole)
    """
    check_has_data(volume)
    reader = _Reader(volume, volume.superblock.sectorsize, warnings, progress)
    hashes = np.zeros(n_pages, "V16")
    hashes[:] = page_hash(b"")
    known = np.ones(n_pages, bool)
    inline = inline or {}
    counts = np.bincount(pieces["page"], minlength=n_pages)
    alone = (counts[pieces["page"]] == 1) & (pieces["dst"] == 0)
    compressed = extents["compression"][pieces["extent"]] != Compression.NONE
    _plain_pages(reader, extents, pieces[alone & ~compressed], hashes, known)
    _compressed_pages(reader, extents, pieces[alone & compressed], hashes, known)
    _assembled_pages(reader, extents, pieces[~alone], page_size, hashes, known, inline)
    return hashes, known


def _plain_pages(reader: _Reader, extents: np.ndarray, pieces: np.ndarray, hashes: np.ndarray,
                 known: np.ndarray) -> None:
    """Pages of one piece of an uncompressed extent, hashed from merged reads."""
    extent_start = extents["disk_bytenr"][pieces["extent"]].astype(_I64)
    lo = extent_start + pieces["src"]
    order = np.argsort(lo, kind="stable")
    pieces, lo, extent_start = pieces[order], lo[order], extent_start[order]
    length = pieces["length"].astype(_I64)
    for idx, data, at in reader.spans(lo, lo + length, extent_start):
        page = pieces["page"][idx]
        if data is None:
            known[page] = False
        else:
            hashes[page] = _hash_all(memoryview(data), np.frombuffer(data, np.uint8), lo[idx] - at, length[idx])
        reader.hashed(pieces[idx])


def _decompressed(reader: _Reader, ext: np.void) -> bytes | None:
    """A compressed extent's data, None (warned once) where it cannot be read or decompressed."""
    start = int(ext["disk_bytenr"])
    try:
        stored = reader.read(start, int(ext["disk_num_bytes"]))
        return decompress(int(ext["compression"]), stored, int(ext["ram_bytes"]), reader.sectorsize)
    except (BtrfsScanError, DecompressionError) as exc:
        reader.fail(start, exc)
        return None


def _compressed_pages(reader: _Reader, extents: np.ndarray, pieces: np.ndarray, hashes: np.ndarray,
                      known: np.ndarray) -> None:
    """Pages of one piece of a compressed extent: each extent read and decompressed once, in logical order."""
    pieces = pieces[np.lexsort((pieces["src"], extents["disk_bytenr"][pieces["extent"]]))]
    bounds = np.flatnonzero(np.diff(pieces["extent"], prepend=-1, append=-1) != 0)
    for b0, b1 in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        mine = pieces[b0:b1]
        data = _decompressed(reader, extents[int(mine["extent"][0])])
        if data is None:
            known[mine["page"]] = False
        else:
            hashes[mine["page"]] = _hash_all(memoryview(data), np.frombuffer(data, np.uint8),
                                             mine["src"].astype(_I64), mine["length"].astype(_I64))
        reader.hashed(mine)


def _assembled_pages(reader: _Reader, extents: np.ndarray, pieces: np.ndarray, page_size: int,
                     hashes: np.ndarray, known: np.ndarray, inline: Mapping[int, bytes | None]) -> None:
    """Pages of several pieces, assembled ``ASSEMBLY_BYTES`` at a time (see the module docstring); ``inline``:
    the bytes that begin some of them (a page of nothing else among them)."""
    if not len(pieces) and not inline:
        return
    pieces = pieces[np.argsort(pieces["page"], kind="stable")]
    starting = np.array(sorted(inline), np.int64)  # the pages an inline extent begins
    pages = np.union1d(pieces["page"], starting)
    page_slot = dict(zip(starting.tolist(), np.searchsorted(pages, starting).tolist()))
    per_batch = max(1, ASSEMBLY_BYTES // page_size)
    slot = np.searchsorted(pages, pieces["page"])
    batch_of = slot // per_batch
    # batch b: its pages pages[b * per_batch:...], its pieces pieces[bounds[b]:bounds[b + 1]]
    bounds = np.searchsorted(batch_of, np.arange(-(-len(pages) // per_batch) + 1))
    for b, (b0, b1) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
        mine = pieces[b0:b1]
        first = b * per_batch
        batch_pages = pages[first:first + per_batch]
        buffer = bytearray(len(batch_pages) * page_size)
        lo, hi = np.searchsorted(starting, batch_pages[[0, -1]], side="left") + (0, 1)
        for page in starting[lo:hi].tolist():
            data = inline[page]
            if data is None:
                known[page] = False
            else:
                at = (page_slot[page] - first) * page_size
                buffer[at:at + len(data)] = data
        at = (slot[b0:b1] - first) * page_size + mine["dst"]
        bad = np.zeros(len(mine), bool)
        plain = extents["compression"][mine["extent"]] == Compression.NONE
        _assemble_plain(reader, extents, mine, at, plain, buffer, bad)
        for x in np.unique(mine["extent"][~plain]).tolist():
            of = np.flatnonzero(~plain & (mine["extent"] == x))
            data = _decompressed(reader, extents[x])
            if data is None:
                bad[of] = True
                continue
            for i in of.tolist():
                src, n = int(mine["src"][i]), int(mine["length"][i])
                buffer[int(at[i]):int(at[i]) + n] = data[src:src + n]
        view = memoryview(buffer)
        starts = np.arange(len(batch_pages), dtype=_I64) * page_size
        hashes[batch_pages] = _hash_all(view, np.frombuffer(buffer, np.uint8), starts,
                                        np.full(len(batch_pages), page_size, _I64))
        known[mine["page"][bad]] = False
        reader.hashed(mine)


def _assemble_plain(reader: _Reader, extents: np.ndarray, pieces: np.ndarray, at: np.ndarray, plain: np.ndarray,
                    buffer: bytearray, bad: np.ndarray) -> None:
    """Copy the uncompressed pieces ``plain`` into ``buffer`` at ``at``, read in logical order, merged."""
    sel = np.flatnonzero(plain)
    extent_start = extents["disk_bytenr"][pieces["extent"][sel]].astype(_I64)
    lo = extent_start + pieces["src"][sel]
    order = np.argsort(lo, kind="stable")
    sel, lo, extent_start = sel[order], lo[order], extent_start[order]
    length = pieces["length"][sel].astype(_I64)
    for idx, data, start in reader.spans(lo, lo + length, extent_start):
        if data is None:
            bad[sel[idx]] = True
            continue
        for i, src, n in zip(sel[idx].tolist(), (lo[idx] - start).tolist(), length[idx].tolist()):
            buffer[int(at[i]):int(at[i]) + n] = data[src:src + n]


def _read(volume: Volume, logical: int, length: int) -> bytes:
    """The bytes of a logical range from the first mirror that reads it."""
    problems = []
    for mirror in range(1, volume.num_copies(logical) + 1):
        try:
            return volume.read(logical, length, mirror)
        except BtrfsScanError as exc:
            problems.append(f"mirror {mirror}: {exc}")
    raise BtrfsScanError(f"logical {logical} length {length}: " + "; ".join(problems))
