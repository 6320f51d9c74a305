"""Where each tree starts: the chunk tree and the root tree from the superblock, every other tree
from its ROOT_ITEM in the root tree (the kernel's ``btrfs_read_tree_root``).

The root tree and the chunk tree start at the root the superblock names,
unless its root block fails the checks every tree block gets (in every
copy): then the backup slots of older commits stand in, newest first, as the
kernel's ``usebackuproot`` tries them for the root tree (``init_tree_roots``;
the kernel has no such fallback for the chunk tree, whose older root maps
the chunks of its commit). The choice is made once per reader
(``TreeReader.roots``) so that every tree read through it starts from the
same root; using a backup is a warning, the result being that older
transaction's.
"""

from __future__ import annotations

from ..errors import CorruptionError
from ..format.constants import ItemType, ObjectId
from ..format.items import parse_item
from ..volumes.superblock import SuperRoot, backup_roots, super_root
from .reader import TreeReader
from .walk import TreeRoot, last_item, read_root

#: What a backup root leaves out, per tree.
_NOT_SHOWN = {ObjectId.ROOT_TREE: "what later transactions wrote is not shown",
              ObjectId.CHUNK_TREE: "chunks allocated since are not mapped"}


def chunk_root(reader: TreeReader) -> TreeRoot:
    """Where the chunk tree starts (``root_in_use``)."""
    return _tree_root(ObjectId.CHUNK_TREE, root_in_use(reader, ObjectId.CHUNK_TREE))


def root_tree(reader: TreeReader) -> TreeRoot:
    """Where the root tree starts (``root_in_use``)."""
    return _tree_root(ObjectId.ROOT_TREE, root_in_use(reader, ObjectId.ROOT_TREE))


def root_in_use(reader: TreeReader, tree_id: ObjectId) -> SuperRoot:
    """The root the root tree or the chunk tree (``tree_id``) is read from, chosen on first use: the
    superblock's own when its root block passes the checks, else the newest backup slot whose root block
    does, with a warning naming what failed; CorruptionError naming every root tried when none does."""
    chosen = reader.roots.get(tree_id)
    if chosen is None:
        chosen = reader.roots[tree_id] = _choose(reader, tree_id)
    return chosen


def _tree_root(tree_id: ObjectId, root: SuperRoot) -> TreeRoot:
    return TreeRoot(tree_id, root.bytenr, root.level, root.generation)


def _problem(reader: TreeReader, tree_id: ObjectId, root: SuperRoot) -> str | None:
    """Why the root block ``root`` names cannot start tree ``tree_id``, or None."""
    try:
        read_root(reader, _tree_root(tree_id, root))
    except CorruptionError as exc:
        return str(exc)
    return None


def _choose(reader: TreeReader, tree_id: ObjectId) -> SuperRoot:
    """The first usable root of the superblock's own and its backup slots, newest first (``root_in_use``)."""
    sb = reader.volume.superblock
    own = super_root(sb, tree_id)
    failure = _problem(reader, tree_id, own)
    if failure is None:
        return own
    unusable: list[str] = []
    for backup in backup_roots(sb, tree_id):
        problem = _problem(reader, tree_id, backup)
        if problem is not None:
            unusable.append(f"slot {backup.slot} of generation {backup.generation} ({problem})")
            continue
        newer = f", as are the newer backup roots: {', '.join(unusable)}" if unusable else ""
        reader.warnings.add(
            f"tree {ObjectId.describe(tree_id)}: the superblock's root is unusable ({failure}){newer}; using backup "
            f"root slot {backup.slot} instead: tree block {backup.bytenr} of generation {backup.generation}, older "
            f"than the superblock's {own.generation}, so {_NOT_SHOWN[tree_id]}",
            "superblock backup roots", tree=tree_id, bytenr=own.bytenr)
        return backup
    if unusable:
        raise CorruptionError(f"{failure}; backup roots tried, none usable: {', '.join(unusable)}")
    raise CorruptionError(f"{failure}; no backup root of a generation older than {own.generation} to try")


def find_root(reader: TreeReader, tree_id: int) -> TreeRoot:
    """Where tree ``tree_id`` starts, from its ROOT_ITEM in the root tree."""
    found = last_item(reader, root_tree(reader), tree_id, ItemType.ROOT_ITEM)
    if found is None:
        raise CorruptionError(f"no ROOT_ITEM for tree {ObjectId.describe(tree_id)} in the root tree")
    key, data = found
    root = parse_item(key, data, f"ROOT_ITEM of tree {tree_id}")
    return TreeRoot(tree_id, root.bytenr, root.level, root.generation)
