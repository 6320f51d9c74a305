"""Plausibility of item contents, after the kernel's tree-checker (fs/btrfs/tree-checker.c).

A checksum only says a block is as it was written; a block written by a
buggy tool, or a mutated image with its checksums recomputed, can hold values
no kernel would accept. The kernel rejects such items when it reads them
(``check_extent_data_item``, ``check_inode_item``, ``check_csum_item``,
``check_block_group_item``, ``check_dir_item``, ``check_root_item``); here
every violation is a damage finding: the reader skips the item and warns
naming the tree, block and slot, so an implausible value never becomes a
figure. Rules btrfsscan adds to the kernel's say so in their text.

Each rule is stated once: the fs-tree and checksum-tree rules as masks over
numpy columns (a whole batch of leaves at a time; ``item_problem`` applies
the same masks to one item read alone), the others over one item's fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import fastparse
from .constants import (
    BLOCK_GROUP_PROFILE_MASK,
    BLOCK_GROUP_TYPE_MASK,
    BTRFS_FIRST_CHUNK_TREE_OBJECTID,
    BTRFS_MAX_COMPRESSED,
    BTRFS_MAX_DATA_CHUNK_SIZE,
    BTRFS_MAX_LEVEL,
    BTRFS_MAX_UNCOMPRESSED,
    BTRFS_NAME_LEN,
    BlockGroupFlag,
    Compression,
    FileExtentType,
    FileType,
    ItemType,
    ObjectId,
)

#: Linux's MAX_LFS_FILESIZE on 64-bit machines: no inode can be larger.
MAX_FILE_SIZE = 2**63 - 1
#: Above this size (8 PiB) an i_size that also exceeds the filesystem is taken as damage: the
#: page-cache figures would have to clamp it (btrfsscan's rule, not the kernel's).
HUGE_FILE_SIZE = 1 << 53
_NR_COMPRESS_TYPES = max(int(c) for c in Compression) + 1
_REG, _PREALLOC, _INLINE = int(FileExtentType.REG), int(FileExtentType.PREALLOC), int(FileExtentType.INLINE)
_U64_MAX = np.uint64(2**64 - 1)
#: S_IFMT values of the seven file types (the kernel's check_inode_item: btrfs_ftype of the mode).
_FILE_TYPES = np.array([0o010000, 0o020000, 0o040000, 0o060000, 0o100000, 0o120000, 0o140000], np.uint32)
_S_IFMT = np.uint32(0o170000)
_DATA, _METADATA, _SYSTEM = int(BlockGroupFlag.DATA), int(BlockGroupFlag.METADATA), int(BlockGroupFlag.SYSTEM)
_VALID_TYPES = (_DATA, _METADATA, _SYSTEM, _DATA | _METADATA)
_FT_MAX = max(int(t) for t in FileType) + 1


@dataclass(frozen=True)
class Limits:
    """The filesystem-wide values the rules compare against."""

    sectorsize: int
    total_bytes: int
    generation: int
    csum_size: int

    @classmethod
    def of(cls, superblock) -> Limits:
        return cls(int(superblock.sectorsize), int(superblock.total_bytes), int(superblock.generation),
                   superblock.csum.size)


#: A column rule: (name, mask of the rows that break it, what to say about one such row).
ColumnRule = tuple[str, Callable[..., np.ndarray], Callable[..., str]]


def _unaligned(values: np.ndarray, sectorsize: int) -> np.ndarray:
    """Not a multiple of ``sectorsize`` (a power of two: the superblock checks say so), as a bit test."""
    return (values & np.uint64(sectorsize - 1)) != 0


# --- EXTENT_DATA (check_extent_data_item) -------------------------------------------

def _fe_reg(f):
    return (f["head.type"] == _REG) | (f["head.type"] == _PREALLOC)


def _fe_unaligned(f, key_offset, lim: Limits):
    bits = f["head.ram_bytes"] | f["reg.disk_bytenr"] | f["reg.disk_num_bytes"] | f["reg.offset"] | f["reg.num_bytes"]
    return _fe_reg(f) & _unaligned(bits, lim.sectorsize)  # one low bit set in any of them: unaligned


def _fe_past_disk_extent(f):
    """The referenced range [offset, offset + num_bytes) leaves the extent it points into."""
    reg = _fe_reg(f) & (f["reg.disk_bytenr"] != 0)
    whole = np.where(f["head.compression"] == 0, f["reg.disk_num_bytes"], f["head.ram_bytes"])
    offset, num = f["reg.offset"], f["reg.num_bytes"]
    return reg & ((offset > whole) | (num > whole - np.minimum(offset, whole)))


def _fe_larger_than_a_chunk(f, lim: Limits):
    """An uncompressed extent larger than any data chunk (or the filesystem): it could not lie in one."""
    limit = np.uint64(min(lim.total_bytes, BTRFS_MAX_DATA_CHUNK_SIZE))
    return _fe_reg(f) & (f["reg.disk_bytenr"] != 0) & (f["head.compression"] == 0) & (f["reg.disk_num_bytes"] > limit)


def _fe_compressed_too_large(f):
    """A compressed extent (or inline item) larger, on disk or decompressed, than the kernel ever writes."""
    compressed = f["head.compression"] != 0
    reg = _fe_reg(f) & (f["reg.disk_bytenr"] != 0) & (f["reg.disk_num_bytes"] > np.uint64(BTRFS_MAX_COMPRESSED))
    return compressed & ((f["head.ram_bytes"] > np.uint64(BTRFS_MAX_UNCOMPRESSED)) | reg)


EXTENT_DATA_RULES: tuple[ColumnRule, ...] = (
    ("compression", lambda f, k, lim: f["head.compression"] >= _NR_COMPRESS_TYPES,
     lambda f, k, lim: f"compression {int(f['head.compression'])} out of range 0..{_NR_COMPRESS_TYPES - 1}"),
    ("encryption", lambda f, k, lim: f["head.encryption"] != 0,
     lambda f, k, lim: f"encryption {int(f['head.encryption'])}, expected 0"),
    ("file offset", lambda f, k, lim: _unaligned(k, lim.sectorsize),
     lambda f, k, lim: f"file offset {int(k)} not aligned to sectorsize {lim.sectorsize}"),
    ("inline offset", lambda f, k, lim: (f["head.type"] == _INLINE) & (k != 0),
     lambda f, k, lim: f"inline extent at file offset {int(k)}, expected 0"),
    ("alignment", _fe_unaligned,
     lambda f, k, lim: "ram_bytes/disk_bytenr/disk_num_bytes/offset/num_bytes "
                       f"({int(f['head.ram_bytes'])}/{int(f['reg.disk_bytenr'])}/{int(f['reg.disk_num_bytes'])}/"
                       f"{int(f['reg.offset'])}/{int(f['reg.num_bytes'])}) not all aligned to sectorsize "
                       f"{lim.sectorsize}"),
    ("empty", lambda f, k, lim: _fe_reg(f) & (f["reg.num_bytes"] == 0),
     lambda f, k, lim: "num_bytes 0 (an extent of no bytes; btrfsscan's rule)"),
    ("overflow", lambda f, k, lim: _fe_reg(f) & (f["reg.num_bytes"] > _U64_MAX - k),
     lambda f, k, lim: f"file offset {int(k)} + num_bytes {int(f['reg.num_bytes'])} overflows 64 bits"),
    ("past disk extent", lambda f, k, lim: _fe_past_disk_extent(f),
     lambda f, k, lim: f"offset {int(f['reg.offset'])} + num_bytes {int(f['reg.num_bytes'])} runs past the "
                       f"{int(f['reg.disk_num_bytes'] if f['head.compression'] == 0 else f['head.ram_bytes'])} "
                       "bytes of the extent it references (btrfsscan's rule)"),
    ("extent size", lambda f, k, lim: _fe_larger_than_a_chunk(f, lim),
     lambda f, k, lim: f"disk_num_bytes {int(f['reg.disk_num_bytes'])} is larger than a data chunk can be "
                       f"({min(lim.total_bytes, BTRFS_MAX_DATA_CHUNK_SIZE)} bytes; btrfsscan's rule)"),
    ("compressed size", lambda f, k, lim: _fe_compressed_too_large(f),
     lambda f, k, lim: (f"compressed inline data of {int(f['head.ram_bytes'])} bytes decompressed"
                        if int(f["head.type"]) == _INLINE else
                        f"compressed extent of {int(f['reg.disk_num_bytes'])} bytes decompressing to "
                        f"{int(f['head.ram_bytes'])}")
                       + f": the kernel writes at most {BTRFS_MAX_COMPRESSED} bytes compressed, "
                         f"{BTRFS_MAX_UNCOMPRESSED} decompressed (btrfsscan's rule)"),
)


# --- INODE_ITEM (check_inode_item) ---------------------------------------------------

INODE_RULES: tuple[ColumnRule, ...] = (
    ("mode", lambda f, k, lim: ~np.isin(f["mode"] & _S_IFMT, _FILE_TYPES),
     lambda f, k, lim: f"mode {int(f['mode']):o} names no file type"),
    ("size", lambda f, k, lim: f["size"] > np.uint64(MAX_FILE_SIZE),
     lambda f, k, lim: f"i_size {int(f['size'])} exceeds the largest file Linux allows ({MAX_FILE_SIZE})"),
    ("huge", lambda f, k, lim: (f["size"] > np.uint64(HUGE_FILE_SIZE)) & (f["size"] <= np.uint64(MAX_FILE_SIZE))
     & (f["size"] > np.uint64(lim.total_bytes)),
     lambda f, k, lim: f"i_size {int(f['size'])} is above 8 PiB and larger than the {lim.total_bytes}-byte "
                       "filesystem (btrfsscan's rule)"),
)


# --- EXTENT_CSUM (check_csum_item) -------------------------------------------------

#: The columns the checksum rules read: the key's objectid, the item's size, and where the checksums of the
#: leaf's previous item end when it is an EXTENT_CSUM item too (0 otherwise); the key offset is the start.
CSUM_COLUMNS = np.dtype([("objectid", "<u8"), ("size", "<u8"), ("prev_end", "<u8")])
_CSUM_OBJECTID = np.uint64(ObjectId.EXTENT_CSUM)

CSUM_RULES: tuple[ColumnRule, ...] = (
    ("objectid", lambda f, k, lim: f["objectid"] != _CSUM_OBJECTID,
     lambda f, k, lim: f"objectid {int(f['objectid'])}, expected EXTENT_CSUM ({int(_CSUM_OBJECTID)})"),
    ("offset", lambda f, k, lim: _unaligned(k, lim.sectorsize),
     lambda f, k, lim: f"logical start {int(k)} not aligned to sectorsize {lim.sectorsize}"),
    ("size", lambda f, k, lim: f["size"] % np.uint64(lim.csum_size) != 0,
     lambda f, k, lim: f"{int(f['size'])} bytes, not a whole number of {lim.csum_size}-byte checksums"),
    ("empty", lambda f, k, lim: f["size"] == 0,
     lambda f, k, lim: "no checksums (btrfsscan's rule)"),
    ("overlap", lambda f, k, lim: f["prev_end"] > k,
     lambda f, k, lim: f"the previous item's checksums run to logical {int(f['prev_end'])}, past this item's "
                       f"start {int(k)}"),
)


def csum_end(start: np.ndarray, size: np.ndarray, limits: Limits) -> np.ndarray:
    """Where the checksums of items at ``start`` of ``size`` bytes end (the largest address on overflow)."""
    covered = (size // np.uint64(limits.csum_size)) * np.uint64(limits.sectorsize)
    return np.where(start > _U64_MAX - covered, _U64_MAX, start + covered)


def column_violations(rules: tuple[ColumnRule, ...], fields: np.ndarray, key_offset: np.ndarray,
                      limits: Limits) -> tuple[np.ndarray, dict[int, str]]:
    """Rows of ``fields`` that break any of ``rules``: the mask, and per bad row what the first rule broken says."""
    bad = np.zeros(len(fields), bool)
    said: dict[int, str] = {}
    for _, mask_of, say in rules:
        mask = mask_of(fields, key_offset, limits) & ~bad
        for row in np.flatnonzero(mask).tolist():
            said[row] = say(fields[row], key_offset[row], limits)
        bad |= mask
    return bad, said


# --- single items ------------------------------------------------------------------

def block_group_problem(length: int, used: int, chunk_objectid: int, flags: int) -> str | None:
    """check_block_group_item: why a BLOCK_GROUP_ITEM (key offset ``length``) cannot be, or None."""
    if length == 0:
        return "block group of length 0"
    if used > length:
        return f"used {used} exceeds the block group's length {length}"
    if chunk_objectid != BTRFS_FIRST_CHUNK_TREE_OBJECTID:
        return f"chunk_objectid {chunk_objectid}, expected {BTRFS_FIRST_CHUNK_TREE_OBJECTID}"
    if bin(flags & BLOCK_GROUP_PROFILE_MASK).count("1") > 1:
        return f"flags 0x{flags:x} name more than one profile"
    if flags & BLOCK_GROUP_TYPE_MASK not in _VALID_TYPES:
        return f"flags 0x{flags:x} name no valid type (DATA, METADATA, SYSTEM or DATA|METADATA)"
    return None


def dir_item_problem(name_len: int, data_len: int, ftype: int) -> str | None:
    """check_dir_item: why one entry of a DIR_ITEM, DIR_INDEX or XATTR_ITEM cannot be, or None.

    Names are bytes: any byte but ``/`` and NUL may appear, UTF-8 or not.
    """
    if ftype >= _FT_MAX:
        return f"file type {ftype} out of range 0..{_FT_MAX - 1}"
    if name_len > BTRFS_NAME_LEN:
        return f"name of {name_len} bytes, longer than {BTRFS_NAME_LEN}"
    if data_len and ftype != FileType.XATTR:
        return f"{data_len} bytes of data in an entry that is not an xattr"
    return None


def root_item_problem(bytenr: int, level: int, generation: int, limits: Limits) -> str | None:
    """check_root_item: why a ROOT_ITEM cannot be, or None."""
    if bytenr % limits.sectorsize:
        return f"root bytenr {bytenr} not aligned to sectorsize {limits.sectorsize}"
    if level >= BTRFS_MAX_LEVEL:
        return f"root level {level}, must be below {BTRFS_MAX_LEVEL}"
    if generation > limits.generation + 1:
        return f"generation {generation} is newer than the superblock's {limits.generation} + 1"
    return None


_SINGLE = {int(ItemType.INODE_ITEM): (INODE_RULES, fastparse.INODE_ITEM.dtype),
           int(ItemType.EXTENT_DATA): (EXTENT_DATA_RULES, fastparse.FILE_EXTENT.dtype)}


def item_problem(key: tuple[int, int, int], data: bytes, limits: Limits,
                 previous: tuple[tuple[int, int, int], int] | None = None) -> str | None:
    """The column rules of INODE_ITEM, EXTENT_DATA and EXTENT_CSUM items applied to one item read alone (other
    types: None): what the first rule it breaks says, or None. ``previous``: the key and size of the item
    before it in its leaf, for the checksum overlap rule."""
    offset = np.array([key[2]], np.uint64)
    if key[1] == ItemType.EXTENT_CSUM:
        fields = np.zeros(1, CSUM_COLUMNS)
        fields["objectid"], fields["size"] = key[0], len(data)
        if previous is not None and previous[0][1] == ItemType.EXTENT_CSUM:
            fields["prev_end"] = csum_end(np.array([previous[0][2]], np.uint64),
                                          np.array([previous[1]], np.uint64), limits)
        rules = CSUM_RULES
    elif key[1] in _SINGLE:
        rules, dtype = _SINGLE[key[1]]
        fields = np.frombuffer(bytes(data[:dtype.itemsize]).ljust(dtype.itemsize, b"\0"), dtype)
    else:
        return None
    _, said = column_violations(rules, fields, offset, limits)
    return said.get(0)


def finding(key: tuple[int, int, int], what: str, slot: int | None) -> str:
    """The damage finding of an INODE_ITEM, EXTENT_DATA or EXTENT_CSUM item skipped for breaking a rule (what
    ``item_problem`` or the column rules said), in the words every reader uses."""
    at = f"slot {slot}" if slot is not None else "replayed from the log"
    if key[1] == ItemType.INODE_ITEM:
        return f"INODE_ITEM of inode {key[0]} implausible: {what}, skipped ({at})"
    if key[1] == ItemType.EXTENT_DATA:
        return f"EXTENT_DATA implausible: {what}, skipped (inode {key[0]} offset {key[2]}, {at})"
    return f"EXTENT_CSUM item at logical {key[2]} implausible: {what}, skipped ({at})"
