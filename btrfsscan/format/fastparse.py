"""Fast unpackers derived from the construct definitions in ``structs``.

construct costs tens of microseconds per item; a precompiled ``struct.Struct``
costs well under one and a numpy structured view over a whole leaf costs less
still. Both are built here by walking a construct ``Struct`` so the layout is
still written once, in ``structs``. Nested structs are flattened with dotted
names (``key.objectid``); arrays become one field per element.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

import construct
import numpy as np

from . import structs

# struct-module format code -> numpy dtype code (little-endian).
_NP_CODES = {"B": "u1", "b": "i1", "H": "<u2", "h": "<i2", "I": "<u4", "i": "<i4", "L": "<u4", "l": "<i4", "Q": "<u8", "q": "<i8"}


def _flatten(con: construct.Construct, prefix: str) -> list[tuple[str, str]]:
    """(dotted name, struct format code) for every primitive inside ``con``."""
    if isinstance(con, construct.Renamed):
        return _flatten(con.subcon, prefix)
    if isinstance(con, construct.Struct):
        fields: list[tuple[str, str]] = []
        for sub in con.subcons:
            fields += _flatten(sub, f"{prefix}{sub.name}." if prefix or sub.name else "")
        return [(name.rstrip("."), code) for name, code in fields]
    if isinstance(con, construct.FormatField):
        return [(prefix, con.fmtstr[1:])]
    if isinstance(con, construct.Bytes):
        return [(prefix, f"{con.length}s")]
    if isinstance(con, construct.Array):
        out: list[tuple[str, str]] = []
        for i in range(con.count):
            out += _flatten(con.subcon, f"{prefix.rstrip('.')}[{i}].")
        return out
    raise TypeError(f"fastparse cannot derive a layout from {type(con).__name__}")


@dataclass(frozen=True)
class StructLayout:
    """A construct struct compiled to ``struct`` and numpy forms."""

    name: str
    fields: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, name: str, con: construct.Struct) -> "StructLayout":
        layout = cls(name, tuple(_flatten(con, "")))
        if layout.struct.size != con.sizeof():  # pragma: no cover - guards the derivation itself
            raise AssertionError(f"{name}: derived size {layout.struct.size} != {con.sizeof()}")
        return layout

    @cached_property
    def struct(self) -> struct.Struct:
        return struct.Struct("<" + "".join(code for _, code in self.fields))

    @property
    def size(self) -> int:
        return self.struct.size

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    def index(self, name: str) -> int:
        """Position of field ``name`` in the tuples ``unpack_from`` returns."""
        return self.names.index(name)

    def unpack_from(self, buf, offset: int = 0) -> tuple:
        return self.struct.unpack_from(buf, offset)

    def prefix(self, name: str) -> "StructLayout":
        """The leading fields up to and including ``name``: read a type byte before what it selects."""
        return StructLayout(f"{self.name}.{name}", self.fields[:self.index(name) + 1])

    def as_dict(self, buf, offset: int = 0) -> dict:
        return dict(zip(self.names, self.struct.unpack_from(buf, offset)))

    @cached_property
    def dtype(self) -> np.dtype:
        """Packed numpy dtype with the dotted names, for views over whole blocks."""
        np_fields = []
        for name, code in self.fields:
            np_fields.append((name, f"S{code[:-1]}" if code.endswith("s") else _NP_CODES[code]))
        return np.dtype(np_fields)


HEADER = StructLayout.of("btrfs_header", structs.btrfs_header)
ITEM = StructLayout.of("btrfs_item", structs.btrfs_item)
KEY_PTR = StructLayout.of("btrfs_key_ptr", structs.btrfs_key_ptr)
DISK_KEY = StructLayout.of("btrfs_disk_key", structs.btrfs_disk_key)
SUPER_BLOCK = StructLayout.of("btrfs_super_block", structs.btrfs_super_block)
DEV_ITEM = StructLayout.of("btrfs_dev_item", structs.btrfs_dev_item)
CHUNK = StructLayout.of("btrfs_chunk", structs.btrfs_chunk)
STRIPE = StructLayout.of("btrfs_stripe", structs.btrfs_stripe)
INODE_ITEM = StructLayout.of("btrfs_inode_item", structs.btrfs_inode_item)
ROOT_ITEM_V1 = StructLayout.of("btrfs_root_item_v1", structs.btrfs_root_item_v1)
ROOT_ITEM_V2 = StructLayout.of("btrfs_root_item_v2", structs.btrfs_root_item_v2)
ROOT_REF = StructLayout.of("btrfs_root_ref", structs.btrfs_root_ref)
INODE_REF = StructLayout.of("btrfs_inode_ref", structs.btrfs_inode_ref)
INODE_EXTREF = StructLayout.of("btrfs_inode_extref", structs.btrfs_inode_extref)
DIR_ITEM = StructLayout.of("btrfs_dir_item", structs.btrfs_dir_item)
DIR_LOG_ITEM = StructLayout.of("btrfs_dir_log_item", structs.btrfs_dir_log_item)
FILE_EXTENT_HEAD = StructLayout.of("btrfs_file_extent_item_head", structs.btrfs_file_extent_item_head)
FILE_EXTENT = StructLayout.of("btrfs_file_extent_item", structs.btrfs_file_extent_item)
EXTENT_ITEM = StructLayout.of("btrfs_extent_item", structs.btrfs_extent_item)
TREE_BLOCK_INFO = StructLayout.of("btrfs_tree_block_info", structs.btrfs_tree_block_info)
EXTENT_DATA_REF = StructLayout.of("btrfs_extent_data_ref", structs.btrfs_extent_data_ref)
SHARED_DATA_REF = StructLayout.of("btrfs_shared_data_ref", structs.btrfs_shared_data_ref)
EXTENT_INLINE_REF = StructLayout.of("btrfs_extent_inline_ref", structs.btrfs_extent_inline_ref)
BLOCK_GROUP_ITEM = StructLayout.of("btrfs_block_group_item", structs.btrfs_block_group_item)
METADUMP_HEADER = StructLayout.of("meta_cluster_header", structs.meta_cluster_header)
METADUMP_ITEM = StructLayout.of("meta_cluster_item", structs.meta_cluster_item)
