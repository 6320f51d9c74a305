"""btrfs-image (metadump) files, read by logical address without restoring them.

A dump is a sequence of clusters: a 1024-byte index block (``meta_cluster``)
listing up to 83 ``(bytenr, size)`` entries, then the entries' payloads back to
back (each its own zlib stream when the cluster is compressed), then zero
padding to the next 1024-byte boundary.  ``bytenr`` is a btrfs *logical*
address, except for the first entry of the first cluster, which is the primary
superblock as read from device offset 65536.  See the corpus README and
btrfs-progs ``image/metadump.h`` / ``image/image-restore.c``.

Memory: only the index is kept (about 50 bytes per entry in ``array``
columns), never the payloads.  A zlib stream does not record its decompressed
length, so compressed payloads are decompressed once while indexing, streaming
in 1 MiB pieces, only to count their length (and to find zlib damage up
front); the bytes are dropped.  Reads decompress again on demand, with a small
LRU cache of whole decompressed payloads (8 MiB by default).  Indexing thus
costs one pass of decompression over the dump, in exchange for exact ranges,
bounded memory and no surprises at read time.

Damage: by default any damage in the container (an index block with the wrong
magic or ``bytenr``, too many items or an unknown compression; a payload past
the end of the file; a payload that is not one complete zlib stream; a file that
ends inside an index block) raises ``CorruptionError`` naming the dump, the file
offset and the problem.

Overlapping or repeated entries (not seen in valid dumps) are resolved with the
later entry in the file winning, which is what a sequential
``btrfs-image -r`` leaves on disk; each such dump gets a line in ``warnings``.
"""

from __future__ import annotations

import heapq
import zlib
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator
from typing import BinaryIO, NoReturn

from ..errors import CorruptionError, DeviceError, NotBtrfsError, ReadError
from ..format import fastparse
from ..format.constants import (
    BTRFS_SUPER_INFO_OFFSET,
    BTRFS_SUPER_INFO_SIZE,
    METADUMP_BLOCK_SIZE,
    METADUMP_VERSIONS,
    MetadumpCompression,
)

_HEADER = fastparse.METADUMP_HEADER
_ITEM = fastparse.METADUMP_ITEM
_MAGIC = _HEADER.prefix("magic")
#: Entries one index block holds (83 in both versions).
ITEMS_PER_CLUSTER = (METADUMP_BLOCK_SIZE - _HEADER.size) // _ITEM.size
_VERSION_OF_MAGIC = {magic: version for version, (magic, _) in METADUMP_VERSIONS.items()}

_IO_CHUNK = 1 << 20  # bytes of compressed payload read at a time
_OUT_CHUNK = 1 << 20  # bytes of decompressed output produced at a time
_OVERLAP_EXAMPLES = 3
_ADDRESS_END = 1 << 64  # logical addresses are u64


def is_metadump(fileobj: BinaryIO) -> bool:
    """True when the file starts with a btrfs-image magic (version 0 or 1); the position is kept."""
    pos = fileobj.tell()
    try:
        fileobj.seek(0)
        head = fileobj.read(_MAGIC.size)
    finally:
        fileobj.seek(pos)
    return len(head) == _MAGIC.size and _MAGIC.unpack_from(head)[0] in _VERSION_OF_MAGIC


class _Damage(Exception):
    """Internal: damage found while indexing, at ``offset``; becomes a CorruptionError or a warning."""

    def __init__(self, offset: int, what: str, error: type[Exception] = CorruptionError, message: str = "") -> None:
        super().__init__(what)
        self.offset = offset
        self.what = what
        self.error = error
        self.message = message  # already formatted, else built from ``what``


class MetadumpImage:
    """A btrfs-image dump opened for reads by logical address.

    ``fileobj`` must be seekable and already decompressed (the caller unpacks
    ``.xz``); it stays owned by the caller and must stay open.  Not thread-safe:
    reads seek the shared file object.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        name: str,
        *,
        cache_bytes: int = 8 << 20,
    ) -> None:
        self.name = name
        self.warnings: list[str] = []
        self.version = 0
        self.clusters = 0
        self._f = fileobj
        # Per entry, in file order (superblock entry included).
        self._e_file = array("Q")  # file offset of the payload
        self._e_stored = array("I")  # stored (possibly compressed) size, u32
        self._e_len = array("Q")  # decompressed length
        self._e_zlib = bytearray()  # 1 if the payload is a zlib stream
        self._super_entry: int | None = None
        # Visible pieces, sorted by logical address, never overlapping.
        self._s_start = array("Q")
        self._s_len = array("Q")
        self._s_entry = array("I")
        self._s_skip = array("Q")  # offset of the piece inside its entry's bytes
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_budget = max(0, cache_bytes)
        self._cache_used = 0
        self._cache_entry_limit = self._cache_budget // 4

        self._size = self._file_size()
        logical = array("Q")  # per entry; only needed until the pieces are built
        try:
            self._index_clusters(logical)
        except _Damage as damage:
            raise damage.error(damage.message or self._message(damage.offset, damage.what)) from None
        self._build_pieces(logical)

    # -- public API ---------------------------------------------------------

    def superblock_bytes(self) -> bytes:
        """The 4096-byte primary superblock, stored unmodified as the first entry of the first cluster."""
        entry = self._super_entry
        if entry is None:
            what = f"no superblock entry (the first entry of the first cluster is not at {BTRFS_SUPER_INFO_OFFSET})"
            raise CorruptionError(self._message(0, what))
        if self._e_len[entry] != BTRFS_SUPER_INFO_SIZE:
            what = f"superblock entry holds {self._e_len[entry]} bytes, not {BTRFS_SUPER_INFO_SIZE}"
            raise CorruptionError(self._message(self._e_file[entry], what))
        return self._entry_bytes(entry, 0, BTRFS_SUPER_INFO_SIZE)

    def read_logical(self, logical: int, length: int) -> bytes:
        """The bytes of ``[logical, logical + length)``, assembled across adjacent entries.

        Raises ``ReadError`` when any byte of the range was not captured in the dump.
        """
        plan = self._plan(logical, length)
        if isinstance(plan, int):
            self._raise_missing(logical, length, plan)
        pieces = [self._entry_bytes(entry, skip, take) for entry, skip, take in plan]
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    @property
    def entry_count(self) -> int:
        """Index entries kept, the superblock entry included."""
        return len(self._e_file)

    def __repr__(self) -> str:
        return (
            f"MetadumpImage({self.name!r}, version={self.version}, "
            f"clusters={self.clusters}, entries={self.entry_count})"
        )

    # -- indexing -------------------------------------------------------------

    def _index_clusters(self, entry_logical: array) -> None:
        """Walk the clusters from offset 0 and record every entry; raise _Damage at the first problem."""
        size = self._size
        offset = 0
        magic = None
        while offset < size:
            block = self._pread(offset, METADUMP_BLOCK_SIZE)
            if magic is None:
                if len(block) < _MAGIC.size or _MAGIC.unpack_from(block)[0] not in _VERSION_OF_MAGIC:
                    raise _Damage(offset, "not a btrfs-image dump (no metadump magic at offset 0)", NotBtrfsError)
                magic = _MAGIC.unpack_from(block)[0]
                self.version = _VERSION_OF_MAGIC[magic]
            if len(block) < METADUMP_BLOCK_SIZE:
                raise _Damage(offset, f"file ends {len(block)} bytes into an index block ({METADUMP_BLOCK_SIZE} bytes)")
            block_magic, bytenr, nritems, compress = _HEADER.unpack_from(block)
            if block_magic != magic:
                raise _Damage(offset, f"index block has magic {block_magic:#018x}, expected {magic:#018x}")
            if bytenr != offset:
                raise _Damage(offset, f"index block bytenr {bytenr} does not match its file offset")
            if nritems > ITEMS_PER_CLUSTER:
                raise _Damage(offset, f"index block nritems {nritems} exceeds {ITEMS_PER_CLUSTER}")
            if compress not in MetadumpCompression._value2member_map_:
                raise _Damage(offset, f"index block has unknown compress method {compress}")
            zlib_payloads = compress == MetadumpCompression.ZLIB
            payload = offset + METADUMP_BLOCK_SIZE
            items = _ITEM.struct.iter_unpack(block[_HEADER.size : _HEADER.size + nritems * _ITEM.size])
            for slot, (logical, stored) in enumerate(items):
                where = f"entry {slot} (bytenr {logical}, size {stored})"
                if payload + stored > size:
                    raise _Damage(payload, f"payload of {where} runs past the end of the file ({size} bytes)")
                if zlib_payloads:
                    length = self._inflated_length(payload, stored, where)
                else:
                    length = stored
                if offset == 0 and slot == 0 and logical == BTRFS_SUPER_INFO_OFFSET:
                    self._super_entry = len(self._e_file)
                entry_logical.append(logical)
                self._e_file.append(payload)
                self._e_stored.append(stored)
                self._e_len.append(length)
                self._e_zlib.append(zlib_payloads)
                payload += stored
            self.clusters += 1
            offset = -(-payload // METADUMP_BLOCK_SIZE) * METADUMP_BLOCK_SIZE
        if magic is None:
            raise _Damage(0, "empty file, not a btrfs-image dump", NotBtrfsError)

    def _inflated_length(self, file_offset: int, stored: int, where: str) -> int:
        """Decompressed length of one zlib payload, counted without keeping the bytes."""
        total = 0
        try:
            for piece in self._inflate(file_offset, stored, where, warn_trailing=True):
                total += len(piece)
        except CorruptionError as error:
            raise _Damage(file_offset, "zlib", message=str(error)) from None
        return total

    def _build_pieces(self, starts: array) -> None:
        """Turn the entries into sorted, non-overlapping pieces; the later entry wins where they overlap."""
        lengths = self._e_len
        # Bytes past the end of the u64 address space can never be asked for: cut them off.
        ends = [min(start + length, _ADDRESS_END) for start, length in zip(starts, lengths)]
        entries = [i for i in range(len(starts)) if i != self._super_entry and ends[i] > starts[i]]
        ordered = True
        previous_end = -1
        for i in entries:
            if starts[i] < previous_end:
                ordered = False
                break
            previous_end = ends[i]
        if not ordered:
            entries.sort(key=lambda i: (starts[i], i))
            previous_end = -1
            for i in entries:
                if starts[i] < previous_end:
                    self._build_overlapping(starts, ends, entries, first_overlap=starts[i])
                    return
                previous_end = max(previous_end, ends[i])
        for i in entries:
            self._s_start.append(starts[i])
            self._s_len.append(ends[i] - starts[i])
            self._s_entry.append(i)
            self._s_skip.append(0)

    def _build_overlapping(self, starts: array, ends: list[int], entries: list[int], first_overlap: int) -> None:
        """Sweep over every entry boundary keeping, per elementary interval, the latest entry covering it."""
        points = sorted({starts[i] for i in entries} | {ends[i] for i in entries})
        active: list[tuple[int, int]] = []  # (-entry, end): the latest entry on top
        visible = dict.fromkeys(entries, 0)
        k = 0
        for a, b in zip(points, points[1:]):
            while k < len(entries) and starts[entries[k]] <= a:
                i = entries[k]
                heapq.heappush(active, (-i, ends[i]))
                k += 1
            while active and active[0][1] <= a:
                heapq.heappop(active)
            if not active:
                continue
            i = -active[0][0]
            visible[i] += b - a
            n = len(self._s_start)
            if n and self._s_entry[n - 1] == i and self._s_start[n - 1] + self._s_len[n - 1] == a:
                self._s_len[n - 1] += b - a
            else:
                self._s_start.append(a)
                self._s_len.append(b - a)
                self._s_entry.append(i)
                self._s_skip.append(a - starts[i])
        hidden = [i for i in entries if visible[i] < ends[i] - starts[i]]
        examples = ", ".join(f"bytenr {starts[i]} at file offset {self._e_file[i]}" for i in hidden[:_OVERLAP_EXAMPLES])
        self.warnings.append(
            f"metadump {self.name}: {len(hidden)} entries are overlapped by later entries "
            f"(first overlap at logical {first_overlap}; e.g. {examples}); the later entry in the file wins"
        )

    # -- reading --------------------------------------------------------------

    def _plan(self, logical: int, length: int) -> list[tuple[int, int, int]] | int:
        """``(entry, offset in entry, length)`` pieces covering the range, or the first missing address."""
        if logical < 0 or length < 0:
            raise ValueError(f"negative logical {logical} or length {length}")
        plan: list[tuple[int, int, int]] = []
        if length == 0:
            return plan
        s_start, s_len = self._s_start, self._s_len
        i = bisect_right(s_start, logical) - 1
        if i < 0:
            return logical
        pos, end = logical, logical + length
        count = len(s_start)
        while pos < end:
            if i >= count or s_start[i] > pos:
                return pos
            piece_end = s_start[i] + s_len[i]
            if pos >= piece_end:
                return pos
            take = min(end, piece_end) - pos
            plan.append((self._s_entry[i], self._s_skip[i] + pos - s_start[i], take))
            pos += take
            i += 1
        return plan

    def _raise_missing(self, logical: int, length: int, missing: int) -> NoReturn:
        raise ReadError(
            f"logical {logical} (length {length}) not present in metadump {self.name}: "
            f"nothing stored at logical {missing}"
        )

    def _entry_bytes(self, entry: int, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` inside one entry's (decompressed) bytes."""
        if not self._e_zlib[entry]:
            data = self._pread(self._e_file[entry] + offset, length)
            if len(data) != length:
                where = self._e_file[entry] + offset
                raise CorruptionError(self._message(where, "file is shorter than when it was indexed"))
            return data
        cached = self._cache.get(entry)
        if cached is not None:
            self._cache.move_to_end(entry)
            return cached[offset : offset + length]
        file_offset, stored = self._e_file[entry], self._e_stored[entry]
        where = f"entry #{entry}"
        if self._e_len[entry] > self._cache_entry_limit:
            return self._inflate_slice(file_offset, stored, where, offset, length)
        data = b"".join(self._inflate(file_offset, stored, where))
        if len(data) != self._e_len[entry]:
            raise CorruptionError(self._message(file_offset, "payload changed since the dump was indexed"))
        self._cache[entry] = data
        self._cache_used += len(data)
        while self._cache_used > self._cache_budget and self._cache:
            _, dropped = self._cache.popitem(last=False)
            self._cache_used -= len(dropped)
        return data[offset : offset + length]

    def _inflate_slice(self, file_offset: int, stored: int, where: str, offset: int, length: int) -> bytes:
        """A slice of a payload too big for the cache, decompressed streaming and kept only in part."""
        out: list[bytes] = []
        pos = 0
        end = offset + length
        for piece in self._inflate(file_offset, stored, where):
            piece_end = pos + len(piece)
            if piece_end > offset:
                out.append(piece[max(0, offset - pos) : end - pos])
            pos = piece_end
            if pos >= end:
                break
        data = b"".join(out)
        if len(data) != length:
            raise CorruptionError(self._message(file_offset, "payload changed since the dump was indexed"))
        return data

    def _inflate(self, file_offset: int, stored: int, where: str, warn_trailing: bool = False) -> Iterator[bytes]:
        """Decompress one zlib payload in bounded pieces; CorruptionError unless it is one complete stream."""
        decompressor = zlib.decompressobj()
        pos, left = file_offset, stored
        try:
            while left and not decompressor.eof:
                chunk = self._pread(pos, min(left, _IO_CHUNK))
                if not chunk:
                    raise CorruptionError(self._message(pos, f"file ends inside the payload of {where}"))
                pos += len(chunk)
                left -= len(chunk)
                while chunk and not decompressor.eof:
                    piece = decompressor.decompress(chunk, _OUT_CHUNK)
                    if piece:
                        yield piece
                    chunk = decompressor.unconsumed_tail
            piece = decompressor.flush()
            if piece:
                yield piece
        except zlib.error as error:
            what = f"zlib error in the payload of {where}: {error}"
            raise CorruptionError(self._message(file_offset, what)) from None
        if not decompressor.eof:
            raise CorruptionError(self._message(file_offset, f"payload of {where} ends inside its zlib stream"))
        trailing = left + len(decompressor.unused_data)
        if trailing and warn_trailing:
            self.warnings.append(
                f"metadump {self.name} at file offset {file_offset}: payload of {where} has {trailing} bytes "
                "after its zlib stream (ignored)"
            )

    # -- file access ------------------------------------------------------------

    def _file_size(self) -> int:
        try:
            return self._f.seek(0, 2)
        except OSError as error:
            raise DeviceError(f"cannot seek in metadump {self.name}: {error.strerror or error}") from None

    def _pread(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset``; shorter only at end of file."""
        try:
            self._f.seek(offset)
            data = self._f.read(length)
            if len(data) < length:
                parts = [data]
                got = len(data)
                while got < length:
                    more = self._f.read(length - got)
                    if not more:
                        break
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
        except OSError as error:
            reason = error.strerror or error
            raise DeviceError(f"cannot read metadump {self.name} at file offset {offset}: {reason}") from None
        return data

    def _message(self, offset: int, what: str) -> str:
        return f"corrupt metadump {self.name} at file offset {offset}: {what}"
