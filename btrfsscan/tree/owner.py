"""Which tree may own a block: the kernel's owner checks, and only those.

A snapshot shares its source's blocks, so inside a subvolume tree a block's
header ``owner`` may name any subvolume tree (the one that wrote it), and the
kernel (``btrfs_check_eb_owner``) only asks that it be one. Every other tree
owns each of its blocks. A tree's root block is its own
(``read_tree_root_path``: a snapshot's root is COWed when it is taken). Log
and relocation trees keep their owner in a key offset the readers do not
pass, so the kernel skips them, and so does btrfsscan.
"""

from __future__ import annotations

import numpy as np

from ..format.constants import ObjectId, is_fs_tree

_UNCHECKED = (int(ObjectId.TREE_LOG), int(ObjectId.TREE_RELOC))
_LAST_FREE = np.uint64(int(ObjectId.LAST_FREE))


def owner_problem(tree_id: int, owner: int, *, is_root: bool = False) -> str | None:
    """Why a block owned by ``owner`` cannot be a block (the root block, with ``is_root``) of tree ``tree_id``."""
    if tree_id in _UNCHECKED:
        return None
    if is_root or not is_fs_tree(tree_id):
        if owner != tree_id:
            what = "root block" if is_root else "block"
            return f"{what} owner {ObjectId.describe(owner)}, expected tree {ObjectId.describe(tree_id)}"
        return None
    if not is_fs_tree(owner):
        return f"block owner {ObjectId.describe(owner)} is not a subvolume tree, in subvolume tree {tree_id}"
    return None


def owners_allowed(tree_id: int, owners: np.ndarray) -> np.ndarray:
    """Per block owner: whether a (non-root) block of tree ``tree_id`` may have it, all at once
    (``owner_problem`` is None)."""
    if tree_id in _UNCHECKED:
        return np.ones(len(owners), bool)
    if not is_fs_tree(tree_id):
        return owners == np.uint64(tree_id)
    return (owners == int(ObjectId.FS_TREE)) | ((owners >= int(ObjectId.FIRST_FREE)) & (owners <= _LAST_FREE))
