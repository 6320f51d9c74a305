"""The chunk map: logical addresses to per-device physical addresses.

A btrfs chunk (``CHUNK_ITEM`` keyed by its logical start) maps one logical
range onto *stripes*, each a (devid, physical offset) pair.  How bytes are laid
out over the stripes depends on the profile (the one profile bit of
``Chunk.type``); the arithmetic here follows ``__btrfs_map_block`` of
btrfs-progs / ``btrfs_map_block`` of the kernel for reads.

Let ``off = logical - chunk.logical``, ``sl = chunk.stripe_len``,
``stripe_nr, in_stripe = divmod(off, sl)`` and ``n = num_stripes``:

``SINGLE``
    stripe 0 at ``stripes[0].offset + off`` (further stripes, never written by
    any kernel, are ignored).
``DUP``, ``RAID1``, ``RAID1C3``, ``RAID1C4``
    every stripe holds the same bytes at ``stripes[k].offset + off``;
    mirror ``k + 1`` is stripe ``k``.
``RAID0``
    ``row, index = divmod(stripe_nr, n)``; physical
    ``stripes[index].offset + row * sl + in_stripe``.
``RAID10``
    ``factor = n // sub_stripes``; ``row, col = divmod(stripe_nr, factor)``;
    the copies are stripes ``col * sub_stripes + m`` for ``m`` in
    ``range(sub_stripes)`` (mirror ``m + 1``), each at
    ``stripes[i].offset + row * sl + in_stripe``.
``RAID5``, ``RAID6``
    ``data = n - nparity``; ``row, col = divmod(stripe_nr, data)``; the data
    sits in device slot ``(col + row) % n``, P in ``(data + row) % n`` and Q
    in ``(data + 1 + row) % n``, each at ``stripes[slot].offset + row * sl +
    in_stripe``.

Mirror numbers (``PhysicalRange.mirror``) are the ``mirror_num`` of the
kernel and of btrfs-progs, counted from 1.  For SINGLE, DUP, RAID1* and RAID10
every mirror is a full physical copy of the data.  RAID5/6 keep one physical
copy of the data, mirror 1.  ``Chunk.num_copies`` is btrfs-progs'
``btrfs_num_copies``: 2 for RAID5 and 3 for RAID6 (the kernel's own
``btrfs_num_copies`` reports ``num_stripes`` for RAID6).  For the kernel,
mirrors above 1 of RAID5/6 are *rebuild* attempts: the same logical bytes,
reconstructed from the other stripes of the row and the parity.
``btrfs-map-logical`` prints, for mirror 2 and 3 of a RAID5/6 range, the
location of the P and Q bytes at the same in-stripe offset as the data
(btrfs-progs' ``__btrfs_map_block`` with ``mirror_num > 1``).  That is what
:meth:`ChunkMap.map` returns with ``parity=True``: ranges with ``role='P'``,
``mirror=2`` and ``role='Q'``, ``mirror=3`` whose ``logical`` and ``length``
are those of the data piece they protect.  Without ``parity`` RAID5/6 give
mirror 1 only.  Several data pieces of one row share the same parity bytes,
so P/Q ranges of one call may repeat or overlap physically; merge by
``(devid, physical)`` when the set of parity bytes is wanted.

Which chunks :meth:`ChunkMap.add` accepts: :func:`validate_chunk` reports
every deviation from what the kernel's tree-checker accepts (plus a few
checks btrfsscan adds).  ``add`` refuses only chunks whose mapping cannot be
computed or trusted: no stripes, ``stripes`` disagreeing with
``num_stripes``, ``length <= 0``, ``stripe_len <= 0`` (below 4096 for
RAID0/10/5/6, whose mappings have one piece per stripe), a negative logical
address, several profile bits, type bits no kernel defines
(``CorruptionError``); RAID10 with ``sub_stripes`` 0 or more than
``num_stripes``, RAID5/6 without a data stripe (``CorruptionError``); and
remap-tree chunks (``REMAPPED`` / ``METADATA_REMAP`` bits,
``UnsupportedError``).  Merely unusual chunks (a stripe_len other than
64 KiB, wrong stripe counts that still map, missing type bit, misalignment)
are accepted and mapped with the same arithmetic the kernel would use.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ..errors import CorruptionError, ReadError, UnsupportedError
from ..format.constants import (
    BLOCK_GROUP_PROFILE_MASK,
    BLOCK_GROUP_RAID56_MASK,
    BLOCK_GROUP_TYPE_MASK,
    BTRFS_STRIPE_LEN,
    BlockGroupFlag,
    Profile,
)
from ..format.items import Chunk, Stripe

__all__ = ["Stripe", "Chunk", "PhysicalRange", "ChunkMap", "validate_chunk"]

_U64_MAX = (1 << 64) - 1
_U32_MAX = (1 << 32) - 1
#: The kernel caps chunk length so the stripe count fits in a u32.
_MAX_CHUNK_LENGTH = _U32_MAX << 16

_PROFILE_MASK = int(BLOCK_GROUP_PROFILE_MASK)
_TYPE_MASK = int(BLOCK_GROUP_TYPE_MASK)
_REMAP_BITS = int(BlockGroupFlag.REMAPPED | BlockGroupFlag.METADATA_REMAP)
_KNOWN_BITS = _TYPE_MASK | _PROFILE_MASK | _REMAP_BITS

_RAID56 = int(BLOCK_GROUP_RAID56_MASK)
_STRIPED = int(BlockGroupFlag.RAID0 | BlockGroupFlag.RAID10) | _RAID56
#: Smallest stripe_len a striped chunk is mapped with (``map`` gives one piece per stripe).
_MIN_STRIPE_LEN = 4096

#: Allowed num_stripes (min, max or None) per profile bit, RAID10 apart.
_STRIPE_COUNTS = {
    0: (1, 1),
    int(BlockGroupFlag.DUP): (2, 2),
    int(BlockGroupFlag.RAID0): (1, None),
    int(BlockGroupFlag.RAID1): (2, 2),
    int(BlockGroupFlag.RAID1C3): (3, 3),
    int(BlockGroupFlag.RAID1C4): (4, 4),
    int(BlockGroupFlag.RAID5): (2, None),
    int(BlockGroupFlag.RAID6): (3, None),
}

# Mapping kinds used by the hot path.
_MIRRORED = 0  # SINGLE, DUP, RAID1, RAID1C3, RAID1C4: one piece per mirror
_RAID0 = 1
_RAID10 = 2
_PARITY = 3  # RAID5, RAID6


@dataclass(frozen=True, slots=True)
class PhysicalRange:
    """One piece of a logical range on one device.

    ``mirror`` counts copies from 1 (the kernel's ``mirror_num``); for RAID5/6
    parity pieces it is 2 (``role='P'``) or 3 (``role='Q'``), matching the
    copies ``btrfs-map-logical`` prints.  ``stripe_index`` is the index of the
    stripe in ``Chunk.stripes``.  For parity pieces ``logical``/``length`` are
    those of the data piece the parity protects.
    """

    logical: int
    length: int
    mirror: int
    devid: int
    physical: int
    stripe_index: int
    role: str  # 'data' | 'P' | 'Q'

    @property
    def physical_end(self) -> int:
        return self.physical + self.length


def _where(chunk: Chunk) -> str:
    return f"chunk at logical 0x{chunk.logical:x} ({chunk.logical})"


def _range(chunk: Chunk) -> str:
    return f"[0x{chunk.logical:x}, 0x{chunk.logical + chunk.length:x})"


def validate_chunk(chunk: Chunk, *, sectorsize: int, device_sizes: Mapping[int, int] | None = None) -> list[str]:
    """Every problem of ``chunk``, one message each; empty when the chunk is valid.

    Reproduces the kernel tree-checker's ``btrfs_check_chunk_valid`` (every
    check, not just the first failure) with mixed DATA|METADATA chunks
    always allowed.  btrfsscan adds: ``stripes`` must hold ``num_stripes``
    entries, RAID10 ``num_stripes`` must be even, ``sub_stripes`` of other
    profiles must be 0 or 1 (old kernels wrote 0, newer ones 1), remap-tree
    chunks are reported as unsupported, and, when ``device_sizes`` (devid ->
    bytes) is given, every stripe of a known device must end inside it and
    stripes on one device must not overlap.  Stripes of devids missing from
    ``device_sizes`` are not checked (a missing device is the caller's
    concern).
    """
    where = _where(chunk)
    problems: list[str] = []
    t = chunk.type
    profile_bits = t & _PROFILE_MASK
    several_profiles = profile_bits & (profile_bits - 1) != 0
    remapped = bool(t & int(BlockGroupFlag.REMAPPED))
    n = chunk.num_stripes

    # Stripe counts.
    if n <= 0:
        if not remapped:
            problems.append(f"{where}: num_stripes is {n}, must be at least 1")
    if len(chunk.stripes) != n:
        problems.append(f"{where}: num_stripes is {n} but the item holds {len(chunk.stripes)} stripes")
    # Addresses and sizes.
    align = sectorsize if sectorsize > 0 else 1  # a bad sectorsize is the superblock's problem
    if chunk.logical < 0 or chunk.logical % align:
        problems.append(f"{where}: logical address is not aligned to sectorsize {sectorsize}")
    if chunk.sector_size != sectorsize:
        problems.append(f"{where}: sector_size is {chunk.sector_size}, expected {sectorsize}")
    if chunk.length <= 0 or chunk.length % align:
        problems.append(f"{where}: length {chunk.length} is not positive or not aligned to sectorsize {sectorsize}")
    if chunk.logical + chunk.length > _U64_MAX + 1:
        problems.append(f"{where}: logical + length {chunk.length} overflows 64 bits")
    if chunk.stripe_len <= 0 or chunk.stripe_len & (chunk.stripe_len - 1) or chunk.stripe_len != BTRFS_STRIPE_LEN:
        problems.append(f"{where}: stripe_len is {chunk.stripe_len}, must be {BTRFS_STRIPE_LEN}")
    if chunk.length >= _MAX_CHUNK_LENGTH:
        problems.append(f"{where}: length {chunk.length} too large, limit {_MAX_CHUNK_LENGTH}")
    # Type bits.
    if t < 0 or t & ~_KNOWN_BITS:
        problems.append(f"{where}: type 0x{t:x} has unknown bits 0x{t & ~_KNOWN_BITS:x}")
    if t & _REMAP_BITS:
        problems.append(f"{where}: type 0x{t:x} marks a remap-tree chunk, which btrfsscan does not map")
    if several_profiles:
        problems.append(f"{where}: type 0x{t:x} has several profile bits 0x{profile_bits:x}, expected 0 or 1")
    if not t & _TYPE_MASK:
        problems.append(f"{where}: type 0x{t:x} has none of the DATA, METADATA, SYSTEM bits")
    if t & BlockGroupFlag.SYSTEM and t & (BlockGroupFlag.DATA | BlockGroupFlag.METADATA):
        problems.append(f"{where}: type 0x{t:x} combines SYSTEM with DATA or METADATA")
    # Per-profile stripe counts (the kernel's ncopies/nparity checks and
    # valid_stripe_count, plus btrfsscan's extras), one message per problem.
    if not several_profiles and not remapped and n > 0:
        if profile_bits == BlockGroupFlag.RAID10:
            if chunk.sub_stripes != 2:
                problems.append(f"{where}: RAID10 sub_stripes is {chunk.sub_stripes}, must be 2")
            if n < 2 or n % 2:
                problems.append(f"{where}: RAID10 num_stripes is {n}, must be even and at least 2")
        else:
            name = Profile(profile_bits).name
            low, high = _STRIPE_COUNTS[profile_bits]
            if n < low or (high is not None and n > high):
                want = f"exactly {low}" if high == low else f"at least {low}"
                problems.append(f"{where}: num_stripes is {n}, {name} needs {want}")
            if chunk.sub_stripes not in (0, 1):
                problems.append(f"{where}: sub_stripes is {chunk.sub_stripes}, must be 0 or 1 for {name}")
    # Stripes against their devices.
    if device_sizes is not None and not several_profiles:
        dev_len = chunk.device_length
        seen: dict[int, list[tuple[int, int, int]]] = {}
        for k, stripe in enumerate(chunk.stripes):
            size = device_sizes.get(stripe.devid)
            if size is None:
                continue
            if stripe.offset < 0 or stripe.offset + dev_len > size:
                problems.append(
                    f"{where}: stripe {k} on devid {stripe.devid} at physical 0x{stripe.offset:x} "
                    f"+ {dev_len} ends beyond the device size {size}"
                )
            for j, start, stop in seen.get(stripe.devid, ()):
                if stripe.offset < stop and start < stripe.offset + dev_len:
                    problems.append(f"{where}: stripes {j} and {k} overlap on devid {stripe.devid}")
            seen.setdefault(stripe.devid, []).append((k, stripe.offset, stripe.offset + dev_len))
    return problems


def _plan(chunk: Chunk) -> tuple:
    """Check that ``chunk`` can be mapped and precompute what ``map`` needs.

    Returns ``(kind, end, stripe_len, width, copies, stripes)`` where
    ``stripes`` is a tuple of ``(devid, offset)``; raises for the chunks
    ``ChunkMap.add`` refuses (see the module docstring).
    """
    where = _where(chunk)
    t = chunk.type
    if t < 0 or t & ~_KNOWN_BITS:
        raise CorruptionError(f"{where}: type 0x{t:x} has unknown bits 0x{t & ~_KNOWN_BITS:x}")
    if t & _REMAP_BITS:
        raise UnsupportedError(f"{where}: remap-tree chunk (type 0x{t:x}) is not supported")
    profile_bits = t & _PROFILE_MASK
    if profile_bits & (profile_bits - 1):
        raise CorruptionError(f"{where}: type 0x{t:x} has several profile bits 0x{profile_bits:x}")
    n = chunk.num_stripes
    if n <= 0:
        raise CorruptionError(f"{where}: num_stripes is {n}")
    if len(chunk.stripes) != n:
        raise CorruptionError(f"{where}: num_stripes is {n} but {len(chunk.stripes)} stripes are present")
    if chunk.length <= 0:
        raise CorruptionError(f"{where}: length is {chunk.length}")
    if chunk.logical < 0:
        raise CorruptionError(f"{where}: negative logical address")
    sl = chunk.stripe_len
    if sl <= 0:
        raise CorruptionError(f"{where}: stripe_len is {sl}")
    if profile_bits & _STRIPED and sl < _MIN_STRIPE_LEN:
        # One piece per stripe_len bytes: a tiny stripe_len would turn one mapping into millions of pieces.
        raise CorruptionError(f"{where}: stripe_len {sl} of a striped profile is below {_MIN_STRIPE_LEN}, "
                              f"too small to map (btrfs uses {BTRFS_STRIPE_LEN})")
    stripes = tuple((s.devid, s.offset) for s in chunk.stripes)
    end = chunk.logical + chunk.length
    if profile_bits == BlockGroupFlag.RAID0:
        return (_RAID0, end, sl, n, 1, stripes)
    if profile_bits == BlockGroupFlag.RAID10:
        sub = chunk.sub_stripes
        if sub <= 0 or sub > n:
            raise CorruptionError(f"{where}: RAID10 sub_stripes {sub} with num_stripes {n}")
        return (_RAID10, end, sl, n // sub, sub, stripes)
    if profile_bits & _RAID56:
        nparity = chunk.nparity
        if n <= nparity:
            raise CorruptionError(f"{where}: {Profile(profile_bits).name} num_stripes {n} leaves no data stripe")
        return (_PARITY, end, sl, n - nparity, nparity, stripes)
    if profile_bits == 0:  # SINGLE: only stripe 0 holds data
        return (_MIRRORED, end, sl, 1, 1, stripes[:1])
    return (_MIRRORED, end, sl, 1, n, stripes)


class ChunkMap:
    """All chunks of a filesystem, ordered by logical address, non-overlapping.

    ``add`` the chunks (from the superblock's sys_chunk_array, then the chunk
    tree); then ``lookup``/``map`` logical addresses.  Adding a chunk equal to
    one already present is a no-op, so the system chunks may be added twice.
    """

    __slots__ = ("_starts", "_chunks", "_plans")

    def __init__(self, chunks: Iterable[Chunk] = ()) -> None:
        self._starts: list[int] = []
        self._chunks: list[Chunk] = []
        self._plans: list[tuple] = []
        for chunk in chunks:
            self.add(chunk)

    def add(self, chunk: Chunk) -> None:
        """Insert ``chunk``.

        Raises ``CorruptionError`` when it overlaps a different chunk already
        present (naming both logical ranges) or cannot be mapped, and
        ``UnsupportedError`` for remap-tree chunks (module docstring).
        """
        plan = _plan(chunk)
        i = bisect_right(self._starts, chunk.logical)
        if i > 0:
            prev = self._chunks[i - 1]
            if prev == chunk:
                return
            if prev.end > chunk.logical:
                raise CorruptionError(f"chunk {_range(chunk)} overlaps chunk {_range(prev)}")
        if i < len(self._chunks) and self._chunks[i].logical < chunk.end:
            raise CorruptionError(f"chunk {_range(chunk)} overlaps chunk {_range(self._chunks[i])}")
        self._starts.insert(i, chunk.logical)
        self._chunks.insert(i, chunk)
        self._plans.insert(i, plan)

    def __iter__(self) -> Iterator[Chunk]:
        return iter(self._chunks)

    def __len__(self) -> int:
        return len(self._chunks)

    def __repr__(self) -> str:
        return f"<ChunkMap of {len(self._chunks)} chunks>"

    def _index(self, logical: int) -> int:
        i = bisect_right(self._starts, logical) - 1
        if i < 0 or logical >= self._plans[i][1]:
            raise ReadError(f"logical address 0x{logical:x} ({logical}) is not mapped by any chunk")
        return i

    def lookup(self, logical: int) -> Chunk:
        """The chunk containing ``logical``; ``ReadError`` when none does."""
        return self._chunks[self._index(logical)]

    def num_copies(self, logical: int) -> int:
        """``Chunk.num_copies`` of the chunk containing ``logical``."""
        return self._chunks[self._index(logical)].num_copies

    def mirrored_spans(self) -> list[tuple[int, int, tuple[tuple[int, int], ...]]]:
        """``(logical, end, ((devid, physical), ...))`` of every chunk whose copies are each one range on one
        device, in mirror order (SINGLE, DUP and RAID1*).

        Logical ``x`` of such a chunk is at ``physical + x - logical`` in each
        copy, so many addresses map at once.
        """
        return [(start, plan[1], plan[5]) for start, plan in zip(self._starts, self._plans) if plan[0] == _MIRRORED]

    def map(self, logical: int, length: int, *, parity: bool = False) -> list[PhysicalRange]:
        """Physical pieces of ``[logical, logical + length)``, ordered by logical then mirror.

        Striped profiles (RAID0, RAID10, RAID5/6) give one piece per stripe
        (``stripe_len``) touched, with every copy of it; SINGLE, DUP and
        RAID1* give one piece per mirror per chunk (they have no stripe
        boundaries).  A range running past a chunk continues in the next
        chunk; ``ReadError`` names the first address no chunk maps.
        ``parity=True`` adds, for RAID5/6, the P (mirror 2) and Q (mirror 3)
        pieces at the same in-stripe offset as each data piece.  Length 0
        gives an empty list.
        """
        out: list[PhysicalRange] = []
        if length <= 0:
            if length < 0:
                raise ValueError(f"negative length {length} at logical 0x{logical:x}")
            return out
        append = out.append
        stop = logical + length
        i = self._index(logical)
        pos = logical
        starts = self._starts
        plans = self._plans
        while True:
            kind, cend, sl, width, copies, stripes = plans[i]
            cstart = starts[i]
            piece_stop = stop if stop < cend else cend
            if kind == _MIRRORED:
                off = pos - cstart
                n = piece_stop - pos
                mirror = 1
                for devid, base in stripes:
                    append(PhysicalRange(pos, n, mirror, devid, base + off, mirror - 1, "data"))
                    mirror += 1
            else:
                off = pos - cstart
                off_stop = piece_stop - cstart
                stripe_nr, in_stripe = divmod(off, sl)
                while off < off_stop:
                    n = sl - in_stripe
                    if off + n > off_stop:
                        n = off_stop - off
                    row, col = divmod(stripe_nr, width)
                    rel = row * sl + in_stripe
                    if kind == _RAID0:
                        devid, base = stripes[col]
                        append(PhysicalRange(cstart + off, n, 1, devid, base + rel, col, "data"))
                    elif kind == _RAID10:
                        index = col * copies
                        for m in range(copies):
                            devid, base = stripes[index + m]
                            append(PhysicalRange(cstart + off, n, m + 1, devid, base + rel, index + m, "data"))
                    else:
                        nst = width + copies
                        slot = (col + row) % nst
                        devid, base = stripes[slot]
                        append(PhysicalRange(cstart + off, n, 1, devid, base + rel, slot, "data"))
                        if parity:
                            slot = (width + row) % nst
                            devid, base = stripes[slot]
                            append(PhysicalRange(cstart + off, n, 2, devid, base + rel, slot, "P"))
                            if copies == 2:
                                slot = (width + 1 + row) % nst
                                devid, base = stripes[slot]
                                append(PhysicalRange(cstart + off, n, 3, devid, base + rel, slot, "Q"))
                    off += n
                    stripe_nr += 1
                    in_stripe = 0
            if piece_stop >= stop:
                return out
            pos = piece_stop
            i += 1
            if i >= len(starts) or starts[i] != pos:
                raise ReadError(f"logical address 0x{pos:x} ({pos}) is not mapped by any chunk")
