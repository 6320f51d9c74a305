"""Reading file data to hash pages exactly (``--read-data``).

The caller (the content layer) says which pages it wants and where their
bytes are: ``extents`` (distinct data extents, each read once, however many
files and snapshots reference it) and ``pieces`` (a range of one extent's
bytes -- logical, or decompressed for a compressed extent -- placed in one
output page). Extents are read in logical order through the volume's logical
reads (any RAID profile, every mirror tried), compressed ones decompressed;
each output page is hashed (``content_hash.page_hash``) once all its pieces
are in, and only its 16-byte hash is kept. Uncompressed extents are read in
slices of ``READ_BYTES``, so memory stays bounded whatever an extent's size.
A btrfs-image metadata dump holds no file data: refused with one clear error.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import BtrfsScanError, Warnings
from ..format.compression import DecompressionError, decompress
from ..format.constants import Compression
from ..volumes.volume import Volume
from .content_hash import page_hash

#: One distinct extent to read: uncompressed, its logical range; compressed, the whole on-disk extent.
READ_EXTENT_DTYPE = np.dtype([("disk_bytenr", "<u8"), ("disk_num_bytes", "<u8"), ("ram_bytes", "<u8"),
                              ("compression", "u1")])
#: ``length`` bytes from ``src`` of extent ``extent`` (from its start; decompressed bytes if compressed),
#: placed at ``dst`` of output page ``page``.
PIECE_DTYPE = np.dtype([("page", "<i8"), ("extent", "<i8"), ("src", "<i8"), ("dst", "<i4"), ("length", "<i4")])
#: Uncompressed extents are read this much at a time.
READ_BYTES = 8 << 20


class NoFileDataError(BtrfsScanError):
    """The input has no file data to read (a btrfs-image metadata dump)."""


def check_has_data(volume: Volume) -> None:
    """NoFileDataError for a metadata dump: its data extents were never copied."""
    if volume.metadump is not None:
        raise NoFileDataError(
            f"{next(iter(volume.devices.values())).name}: a btrfs-image metadata dump holds no file data, so "
            "--read-data cannot hash pages; the checksum-tree figures (the default) work on dumps")


class _Pending:
    """Output pages of several pieces, assembled until their last piece arrives."""

    def __init__(self, page_size: int, expected: np.ndarray) -> None:
        self.page_size = page_size
        self.expected = expected  # pieces per page
        self.buffers: dict[int, tuple[bytearray, int]] = {}

    def add(self, page: int, dst: int, data: bytes | memoryview) -> bytearray | None:
        """Place a piece; the page's bytes once it is complete, else None."""
        buf, got = self.buffers.pop(page, None) or (bytearray(self.page_size), 0)
        buf[dst:dst + len(data)] = data
        got += 1
        if got == self.expected[page]:
            return buf
        self.buffers[page] = (buf, got)
        return None

    def drop(self, page: int) -> None:
        self.buffers.pop(page, None)


def hash_pages(volume: Volume, extents: np.ndarray, pieces: np.ndarray, n_pages: int, page_size: int,
               warnings: Warnings, progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per output page: its hash (``V16``) and whether it is known.

    Pages no piece names hash as the zero page. A page with a piece from an
    extent that cannot be read or decompressed is unknown, with one warning
    per such extent. ``progress(n)`` is called with the bytes read so far.
    """
    check_has_data(volume)
    sectorsize = volume.superblock.sectorsize
    hashes = np.zeros(n_pages, "V16")
    hashes[:] = page_hash(b"")
    known = np.ones(n_pages, bool)
    order = np.lexsort((pieces["src"], pieces["extent"]))
    pieces = pieces[order]
    counts = np.bincount(pieces["page"], minlength=n_pages)
    pending = _Pending(page_size, counts)
    bounds = np.searchsorted(pieces["extent"], np.arange(len(extents) + 1)).tolist()
    # the pieces as Python lists, once: the loop below touches each piece once, without numpy per extent
    page_l, src_l, dst_l, len_l = (pieces[f].tolist() for f in ("page", "src", "dst", "length"))
    alone_l = ((counts[pieces["page"]] == 1) & (pieces["dst"] == 0)).tolist()
    done = 0
    for x in np.argsort(extents["disk_bytenr"], kind="stable").tolist():
        b0, b1 = bounds[x], bounds[x + 1]
        if b0 == b1:
            continue
        ext = extents[x]
        mine = pieces[b0:b1]
        i = b0
        for base, limit, data in _extent_bytes(volume, ext, mine, sectorsize, warnings):
            if data is None:
                known[mine["page"]] = False
                for page in mine["page"].tolist():
                    pending.drop(page)
                break
            done += len(data) if ext["compression"] == Compression.NONE else int(ext["disk_num_bytes"])
            view = memoryview(data)
            while i < b1 and src_l[i] < limit:  # pieces are in src order: those of this slice come next
                page, src, length = page_l[i], src_l[i] - base, len_l[i]
                if alone_l[i]:
                    hashes[page] = page_hash(view[src:src + length])
                else:
                    whole = pending.add(page, dst_l[i], view[src:src + length])
                    if whole is not None:
                        hashes[page] = page_hash(whole)
                i += 1
            if progress:
                progress(done)
    return hashes, known


def _extent_bytes(volume: Volume, ext: np.void, pieces: np.ndarray, sectorsize: int, warnings: Warnings):
    """(offset, limit, bytes) slices of one extent: the pieces starting in [offset, limit) lie inside the
    slice, and every piece starts in one slice; (0, 0, None) once when the extent cannot be read or
    decompressed."""
    start = int(ext["disk_bytenr"])
    compression = int(ext["compression"])
    try:
        if compression != Compression.NONE:
            stored = _read(volume, start, int(ext["disk_num_bytes"]))
            yield 0, 1 << 62, decompress(compression, stored, int(ext["ram_bytes"]), sectorsize)
            return
        ends = pieces["src"] + pieces["length"]
        at = int(pieces["src"].min()) // sectorsize * sectorsize
        last = int(ends.max())
        while at < last:
            # a slice reaches past READ_BYTES to the end of every piece starting inside it
            inside = (pieces["src"] >= at) & (pieces["src"] < at + READ_BYTES)
            stop = max(at + READ_BYTES, int(ends[inside].max()) if inside.any() else 0)
            stop = min(-(-stop // sectorsize) * sectorsize, -(-last // sectorsize) * sectorsize)
            yield at, at + READ_BYTES, _read(volume, start + at, stop - at)
            later = pieces["src"] >= at + READ_BYTES
            if not later.any():
                return
            at = int(pieces["src"][later].min()) // sectorsize * sectorsize
    except (BtrfsScanError, DecompressionError) as exc:
        warnings.add(f"data extent unreadable, its pages are counted as unknown: {exc}",
                     f"data extent at logical {start}")
        yield 0, 0, None


def _read(volume: Volume, logical: int, length: int) -> bytes:
    """The bytes of a logical range from the first mirror that reads it."""
    problems = []
    for mirror in range(1, volume.num_copies(logical) + 1):
        try:
            return volume.read(logical, length, mirror)
        except BtrfsScanError as exc:
            problems.append(f"mirror {mirror}: {exc}")
    raise BtrfsScanError(f"logical {logical} length {length}: " + "; ".join(problems))
