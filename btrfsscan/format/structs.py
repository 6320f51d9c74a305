"""The on-disk layouts of btrfs as ``construct`` definitions.

This module is the one definition of every byte layout btrfsscan reads; field
names are those of the kernel's ``struct btrfs_*`` (uapi/btrfs_tree.h), and of
btrfs-progs' ``struct meta_cluster*`` for btrfs-image dumps. Hot
paths do not parse with construct (too slow per item): ``fastparse`` derives
``struct``/numpy layouts from these same definitions, so a layout is written
once.  All integers are little-endian and every struct is packed.
"""

from __future__ import annotations

from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Padded, Struct, this

from .constants import (
    BTRFS_CSUM_SIZE,
    BTRFS_FSID_SIZE,
    BTRFS_LABEL_SIZE,
    BTRFS_NUM_BACKUP_ROOTS,
    BTRFS_SYSTEM_CHUNK_ARRAY_SIZE,
    BTRFS_UUID_SIZE,
    METADUMP_BLOCK_SIZE,
)

# --- keys and tree blocks -----------------------------------------------------

btrfs_disk_key = Struct(
    "objectid" / Int64ul,
    "type" / Int8ul,
    "offset" / Int64ul,
)

btrfs_header = Struct(
    "csum" / Bytes(BTRFS_CSUM_SIZE),
    "fsid" / Bytes(BTRFS_FSID_SIZE),
    "bytenr" / Int64ul,
    "flags" / Int64ul,  # low 56 bits: flags; top 8 bits: backref revision
    "chunk_tree_uuid" / Bytes(BTRFS_UUID_SIZE),
    "generation" / Int64ul,
    "owner" / Int64ul,
    "nritems" / Int32ul,
    "level" / Int8ul,
)

#: A leaf's item header; ``offset`` is relative to the end of ``btrfs_header``.
btrfs_item = Struct(
    "key" / btrfs_disk_key,
    "offset" / Int32ul,
    "size" / Int32ul,
)

#: A node's child pointer.
btrfs_key_ptr = Struct(
    "key" / btrfs_disk_key,
    "blockptr" / Int64ul,
    "generation" / Int64ul,
)

# --- superblock -----------------------------------------------------------------

btrfs_dev_item = Struct(
    "devid" / Int64ul,
    "total_bytes" / Int64ul,
    "bytes_used" / Int64ul,
    "io_align" / Int32ul,
    "io_width" / Int32ul,
    "sector_size" / Int32ul,
    "type" / Int64ul,
    "generation" / Int64ul,
    "start_offset" / Int64ul,
    "dev_group" / Int32ul,
    "seek_speed" / Int8ul,
    "bandwidth" / Int8ul,
    "uuid" / Bytes(BTRFS_UUID_SIZE),
    "fsid" / Bytes(BTRFS_FSID_SIZE),
)

btrfs_root_backup = Struct(
    "tree_root" / Int64ul,
    "tree_root_gen" / Int64ul,
    "chunk_root" / Int64ul,
    "chunk_root_gen" / Int64ul,
    "extent_root" / Int64ul,
    "extent_root_gen" / Int64ul,
    "fs_root" / Int64ul,
    "fs_root_gen" / Int64ul,
    "dev_root" / Int64ul,
    "dev_root_gen" / Int64ul,
    "csum_root" / Int64ul,
    "csum_root_gen" / Int64ul,
    "total_bytes" / Int64ul,
    "bytes_used" / Int64ul,
    "num_devices" / Int64ul,
    "unused_64" / Array(4, Int64ul),
    "tree_root_level" / Int8ul,
    "chunk_root_level" / Int8ul,
    "extent_root_level" / Int8ul,
    "fs_root_level" / Int8ul,
    "dev_root_level" / Int8ul,
    "csum_root_level" / Int8ul,
    "unused_8" / Bytes(10),
)

btrfs_super_block = Struct(
    "csum" / Bytes(BTRFS_CSUM_SIZE),
    "fsid" / Bytes(BTRFS_FSID_SIZE),
    "bytenr" / Int64ul,
    "flags" / Int64ul,
    "magic" / Bytes(8),
    "generation" / Int64ul,
    "root" / Int64ul,
    "chunk_root" / Int64ul,
    "log_root" / Int64ul,
    "log_root_transid" / Int64ul,  # deprecated
    "total_bytes" / Int64ul,
    "bytes_used" / Int64ul,
    "root_dir_objectid" / Int64ul,
    "num_devices" / Int64ul,
    "sectorsize" / Int32ul,
    "nodesize" / Int32ul,
    "leafsize" / Int32ul,  # deprecated, equals nodesize
    "stripesize" / Int32ul,
    "sys_chunk_array_size" / Int32ul,
    "chunk_root_generation" / Int64ul,
    "compat_flags" / Int64ul,
    "compat_ro_flags" / Int64ul,
    "incompat_flags" / Int64ul,
    "csum_type" / Int16ul,
    "root_level" / Int8ul,
    "chunk_root_level" / Int8ul,
    "log_root_level" / Int8ul,
    "dev_item" / btrfs_dev_item,
    "label" / Bytes(BTRFS_LABEL_SIZE),
    "cache_generation" / Int64ul,
    "uuid_tree_generation" / Int64ul,
    "metadata_uuid" / Bytes(BTRFS_FSID_SIZE),
    "nr_global_roots" / Int64ul,
    "remap_root" / Int64ul,
    "remap_root_generation" / Int64ul,
    "remap_root_level" / Int8ul,
    "reserved" / Bytes(199),
    "sys_chunk_array" / Bytes(BTRFS_SYSTEM_CHUNK_ARRAY_SIZE),
    "super_roots" / Array(BTRFS_NUM_BACKUP_ROOTS, btrfs_root_backup),
    "padding" / Bytes(565),
)

# --- chunk and device trees -----------------------------------------------------

btrfs_stripe = Struct(
    "devid" / Int64ul,
    "offset" / Int64ul,
    "dev_uuid" / Bytes(BTRFS_UUID_SIZE),
)

#: Fixed part of a chunk item; ``num_stripes`` ``btrfs_stripe`` follow it
#: (the first is part of the kernel's struct, counted separately here).
btrfs_chunk = Struct(
    "length" / Int64ul,
    "owner" / Int64ul,
    "stripe_len" / Int64ul,
    "type" / Int64ul,
    "io_align" / Int32ul,
    "io_width" / Int32ul,
    "sector_size" / Int32ul,
    "num_stripes" / Int16ul,
    "sub_stripes" / Int16ul,
)

btrfs_block_group_item = Struct(
    "used" / Int64ul,
    "chunk_objectid" / Int64ul,
    "flags" / Int64ul,
)

# --- root tree --------------------------------------------------------------------

btrfs_timespec = Struct(
    "sec" / Int64ul,
    "nsec" / Int32ul,
)

btrfs_inode_item = Struct(
    "generation" / Int64ul,
    "transid" / Int64ul,
    "size" / Int64ul,
    "nbytes" / Int64ul,
    "block_group" / Int64ul,
    "nlink" / Int32ul,
    "uid" / Int32ul,
    "gid" / Int32ul,
    "mode" / Int32ul,
    "rdev" / Int64ul,
    "flags" / Int64ul,
    "sequence" / Int64ul,
    "reserved" / Array(4, Int64ul),
    "atime" / btrfs_timespec,
    "ctime" / btrfs_timespec,
    "mtime" / btrfs_timespec,
    "otime" / btrfs_timespec,
)

#: The part of ``btrfs_root_item`` every version has (before ``generation_v2``).
btrfs_root_item_v1 = Struct(
    "inode" / btrfs_inode_item,
    "generation" / Int64ul,
    "root_dirid" / Int64ul,
    "bytenr" / Int64ul,
    "byte_limit" / Int64ul,
    "bytes_used" / Int64ul,
    "last_snapshot" / Int64ul,
    "flags" / Int64ul,
    "refs" / Int32ul,
    "drop_progress" / btrfs_disk_key,
    "drop_level" / Int8ul,
    "level" / Int8ul,
)

#: The fields added by the extended root item (uuids and transids).
btrfs_root_item_v2 = Struct(
    "generation_v2" / Int64ul,
    "uuid" / Bytes(BTRFS_UUID_SIZE),
    "parent_uuid" / Bytes(BTRFS_UUID_SIZE),
    "received_uuid" / Bytes(BTRFS_UUID_SIZE),
    "ctransid" / Int64ul,
    "otransid" / Int64ul,
    "stransid" / Int64ul,
    "rtransid" / Int64ul,
    "ctime" / btrfs_timespec,
    "otime" / btrfs_timespec,
    "stime" / btrfs_timespec,
    "rtime" / btrfs_timespec,
    "reserved" / Array(8, Int64ul),
)

#: Head of ROOT_REF / ROOT_BACKREF items; ``name_len`` bytes of name follow.
btrfs_root_ref = Struct(
    "dirid" / Int64ul,
    "sequence" / Int64ul,
    "name_len" / Int16ul,
)

# --- fs trees -------------------------------------------------------------------------

#: Head of INODE_REF items (several may be packed in one item); the name follows.
btrfs_inode_ref = Struct(
    "index" / Int64ul,
    "name_len" / Int16ul,
)

#: Head of INODE_EXTREF items; the name follows.
btrfs_inode_extref = Struct(
    "parent_objectid" / Int64ul,
    "index" / Int64ul,
    "name_len" / Int16ul,
)

#: Head of DIR_ITEM / DIR_INDEX / XATTR_ITEM entries; name then data follow.
btrfs_dir_item = Struct(
    "location" / btrfs_disk_key,
    "transid" / Int64ul,
    "data_len" / Int16ul,
    "name_len" / Int16ul,
    "type" / Int8ul,
)

#: DIR_LOG_INDEX / DIR_LOG_ITEM of a log tree: the key's offset and ``end`` bound a range of
#: directory indexes (name hashes) the log holds every entry of.
btrfs_dir_log_item = Struct(
    "end" / Int64ul,
)

#: Head of every EXTENT_DATA item; inline data follows it directly.
btrfs_file_extent_item_head = Struct(
    "generation" / Int64ul,
    "ram_bytes" / Int64ul,
    "compression" / Int8ul,
    "encryption" / Int8ul,
    "other_encoding" / Int16ul,
    "type" / Int8ul,
)

#: The tail of a regular or prealloc EXTENT_DATA item.
btrfs_file_extent_item_reg = Struct(
    "disk_bytenr" / Int64ul,
    "disk_num_bytes" / Int64ul,
    "offset" / Int64ul,
    "num_bytes" / Int64ul,
)

btrfs_file_extent_item = Struct(
    "head" / btrfs_file_extent_item_head,
    "reg" / btrfs_file_extent_item_reg,
)

# --- extent tree --------------------------------------------------------------------

btrfs_extent_item = Struct(
    "refs" / Int64ul,
    "generation" / Int64ul,
    "flags" / Int64ul,
)

#: Follows ``btrfs_extent_item`` of a non-skinny tree-block EXTENT_ITEM.
btrfs_tree_block_info = Struct(
    "key" / btrfs_disk_key,
    "level" / Int8ul,
)

#: An inline backref: its ``type`` byte, then ``offset`` (the root of a
#: TREE_BLOCK_REF or EXTENT_OWNER_REF, the parent of a SHARED_BLOCK_REF or
#: SHARED_DATA_REF, which a ``btrfs_shared_data_ref`` follows). An inline
#: EXTENT_DATA_REF has its ``btrfs_extent_data_ref`` where ``offset`` would be.
btrfs_extent_inline_ref = Struct(
    "type" / Int8ul,
    "offset" / Int64ul,
)

btrfs_extent_data_ref = Struct(
    "root" / Int64ul,
    "objectid" / Int64ul,
    "offset" / Int64ul,
    "count" / Int32ul,
)

btrfs_shared_data_ref = Struct(
    "count" / Int32ul,
)

# --- btrfs-image (metadump) container (btrfs-progs image/metadump.h) -------------------

#: Start of every 1024-byte index block of a dump.
meta_cluster_header = Struct(
    "magic" / Int64ul,  # selects the dump version, see constants.METADUMP_VERSIONS
    "bytenr" / Int64ul,  # file offset of this index block itself
    "nritems" / Int32ul,  # number of meta_cluster_item that follow
    "compress" / Int8ul,  # a MetadumpCompression, for the whole cluster
)

#: One index entry; its payload of ``size`` stored bytes follows the index block.
meta_cluster_item = Struct(
    "bytenr" / Int64ul,  # logical address (65536 for the superblock entry)
    "size" / Int32ul,  # bytes stored in the file (compressed size if zlib)
)

#: The whole index block; bytes after ``nritems`` items are undefined (stale
#: entries of an earlier cluster are common), never read them.
meta_cluster = Padded(
    METADUMP_BLOCK_SIZE,
    Struct(
        "header" / meta_cluster_header,
        "items" / Array(this.header.nritems, meta_cluster_item),
    ),
)
