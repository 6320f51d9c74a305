"""Every item type btrfsscan reads, in one table: key type -> layout -> parser -> record.

``ITEM_TYPES`` maps a key's ``type`` byte to its record class; ``parse_item``
is the one place a tree reader turns an item's payload into a record (an
``UnknownItem`` for a type not in the table). Each record class says, as
python-btrfs does, what the objectid, type and offset of its key mean; its
``LAYOUT`` is the fixed part of the payload, derived from ``structs``, and its
``parse(key, data, where)`` checks that the payload is long enough and that
embedded lengths stay inside it, raising ``CorruptionError`` naming the item
(``where``) otherwise.

Items that pack several variable-length entries (names) back to back give a
record that decodes them as it is iterated: a damaged entry raises when the
iteration reaches it, after the entries before it were read.

To add an item type: a record class with ``LAYOUT`` and ``parse`` here (its
struct in ``structs``, its layout in ``fastparse``) and one line in
``ITEM_TYPES``. The bulk fs-tree path (``model.fs_tree``) reads INODE_ITEM and
EXTENT_DATA of whole leaves at once through the numpy dtypes of these same
layouts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Protocol

from ..errors import CorruptionError
from . import fastparse
from .constants import (
    BLOCK_GROUP_RAID1_MASK,
    BLOCK_GROUP_RAID56_MASK,
    BlockGroupFlag,
    Compression,
    ExtentFlag,
    FileExtentType,
    ItemType,
    ObjectId,
    Profile,
)
from .fastparse import StructLayout
from .plausibility import Limits, block_group_problem, dir_item_problem, item_problem

Key = tuple[int, int, int]
ZERO_UUID = b"\0" * 16  # a uuid field never set


class ItemRecord(Protocol):
    """What every record class of ``ITEM_TYPES`` provides."""

    LAYOUT: ClassVar[StructLayout | None]

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> ItemRecord: ...


def _need(data: bytes, size: int, what: str, where: str) -> None:
    if len(data) < size:
        raise CorruptionError(f"{what} is {len(data)} bytes, shorter than its {size}-byte structure ({where})")


# --- fs trees -------------------------------------------------------------------------


@dataclass(frozen=True)
class InodeItem:
    """INODE_ITEM (inode, INODE_ITEM, 0): size, links, mode, owner and flags of an inode."""

    LAYOUT: ClassVar[StructLayout] = fastparse.INODE_ITEM

    size: int
    nbytes: int
    nlink: int
    uid: int
    gid: int
    mode: int
    rdev: int
    flags: int
    generation: int
    transid: int
    atime: int
    ctime: int
    mtime: int
    otime: int

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> InodeItem:
        _need(data, cls.LAYOUT.size, "INODE_ITEM", where)
        f = cls.LAYOUT.as_dict(data)
        return cls(f["size"], f["nbytes"], f["nlink"], f["uid"], f["gid"], f["mode"], f["rdev"], f["flags"],
                   f["generation"], f["transid"], f["atime.sec"], f["ctime.sec"], f["mtime.sec"], f["otime.sec"])


@dataclass(frozen=True)
class InodeRef:
    """One hard link of an inode: ``name`` in directory ``parent`` at directory index ``index``."""

    parent: int
    index: int
    name: bytes


def _names(data: bytes, layout: StructLayout, what: str, where: str) -> Iterator[tuple[tuple, bytes]]:
    """(fixed fields, name) of each ``layout`` + ``name_len`` bytes of name packed in ``data``."""
    pos = 0
    name_len_at = layout.index("name_len")
    while pos < len(data):
        _need(data[pos:], layout.size, what, where)
        head = layout.unpack_from(data, pos)
        start = pos + layout.size
        end = start + head[name_len_at]
        if end > len(data):
            raise CorruptionError(f"{what} name of {head[name_len_at]} bytes runs past its {len(data)}-byte item ({where})")
        yield head, data[start:end]
        pos = end


@dataclass(frozen=True)
class _Packed:
    """An item of entries packed back to back, decoded as it is iterated (see the module docstring)."""

    data: bytes
    where: str

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> _Packed:
        return cls(data, where)


@dataclass(frozen=True)
class InodeRefList(_Packed):
    """INODE_REF (inode, INODE_REF, parent dir): the inode's links in that directory, each a
    ``btrfs_inode_ref`` and its name, back to back."""

    LAYOUT: ClassVar[StructLayout] = fastparse.INODE_REF

    parent: int

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> InodeRefList:
        return cls(data, where, key[2])

    def __iter__(self) -> Iterator[InodeRef]:
        for (index, _), name in _names(self.data, self.LAYOUT, "INODE_REF", self.where):
            yield InodeRef(self.parent, index, name)


@dataclass(frozen=True)
class InodeExtrefList(_Packed):
    """INODE_EXTREF (inode, INODE_EXTREF, hash of parent dir and name): links that did not fit in an
    INODE_REF, each a ``btrfs_inode_extref`` (parent dir, index) and its name, back to back."""

    LAYOUT: ClassVar[StructLayout] = fastparse.INODE_EXTREF

    def __iter__(self) -> Iterator[InodeRef]:
        for (parent, index, _), name in _names(self.data, self.LAYOUT, "INODE_EXTREF", self.where):
            yield InodeRef(parent, index, name)


@dataclass(frozen=True)
class DirItem:
    """One directory entry (or extended attribute): ``name`` points at ``location`` (an INODE_ITEM key,
    or a ROOT_ITEM key for a subvolume); ``type`` is a BTRFS_FT_* file type; ``data_len`` bytes of
    data (an xattr's value) follow the name."""

    location: Key
    transid: int
    type: int
    name: bytes
    data_len: int


@dataclass(frozen=True)
class DirItemList(_Packed):
    """DIR_ITEM (dir, DIR_ITEM, name hash), DIR_INDEX (dir, DIR_INDEX, index) or XATTR_ITEM (inode,
    XATTR_ITEM, name hash): ``btrfs_dir_item`` + name + data entries back to back (names whose
    hashes collide share one DIR_ITEM)."""

    LAYOUT: ClassVar[StructLayout] = fastparse.DIR_ITEM

    def __iter__(self) -> Iterator[DirItem]:
        data, size, pos = self.data, self.LAYOUT.size, 0
        while pos < len(data):
            _need(data[pos:], size, "DIR_ITEM", self.where)
            oid, ktype, koff, transid, data_len, name_len, ftype = self.LAYOUT.unpack_from(data, pos)
            start = pos + size
            end = start + name_len + data_len
            if end > len(data):
                raise CorruptionError(f"DIR_ITEM name ({name_len} bytes) and data ({data_len} bytes) run past its "
                                      f"{len(data)}-byte item ({self.where})")
            problem = dir_item_problem(name_len, data_len, ftype)
            if problem:
                raise CorruptionError(f"DIR_ITEM implausible: {problem} ({self.where})")
            yield DirItem((oid, ktype, koff), transid, ftype, data[start:start + name_len], data_len)
            pos = end


@dataclass(frozen=True)
class DirLogItem:
    """DIR_LOG_INDEX (dir, DIR_LOG_INDEX, first index) / DIR_LOG_ITEM (dir, DIR_LOG_ITEM, first name hash),
    in log trees only: the log holds every entry of the directory from the key's offset to ``end``
    (inclusive), so a committed entry in that range the log lacks was deleted."""

    LAYOUT: ClassVar[StructLayout] = fastparse.DIR_LOG_ITEM

    start: int
    end: int

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> DirLogItem:
        _need(data, cls.LAYOUT.size, "DIR_LOG_INDEX", where)
        return cls(key[2], cls.LAYOUT.unpack_from(data)[0])


@dataclass(frozen=True)
class FileExtentItem:
    """EXTENT_DATA (inode, EXTENT_DATA, file offset): a ``btrfs_file_extent_item``. INLINE: the data
    (``inline_bytes`` of it, ``ram_bytes`` decompressed) follows the head in the leaf; REG and
    PREALLOC: ``num_bytes`` of the file from ``offset`` into the extent at ``disk_bytenr``
    (0: a hole)."""

    LAYOUT: ClassVar[StructLayout] = fastparse.FILE_EXTENT
    HEAD: ClassVar[StructLayout] = fastparse.FILE_EXTENT_HEAD

    generation: int
    ram_bytes: int
    compression: int
    type: int
    disk_bytenr: int = 0
    disk_num_bytes: int = 0
    offset: int = 0
    num_bytes: int = 0
    inline_bytes: int = 0

    def data_ref_offset(self, file_offset: int) -> int:
        """The offset of the EXTENT_DATA_REF this item (at ``file_offset``) counts under: where the extent
        would start in the file, ``file_offset - offset`` (wrapping, as the kernel's u64)."""
        return (file_offset - self.offset) % 2**64

    @staticmethod
    def problem(extent_type: int, compression: int, ram_bytes: int, size: int) -> str | None:
        """Why an EXTENT_DATA item of ``size`` bytes with these head fields cannot be read, or None.

        The bulk path (``model.fs_tree``) makes the same checks over whole
        leaves and takes its messages from here.
        """
        head = FileExtentItem.HEAD.size
        if extent_type == FileExtentType.INLINE:
            if size < head or (compression == Compression.NONE and ram_bytes != size - head):
                return f"inline extent of {ram_bytes} bytes does not match its {size}-byte item"
            return None
        if extent_type in (FileExtentType.REG, FileExtentType.PREALLOC):
            if size < FileExtentItem.LAYOUT.size:
                return f"EXTENT_DATA item of {size} bytes is shorter than btrfs_file_extent_item"
            return None
        return f"EXTENT_DATA has unknown type {extent_type}"

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> FileExtentItem:
        _need(data, cls.HEAD.size, "EXTENT_DATA", where)
        generation, ram_bytes, compression, _, _, extent_type = cls.HEAD.unpack_from(data)
        problem = cls.problem(extent_type, compression, ram_bytes, len(data))
        if problem:
            raise CorruptionError(f"{problem} ({where})")
        if extent_type == FileExtentType.INLINE:
            return cls(generation, ram_bytes, compression, extent_type, inline_bytes=len(data) - cls.HEAD.size)
        fields = cls.LAYOUT.as_dict(data)
        return cls(generation, ram_bytes, compression, extent_type, fields["reg.disk_bytenr"],
                   fields["reg.disk_num_bytes"], fields["reg.offset"], fields["reg.num_bytes"])


# --- root tree ------------------------------------------------------------------------


@dataclass(frozen=True)
class RootItem:
    """ROOT_ITEM (tree id, ROOT_ITEM, 0 or the snapshot's creation transid).

    Where a tree starts (``bytenr``, ``level``), and for subvolumes their
    uuids, transids and flags. Items written before the v2 extension lack
    the uuid/transid fields; those read as zero.
    """

    LAYOUT: ClassVar[StructLayout] = fastparse.ROOT_ITEM_V1
    V2: ClassVar[StructLayout] = fastparse.ROOT_ITEM_V2

    bytenr: int
    level: int
    generation: int
    root_dirid: int
    flags: int
    refs: int
    last_snapshot: int
    drop_progress_objectid: int
    uuid: bytes = ZERO_UUID
    parent_uuid: bytes = ZERO_UUID
    received_uuid: bytes = ZERO_UUID
    ctransid: int = 0
    otransid: int = 0
    ctime: int = 0
    otime: int = 0

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> RootItem:
        _need(data, cls.LAYOUT.size, "ROOT_ITEM", where)
        v1 = cls.LAYOUT.as_dict(data)
        extra = {}
        if len(data) >= cls.LAYOUT.size + cls.V2.size:
            v2 = cls.V2.as_dict(data, cls.LAYOUT.size)
            if v2["generation_v2"] == v1["generation"]:  # the kernel's test for valid v2 fields
                extra = dict(uuid=v2["uuid"], parent_uuid=v2["parent_uuid"], received_uuid=v2["received_uuid"],
                             ctransid=v2["ctransid"], otransid=v2["otransid"], ctime=v2["ctime.sec"],
                             otime=v2["otime.sec"])
        return cls(bytenr=v1["bytenr"], level=v1["level"], generation=v1["generation"], root_dirid=v1["root_dirid"],
                   flags=v1["flags"], refs=v1["refs"], last_snapshot=v1["last_snapshot"],
                   drop_progress_objectid=v1["drop_progress.objectid"], **extra)


@dataclass(frozen=True)
class RootRef:
    """ROOT_REF (parent id, ROOT_REF, child id) / ROOT_BACKREF (child id, ROOT_BACKREF, parent id).

    The subvolume ``child`` is linked as ``name`` in directory ``dirid`` of
    subvolume ``parent``.
    """

    LAYOUT: ClassVar[StructLayout] = fastparse.ROOT_REF

    dirid: int
    sequence: int
    name: bytes

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> RootRef:
        _need(data, cls.LAYOUT.size, "ROOT_REF", where)
        (dirid, sequence, _), name = next(_names(data, cls.LAYOUT, "ROOT_REF", where))  # one name; the rest unused
        return cls(dirid, sequence, name)


@dataclass(frozen=True)
class OrphanItem:
    """ORPHAN_ITEM (ORPHAN, ORPHAN_ITEM, id) in the root tree: subvolume ``id`` was deleted and the
    cleaner has not removed it yet; (dir, ORPHAN_ITEM, inode) in an fs tree: an unlinked inode still
    open. No payload."""

    LAYOUT: ClassVar[None] = None

    objectid: int

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> OrphanItem:
        return cls(key[2])


# --- extent tree ----------------------------------------------------------------------


@dataclass(frozen=True)
class Backref:
    """A reference to an extent, inline in its EXTENT_ITEM / METADATA_ITEM or its own item keyed
    (extent bytenr, type, offset):

    * TREE_BLOCK_REF (bytenr, TREE_BLOCK_REF, root): a tree block of tree ``root``;
    * SHARED_BLOCK_REF (bytenr, SHARED_BLOCK_REF, parent): a tree block under the node at ``parent``;
    * EXTENT_DATA_REF (bytenr, EXTENT_DATA_REF, hash): ``count`` file extent items of inode
      ``objectid`` of tree ``root`` at file ``offset``;
    * SHARED_DATA_REF (bytenr, SHARED_DATA_REF, parent): ``count`` file extent items in the leaf at
      ``parent``;
    * EXTENT_OWNER_REF (bytenr, EXTENT_OWNER_REF, root): the subvolume owning the extent (simple quotas).
    """

    LAYOUT: ClassVar[None] = None  # keyed: the payload's layout depends on the type
    INLINE: ClassVar[StructLayout] = fastparse.EXTENT_INLINE_REF
    INLINE_TYPE: ClassVar[StructLayout] = fastparse.EXTENT_INLINE_REF.prefix("type")
    DATA_REF: ClassVar[StructLayout] = fastparse.EXTENT_DATA_REF
    SHARED_DATA_REF: ClassVar[StructLayout] = fastparse.SHARED_DATA_REF

    type: int
    root: int = 0
    objectid: int = 0
    offset: int = 0
    parent: int = 0
    count: int = 1
    inline: bool = True

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> Backref:
        """A keyed backref item."""
        _, ref_type, offset = key
        if ref_type == ItemType.EXTENT_DATA_REF:
            if len(data) < cls.DATA_REF.size:
                raise CorruptionError(f"EXTENT_DATA_REF item too short ({where})")
            root, objectid, file_offset, count = cls.DATA_REF.unpack_from(data)
            return cls(ref_type, root=root, objectid=objectid, offset=file_offset, count=count, inline=False)
        if ref_type == ItemType.SHARED_DATA_REF:
            if len(data) < cls.SHARED_DATA_REF.size:
                raise CorruptionError(f"SHARED_DATA_REF item too short ({where})")
            return cls(ref_type, parent=offset, count=cls.SHARED_DATA_REF.unpack_from(data)[0], inline=False)
        if ref_type == ItemType.SHARED_BLOCK_REF:
            return cls(ref_type, parent=offset, inline=False)
        return cls(ref_type, root=offset, inline=False)

    @classmethod
    def parse_inline(cls, data: bytes, pos: int, where: str) -> tuple[Backref, ...]:
        """The ``btrfs_extent_inline_ref``s packed from ``pos`` to the end of an extent item."""
        refs = []
        while pos < len(data):
            (ref_type,) = cls.INLINE_TYPE.unpack_from(data, pos)
            body = pos + cls.INLINE_TYPE.size
            if ref_type == ItemType.EXTENT_DATA_REF:
                if body + cls.DATA_REF.size > len(data):
                    raise CorruptionError(f"inline EXTENT_DATA_REF runs past its extent item ({where})")
                root, objectid, offset, count = cls.DATA_REF.unpack_from(data, body)
                refs.append(cls(ref_type, root=root, objectid=objectid, offset=offset, count=count))
                pos = body + cls.DATA_REF.size
                continue
            if ref_type not in (ItemType.TREE_BLOCK_REF, ItemType.SHARED_BLOCK_REF, ItemType.SHARED_DATA_REF,
                                ItemType.EXTENT_OWNER_REF):
                raise CorruptionError(f"unknown inline backref type {ref_type} ({where})")
            if pos + cls.INLINE.size > len(data):
                raise CorruptionError(f"inline {ItemType.describe(ref_type)} runs past its extent item ({where})")
            _, value = cls.INLINE.unpack_from(data, pos)
            pos += cls.INLINE.size
            if ref_type == ItemType.SHARED_DATA_REF:
                if pos + cls.SHARED_DATA_REF.size > len(data):
                    raise CorruptionError(f"inline SHARED_DATA_REF runs past its extent item ({where})")
                (count,) = cls.SHARED_DATA_REF.unpack_from(data, pos)
                pos += cls.SHARED_DATA_REF.size
                refs.append(cls(ref_type, parent=value, count=count))
            elif ref_type == ItemType.SHARED_BLOCK_REF:
                refs.append(cls(ref_type, parent=value))
            else:
                refs.append(cls(ref_type, root=value))
        return tuple(refs)


@dataclass(frozen=True)
class ExtentItem:
    """EXTENT_ITEM (bytenr, EXTENT_ITEM, length) or skinny METADATA_ITEM (bytenr, METADATA_ITEM, level):
    an allocated extent, its ``refs`` and the backrefs packed inline after it (a non-skinny tree
    block has a ``btrfs_tree_block_info`` first). ``num_bytes`` is 0 for a METADATA_ITEM."""

    LAYOUT: ClassVar[StructLayout] = fastparse.EXTENT_ITEM
    TREE_BLOCK_INFO: ClassVar[StructLayout] = fastparse.TREE_BLOCK_INFO

    bytenr: int
    num_bytes: int
    refs: int
    generation: int
    flags: int
    inline_refs: tuple[Backref, ...]

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> ExtentItem:
        bytenr, item_type, offset = key
        if len(data) < cls.LAYOUT.size:
            raise CorruptionError(f"extent item of {len(data)} bytes is shorter than btrfs_extent_item ({where})")
        refs, generation, flags = cls.LAYOUT.unpack_from(data)
        pos = cls.LAYOUT.size
        if item_type == ItemType.EXTENT_ITEM and flags & ExtentFlag.TREE_BLOCK:
            pos += cls.TREE_BLOCK_INFO.size
        num_bytes = offset if item_type == ItemType.EXTENT_ITEM else 0
        return cls(bytenr, num_bytes, refs, generation, flags, Backref.parse_inline(data, pos, where))


@dataclass(frozen=True)
class BlockGroupItem:
    """BLOCK_GROUP_ITEM (chunk logical start, BLOCK_GROUP_ITEM, chunk length), in the extent tree or the
    block group tree: ``used`` bytes of the chunk and its ``flags`` (the chunk's type)."""

    LAYOUT: ClassVar[StructLayout] = fastparse.BLOCK_GROUP_ITEM

    used: int
    chunk_objectid: int
    flags: int

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> BlockGroupItem:
        if len(data) < cls.LAYOUT.size:
            raise CorruptionError(f"BLOCK_GROUP_ITEM of chunk {key[0]} is {len(data)} bytes, shorter than "
                                  "btrfs_block_group_item")
        item = cls(*cls.LAYOUT.unpack_from(data))
        problem = block_group_problem(key[2], item.used, item.chunk_objectid, item.flags)
        if problem:
            raise CorruptionError(f"BLOCK_GROUP_ITEM of chunk {key[0]} implausible: {problem}")
        return item


# --- chunk tree -----------------------------------------------------------------------


@dataclass(frozen=True)
class DevItem:
    """DEV_ITEM (DEV_ITEMS, DEV_ITEM, devid) in the chunk tree: one device of the filesystem, its size
    and how much of it chunks use."""

    LAYOUT: ClassVar[StructLayout] = fastparse.DEV_ITEM

    devid: int
    total_bytes: int
    bytes_used: int
    uuid: bytes
    fsid: bytes

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> DevItem:
        if len(data) < cls.LAYOUT.size:
            raise CorruptionError(f"DEV_ITEM {key[2]} is {len(data)} bytes, shorter than btrfs_dev_item")
        f = cls.LAYOUT.as_dict(data)
        return cls(f["devid"], f["total_bytes"], f["bytes_used"], f["uuid"], f["fsid"])


@dataclass(frozen=True, slots=True)
class Stripe:
    """One ``btrfs_stripe`` of a chunk: where on which device it starts."""

    devid: int
    offset: int
    dev_uuid: bytes


_TYPE_NAMES = ((int(BlockGroupFlag.DATA), "DATA"), (int(BlockGroupFlag.METADATA), "METADATA"),
               (int(BlockGroupFlag.SYSTEM), "SYSTEM"))


@dataclass(frozen=True, slots=True)
class Chunk:
    """CHUNK_ITEM (FIRST_CHUNK_TREE, CHUNK_ITEM, logical start), in the chunk tree or the superblock's
    sys_chunk_array: a ``btrfs_chunk`` and its ``num_stripes`` ``btrfs_stripe``s, mapping
    ``[logical, logical + length)`` onto the devices (``volumes.chunks`` says how, per profile)."""

    LAYOUT: ClassVar[StructLayout] = fastparse.CHUNK
    STRIPE: ClassVar[StructLayout] = fastparse.STRIPE

    logical: int
    length: int
    owner: int
    stripe_len: int
    type: int
    io_align: int
    io_width: int
    sector_size: int
    num_stripes: int
    sub_stripes: int
    stripes: tuple[Stripe, ...]

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> Chunk:
        """The chunk of an item payload; a damaged ``num_stripes`` is a clear error, never a short read."""
        logical, size = key[2], len(data)
        num_stripes_at = cls.LAYOUT.index("num_stripes")
        if size >= cls.LAYOUT.size and cls.LAYOUT.unpack_from(data)[num_stripes_at] == 0:
            raise CorruptionError(f"chunk item at logical {logical} ({where}): num_stripes 0")
        if size < cls.LAYOUT.size + cls.STRIPE.size:
            raise CorruptionError(f"chunk item at logical {logical} ({where}) is {size} bytes, shorter than one "
                                  "chunk with one stripe")
        head = cls.LAYOUT.unpack_from(data)
        num_stripes = head[num_stripes_at]
        needed = cls.LAYOUT.size + num_stripes * cls.STRIPE.size
        if needed > size:
            raise CorruptionError(f"chunk item at logical {logical} ({where}): num_stripes {num_stripes} needs "
                                  f"{needed} bytes, item has {size}")
        stripes = tuple(Stripe(*cls.STRIPE.unpack_from(data, cls.LAYOUT.size + i * cls.STRIPE.size))
                        for i in range(num_stripes))
        length, owner, stripe_len, type_, io_align, io_width, sector_size, _, sub_stripes = head
        return cls(logical, length, owner, stripe_len, type_, io_align, io_width, sector_size, num_stripes,
                   sub_stripes, stripes)

    @property
    def end(self) -> int:
        """First logical address after the chunk."""
        return self.logical + self.length

    @property
    def profile(self) -> Profile:
        """The replication profile; ``ValueError`` when several profile bits are set."""
        return Profile.from_type(self.type)

    @property
    def type_names(self) -> list[str]:
        """``'DATA'``, ``'METADATA'``, ``'SYSTEM'`` for the set type bits, in that order."""
        return [name for bit, name in _TYPE_NAMES if self.type & bit]

    @property
    def num_copies(self) -> int:
        """``btrfs_num_copies`` of btrfs-progs (the ``-c`` copies btrfs-map-logical prints).

        DUP/RAID1*: ``num_stripes``; RAID10: ``sub_stripes``; RAID5: 2 and
        RAID6: 3 (mirror 1 is the data, higher mirrors are rebuilds from
        parity, see ``volumes.chunks``); SINGLE/RAID0: 1.
        """
        t = self.type
        if t & (BlockGroupFlag.DUP | BLOCK_GROUP_RAID1_MASK):
            return self.num_stripes
        if t & BlockGroupFlag.RAID10:
            return self.sub_stripes
        if t & BlockGroupFlag.RAID5:
            return 2
        if t & BlockGroupFlag.RAID6:
            return 3
        return 1

    @property
    def nparity(self) -> int:
        """Parity stripes per row: 1 for RAID5, 2 for RAID6, else 0."""
        t = self.type
        if t & BlockGroupFlag.RAID6:
            return 2
        if t & BlockGroupFlag.RAID5:
            return 1
        return 0

    @property
    def data_stripes(self) -> int:
        """Distinct data stripes in one full stripe row (the kernel's ``data_stripes``/factor).

        RAID0: ``num_stripes``; RAID10: ``num_stripes // sub_stripes``;
        RAID5/6: ``num_stripes - nparity``; SINGLE, DUP, RAID1*: 1.  0 for a
        chunk that cannot be mapped (never raises).
        """
        t = self.type
        if t & BlockGroupFlag.RAID0:
            return self.num_stripes
        if t & BlockGroupFlag.RAID10:
            return self.num_stripes // self.sub_stripes if self.sub_stripes > 0 else 0
        if t & BLOCK_GROUP_RAID56_MASK:
            return max(self.num_stripes - self.nparity, 0)
        return 1

    @property
    def device_length(self) -> int:
        """Bytes each stripe occupies on its device (the dev extent length).

        The kernel's ``calc_stripe_length``: ``length / data_stripes`` for
        RAID0 and RAID5/6, ``length * sub_stripes / num_stripes`` for RAID10,
        ``length`` otherwise; 0 for an unmappable chunk.
        """
        data = self.data_stripes
        if data <= 0:
            return 0
        return self.length // data


def iter_sys_chunk_array(array: bytes, device: str) -> Iterator[Chunk]:
    """Chunks of a superblock's sys_chunk_array: ``btrfs_disk_key``, chunk, stripes, repeated."""
    key_layout, chunk_layout, stripe_size = fastparse.DISK_KEY, Chunk.LAYOUT, Chunk.STRIPE.size
    num_stripes_at = chunk_layout.index("num_stripes")
    pos = 0
    where = f"sys_chunk_array of {device}"
    while pos < len(array):
        if pos + key_layout.size > len(array):
            raise CorruptionError(f"{where}: truncated key at byte {pos}")
        key = key_layout.unpack_from(array, pos)
        if key[1] != ItemType.CHUNK_ITEM:
            raise CorruptionError(f"{where}: key type {ItemType.describe(key[1])} at byte {pos}, expected CHUNK_ITEM")
        pos += key_layout.size
        if pos + chunk_layout.size > len(array):
            raise CorruptionError(f"{where}: truncated chunk at byte {pos}")
        size = chunk_layout.size + chunk_layout.unpack_from(array, pos)[num_stripes_at] * stripe_size
        yield Chunk.parse(key, array[pos:pos + size], where)
        pos += size


# --- the checksum tree ------------------------------------------------------------------


@dataclass(frozen=True)
class CsumItem:
    """EXTENT_CSUM (EXTENT_CSUM_OBJECTID, EXTENT_CSUM, logical start): one checksum per data sector from
    ``logical`` on, back to back.

    Their size is the superblock's ``csum_type`` (crc32c 4 bytes, xxhash64 8,
    sha256 and blake2b 32), not stored in the item: ``checksums`` splits the
    payload once it is known. The bulk reader (``model.csums``) checks whole
    leaves at once with the same rules (``plausibility.CSUM_RULES``).
    """

    LAYOUT: ClassVar[None] = None  # a run of checksums, no fixed part

    logical: int
    data: bytes

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> CsumItem:
        if key[0] != ObjectId.EXTENT_CSUM:
            raise CorruptionError(f"EXTENT_CSUM item with objectid {key[0]}, not EXTENT_CSUM_OBJECTID ({where})")
        return cls(key[2], bytes(data))

    def checksums(self, limits: Limits, where: str) -> list[bytes]:
        """The checksum of each sector, in address order (the item checked alone: ``plausibility.CSUM_RULES``)."""
        key = (int(ObjectId.EXTENT_CSUM), int(ItemType.EXTENT_CSUM), self.logical)
        if (what := item_problem(key, self.data, limits)) is not None:
            raise CorruptionError(f"EXTENT_CSUM item at logical {self.logical} implausible: {what} ({where})")
        size = limits.csum_size
        return [self.data[i:i + size] for i in range(0, len(self.data), size)]


# --- the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UnknownItem:
    """An item of a type not in ``ITEM_TYPES``: its key type and raw payload."""

    LAYOUT: ClassVar[None] = None

    type: int
    data: bytes

    @classmethod
    def parse(cls, key: Key, data: bytes, where: str) -> UnknownItem:
        return cls(key[1], data)


#: Key type -> the record class its items parse into.
ITEM_TYPES: dict[int, type[ItemRecord]] = {
    ItemType.INODE_ITEM: InodeItem,
    ItemType.INODE_REF: InodeRefList,
    ItemType.INODE_EXTREF: InodeExtrefList,
    ItemType.XATTR_ITEM: DirItemList,
    ItemType.ORPHAN_ITEM: OrphanItem,
    ItemType.DIR_ITEM: DirItemList,
    ItemType.DIR_INDEX: DirItemList,
    ItemType.DIR_LOG_ITEM: DirLogItem,
    ItemType.DIR_LOG_INDEX: DirLogItem,
    ItemType.EXTENT_DATA: FileExtentItem,
    ItemType.EXTENT_CSUM: CsumItem,
    ItemType.ROOT_ITEM: RootItem,
    ItemType.ROOT_BACKREF: RootRef,
    ItemType.ROOT_REF: RootRef,
    ItemType.EXTENT_ITEM: ExtentItem,
    ItemType.METADATA_ITEM: ExtentItem,
    ItemType.EXTENT_OWNER_REF: Backref,
    ItemType.TREE_BLOCK_REF: Backref,
    ItemType.EXTENT_DATA_REF: Backref,
    ItemType.SHARED_BLOCK_REF: Backref,
    ItemType.SHARED_DATA_REF: Backref,
    ItemType.BLOCK_GROUP_ITEM: BlockGroupItem,
    ItemType.DEV_ITEM: DevItem,
    ItemType.CHUNK_ITEM: Chunk,
}


def parse_item(key: Key, data: bytes, where: str) -> ItemRecord:
    """The record of one item: its type's class from ``ITEM_TYPES`` (else ``UnknownItem``) parses it.

    ``CorruptionError`` naming ``where`` when the payload is damaged.
    """
    return ITEM_TYPES.get(key[1], UnknownItem).parse(key, data, where)
