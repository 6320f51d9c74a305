"""On-disk constants of btrfs, named as in the kernel's uapi/btrfs_tree.h.

Every number btrfsscan compares against an on-disk value lives here as an
enum member, so code reads like the kernel (``ItemType.EXTENT_DATA``) and
displays use the names btrfs-progs prints.
"""

from __future__ import annotations

import enum

BTRFS_MAGIC = b"_BHRfS_M"
BTRFS_SUPER_INFO_OFFSET = 0x10000
BTRFS_SUPER_INFO_SIZE = 4096
BTRFS_SUPER_MIRROR_MAX = 3
BTRFS_SUPER_MIRROR_SHIFT = 12
BTRFS_CSUM_SIZE = 32
BTRFS_FSID_SIZE = 16
BTRFS_UUID_SIZE = 16
BTRFS_LABEL_SIZE = 256
BTRFS_SYSTEM_CHUNK_ARRAY_SIZE = 2048
BTRFS_NUM_BACKUP_ROOTS = 4
BTRFS_MAX_LEVEL = 8
BTRFS_STRIPE_LEN = 64 * 1024
BTRFS_NAME_LEN = 255
BTRFS_MAX_INLINE_DATA_SIZE_LIMIT = 4096  # inline data never exceeds a page/sector
#: A compressed extent holds at most this many bytes on disk, and decompresses to at most this many
#: (the kernel's BTRFS_MAX_COMPRESSED, BTRFS_MAX_UNCOMPRESSED).
BTRFS_MAX_COMPRESSED = 128 << 10
BTRFS_MAX_UNCOMPRESSED = 128 << 10
#: The largest data chunk the kernel allocates (BTRFS_MAX_DATA_CHUNK_SIZE): an extent lies in one chunk.
BTRFS_MAX_DATA_CHUNK_SIZE = 10 << 30


def super_mirror_offset(mirror: int) -> int:
    """Byte offset of superblock copy ``mirror`` (0: 64 KiB, 1: 64 MiB, 2: 256 GiB)."""
    if mirror == 0:
        return BTRFS_SUPER_INFO_OFFSET
    return 16 * 1024 << (BTRFS_SUPER_MIRROR_SHIFT * mirror)


class ObjectId(enum.IntEnum):
    """Well-known key objectids (trees and special items)."""

    DEV_STATS = 0
    ROOT_TREE = 1
    EXTENT_TREE = 2
    CHUNK_TREE = 3
    DEV_TREE = 4
    FS_TREE = 5
    ROOT_TREE_DIR = 6
    CSUM_TREE = 7
    QUOTA_TREE = 8
    UUID_TREE = 9
    FREE_SPACE_TREE = 10
    BLOCK_GROUP_TREE = 11
    RAID_STRIPE_TREE = 12
    REMAP_TREE = 13
    FIRST_FREE = 256
    BALANCE = 2**64 - 4
    ORPHAN = 2**64 - 5
    TREE_LOG = 2**64 - 6
    TREE_LOG_FIXUP = 2**64 - 7
    TREE_RELOC = 2**64 - 8
    DATA_RELOC_TREE = 2**64 - 9
    EXTENT_CSUM = 2**64 - 10
    FREE_SPACE = 2**64 - 11
    FREE_INO = 2**64 - 12
    CSUM_CHANGE = 2**64 - 13
    MULTIPLE = 2**64 - 255
    LAST_FREE = 2**64 - 256

    @classmethod
    def describe(cls, value: int) -> str:
        """Name of a well-known objectid, else the number itself."""
        try:
            return cls(value).name
        except ValueError:
            return str(value)


BTRFS_FIRST_CHUNK_TREE_OBJECTID = 256
BTRFS_DEV_ITEMS_OBJECTID = 1


def is_fs_tree(objectid: int) -> bool:
    """True for the top-level fs tree and every subvolume/snapshot tree id."""
    return objectid == ObjectId.FS_TREE or ObjectId.FIRST_FREE <= objectid <= ObjectId.LAST_FREE


class ItemType(enum.IntEnum):
    """The ``type`` byte of a ``btrfs_disk_key``: what the item holds."""

    INODE_ITEM = 1
    INODE_REF = 12
    INODE_EXTREF = 13
    XATTR_ITEM = 24
    VERITY_DESC_ITEM = 36
    VERITY_MERKLE_ITEM = 37
    ORPHAN_ITEM = 48
    DIR_LOG_ITEM = 60
    DIR_LOG_INDEX = 72
    DIR_ITEM = 84
    DIR_INDEX = 96
    EXTENT_DATA = 108
    EXTENT_CSUM = 128
    ROOT_ITEM = 132
    ROOT_BACKREF = 144
    ROOT_REF = 156
    EXTENT_ITEM = 168
    METADATA_ITEM = 169
    EXTENT_OWNER_REF = 172
    TREE_BLOCK_REF = 176
    EXTENT_DATA_REF = 178
    SHARED_BLOCK_REF = 182
    SHARED_DATA_REF = 184
    BLOCK_GROUP_ITEM = 192
    FREE_SPACE_INFO = 198
    FREE_SPACE_EXTENT = 199
    FREE_SPACE_BITMAP = 200
    DEV_EXTENT = 204
    DEV_ITEM = 216
    CHUNK_ITEM = 228
    RAID_STRIPE = 230
    QGROUP_STATUS = 240
    QGROUP_INFO = 242
    QGROUP_LIMIT = 244
    QGROUP_RELATION = 246
    TEMPORARY_ITEM = 248
    PERSISTENT_ITEM = 249
    DEV_REPLACE = 250
    UUID_KEY_SUBVOL = 251
    UUID_KEY_RECEIVED_SUBVOL = 252
    STRING_ITEM = 253

    @classmethod
    def describe(cls, value: int) -> str:
        try:
            return cls(value).name
        except ValueError:
            return f"UNKNOWN.{value}"


class BlockGroupFlag(enum.IntFlag):
    """``btrfs_chunk.type`` / ``btrfs_block_group_item.flags`` bits."""

    DATA = 1 << 0
    SYSTEM = 1 << 1
    METADATA = 1 << 2
    RAID0 = 1 << 3
    RAID1 = 1 << 4
    DUP = 1 << 5
    RAID10 = 1 << 6
    RAID5 = 1 << 7
    RAID6 = 1 << 8
    RAID1C3 = 1 << 9
    RAID1C4 = 1 << 10
    REMAPPED = 1 << 11
    METADATA_REMAP = 1 << 12


BLOCK_GROUP_TYPE_MASK = BlockGroupFlag.DATA | BlockGroupFlag.SYSTEM | BlockGroupFlag.METADATA
BLOCK_GROUP_RAID1_MASK = BlockGroupFlag.RAID1 | BlockGroupFlag.RAID1C3 | BlockGroupFlag.RAID1C4
BLOCK_GROUP_RAID56_MASK = BlockGroupFlag.RAID5 | BlockGroupFlag.RAID6
BLOCK_GROUP_PROFILE_MASK = (
    BlockGroupFlag.RAID0
    | BlockGroupFlag.RAID1
    | BlockGroupFlag.DUP
    | BlockGroupFlag.RAID10
    | BlockGroupFlag.RAID5
    | BlockGroupFlag.RAID6
    | BlockGroupFlag.RAID1C3
    | BlockGroupFlag.RAID1C4
)


class Profile(enum.Enum):
    """Replication profile of a chunk; ``SINGLE`` has no flag bit on disk."""

    SINGLE = 0
    DUP = int(BlockGroupFlag.DUP)
    RAID0 = int(BlockGroupFlag.RAID0)
    RAID1 = int(BlockGroupFlag.RAID1)
    RAID1C3 = int(BlockGroupFlag.RAID1C3)
    RAID1C4 = int(BlockGroupFlag.RAID1C4)
    RAID10 = int(BlockGroupFlag.RAID10)
    RAID5 = int(BlockGroupFlag.RAID5)
    RAID6 = int(BlockGroupFlag.RAID6)

    @classmethod
    def from_type(cls, chunk_type: int) -> "Profile":
        """Profile of a chunk type; raises ValueError when several profile bits are set."""
        return cls(chunk_type & BLOCK_GROUP_PROFILE_MASK)

    @property
    def parity_stripes(self) -> int:
        return {Profile.RAID5: 1, Profile.RAID6: 2}.get(self, 0)


class IncompatFlag(enum.IntFlag):
    """``btrfs_super_block.incompat_flags`` (BTRFS_FEATURE_INCOMPAT_*)."""

    MIXED_BACKREF = 1 << 0
    DEFAULT_SUBVOL = 1 << 1
    MIXED_GROUPS = 1 << 2
    COMPRESS_LZO = 1 << 3
    COMPRESS_ZSTD = 1 << 4
    BIG_METADATA = 1 << 5
    EXTENDED_IREF = 1 << 6
    RAID56 = 1 << 7
    SKINNY_METADATA = 1 << 8
    NO_HOLES = 1 << 9
    METADATA_UUID = 1 << 10
    RAID1C34 = 1 << 11
    ZONED = 1 << 12
    EXTENT_TREE_V2 = 1 << 13
    RAID_STRIPE_TREE = 1 << 14
    SIMPLE_QUOTA = 1 << 16
    REMAP_TREE = 1 << 17


#: Features whose on-disk mapping btrfsscan does not implement; images using
#: them are refused rather than misread.
UNSUPPORTED_INCOMPAT = (
    IncompatFlag.EXTENT_TREE_V2 | IncompatFlag.RAID_STRIPE_TREE | IncompatFlag.REMAP_TREE | IncompatFlag.ZONED
)


class CompatRoFlag(enum.IntFlag):
    """``btrfs_super_block.compat_ro_flags`` (BTRFS_FEATURE_COMPAT_RO_*)."""

    FREE_SPACE_TREE = 1 << 0
    FREE_SPACE_TREE_VALID = 1 << 1
    VERITY = 1 << 2
    BLOCK_GROUP_TREE = 1 << 3


class SuperFlag(enum.IntFlag):
    """``btrfs_super_block.flags`` (also the low bits of ``btrfs_header.flags``)."""

    WRITTEN = 1 << 0
    RELOC = 1 << 1
    ERROR = 1 << 2
    SEEDING = 1 << 32
    METADUMP = 1 << 33
    METADUMP_V2 = 1 << 34
    CHANGING_FSID = 1 << 35
    CHANGING_FSID_V2 = 1 << 36
    CHANGING_BG_TREE = 1 << 38
    CHANGING_DATA_CSUM = 1 << 39
    CHANGING_META_CSUM = 1 << 40


class CsumType(enum.IntEnum):
    """``btrfs_super_block.csum_type``; names as ``mkfs.btrfs --csum`` takes them."""

    CRC32C = 0
    XXHASH64 = 1
    SHA256 = 2
    BLAKE2B = 3

    @property
    def size(self) -> int:
        return {CsumType.CRC32C: 4, CsumType.XXHASH64: 8}.get(self, 32)

    @property
    def label(self) -> str:
        return {CsumType.CRC32C: "crc32c", CsumType.XXHASH64: "xxhash64", CsumType.SHA256: "sha256", CsumType.BLAKE2B: "blake2b"}[self]


class FileExtentType(enum.IntEnum):
    """``btrfs_file_extent_item.type``."""

    INLINE = 0
    REG = 1
    PREALLOC = 2


class Compression(enum.IntEnum):
    """``btrfs_file_extent_item.compression``."""

    NONE = 0
    ZLIB = 1
    LZO = 2
    ZSTD = 3


class InodeFlag(enum.IntFlag):
    """``btrfs_inode_item.flags`` (BTRFS_INODE_*)."""

    NODATASUM = 1 << 0
    NODATACOW = 1 << 1
    READONLY = 1 << 2
    NOCOMPRESS = 1 << 3
    PREALLOC = 1 << 4
    SYNC = 1 << 5
    IMMUTABLE = 1 << 6
    APPEND = 1 << 7
    NODUMP = 1 << 8
    NOATIME = 1 << 9
    DIRSYNC = 1 << 10
    COMPRESS = 1 << 11
    ROOT_ITEM_INIT = 1 << 31


class RootFlag(enum.IntFlag):
    """``btrfs_root_item.flags``."""

    SUBVOL_RDONLY = 1 << 0
    SUBVOL_DEAD = 1 << 48


class ExtentFlag(enum.IntFlag):
    """``btrfs_extent_item.flags``."""

    DATA = 1 << 0
    TREE_BLOCK = 1 << 1
    FULL_BACKREF = 1 << 8


class FileType(enum.IntEnum):
    """``btrfs_dir_item.type`` (BTRFS_FT_*)."""

    UNKNOWN = 0
    REG_FILE = 1
    DIR = 2
    CHRDEV = 3
    BLKDEV = 4
    FIFO = 5
    SOCK = 6
    SYMLINK = 7
    XATTR = 8


# --- btrfs-image (metadump) container (btrfs-progs image/metadump.h) ---------------

METADUMP_BLOCK_SIZE = 1024  # an index block; clusters are padded to a multiple of it
#: dump version -> (magic, max_pending_size). The index block has the same size
#: in both versions; version 1 (only in experimental builds) allows entries up
#: to 256 MiB instead of 256 KiB.
METADUMP_VERSIONS: dict[int, tuple[int, int]] = {
    0: (0xBD5C25E27295668B, 256 * 1024),
    1: (0x31765F506D55445F, 256 * 1024 * 1024),  # ASCII "_DUmP_v1"
}


class MetadumpCompression(enum.IntEnum):
    """``meta_cluster_header.compress``: how a cluster's payloads are stored."""

    NONE = 0
    ZLIB = 1


def flag_names(flag_type: type[enum.IntFlag], value: int) -> list[str]:
    """Names of the set bits of ``value``, unknown bits as ``unknown(0x..)``."""
    names = [member.name for member in flag_type if member.value and value & member.value == member.value]
    known = 0
    for member in flag_type:
        known |= member.value
    if value & ~known:
        names.append(f"unknown(0x{value & ~known:x})")
    return names


# --- kernel interfaces of a mounted filesystem (uapi linux/fiemap.h, linux/stat.h, linux/magic.h) ---


class FiemapFlag(enum.IntFlag):
    """``fiemap_extent.fe_flags`` (FIEMAP_EXTENT_*)."""

    LAST = 0x1
    UNKNOWN = 0x2
    DELALLOC = 0x4
    ENCODED = 0x8
    DATA_ENCRYPTED = 0x80
    NOT_ALIGNED = 0x100
    DATA_INLINE = 0x200
    DATA_TAIL = 0x400
    UNWRITTEN = 0x800
    MERGED = 0x1000
    SHARED = 0x2000


class StatxMask(enum.IntFlag):
    """``statx.stx_mask`` bits btrfsscan asks for (STATX_*)."""

    INO = 0x100
    SIZE = 0x200
    MNT_ID = 0x1000
    SUBVOL = 0x8000


class FsMagic(enum.IntEnum):
    """``statfs.f_type`` of the filesystems ``live`` knows by name."""

    BTRFS = 0x9123683E
    XFS = 0x58465342
    EXT4 = 0xEF53
    TMPFS = 0x01021994
