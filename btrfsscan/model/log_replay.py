"""Log replay in memory: the fsync'd changes the kernel applies at mount.

An fsync writes the changed items of an inode (and what its names need) to
a per-subvolume log tree and points the superblock's ``log_root`` at the
tree of log roots (ROOT_ITEMs keyed (TREE_LOG, ROOT_ITEM, subvolume id)),
without committing a transaction. A copy of a device taken before the next
commit has only the log; the kernel replays it when mounting. This module
does the same, following fs/btrfs/tree-log.c, on an in-memory copy of the
objects (an inode or directory: all items of one objectid) the log touches:

1. per logged INODE_ITEM (an inode logged with 0 links is skipped whole):
   its committed xattrs are dropped (the log holds all of them); for a
   directory, committed entries whose index lies in a DIR_LOG_INDEX range
   of the log but which the log does not hold are unlinked; the inode item
   is copied (a committed inode keeps its nbytes and, for a directory, its
   size; an item logged with generation 0 only says "exists" and at most
   sets a file's size); a regular file is cut at its rounded-up i_size;
2. logged DIR_INDEX entries are added to their directory, conflicting
   entries unlinked, unless the log has the inode's ref for that name;
3. xattrs are copied; INODE_REF/INODE_EXTREF names are linked (committed
   names of the same parent missing from the log unlinked, conflicting
   entries dropped); EXTENT_DATA items replace the range they cover
   (committed extents overlapping it dropped or split);
4. every inode whose names changed gets its link count from its refs; one
   left with none is deleted (a directory with its entries, recursively).

The result per subvolume is the final items of every object that changed
(``ReplayedItems``): readers use them in place of the committed items of
those objectids. DIR_ITEM and DIR_LOG_ITEM items of old kernels' logs are
ignored, as the kernel ignores them. Anything else the log holds is a
warning and that item is not replayed.

The extent tree and the checksum tree change with the file extents, as in
``replay_one_extent`` and ``btrfs_drop_extents``: every file extent item
added references its extent once more (``btrfs_inc_extent_ref``, or a new
extent item with one reference when the extent tree has none), every item
dropped once less, a split item once more; ``ReplayedItems.backref_changes``
holds those changes per EXTENT_DATA_REF key: ``Filesystem.data_extent_refs``
adds their sums to the committed counts, FIEMAP's SHARED rule
(``fiemap_shared``) reads the backrefs they leave
(``LogReplay.data_backrefs``). The log's checksums of the range each
replayed extent item references replace the committed ones there (``btrfs_del_csums`` and
``btrfs_csum_file_blocks``): ``ReplayedItems.csums``. Not modelled: the
kernel copies a leaf it changes that a snapshot still shares, which adds a
reference to every extent the leaf's items point at; those extents are in
``ReplayedItems.shared_extents`` and their counts come with a warning. The
checksums of an extent the replay frees stay (no file references them).
"""

from __future__ import annotations

import bisect
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..errors import CorruptionError, Warnings
from ..format.checksum import name_hash
from ..format.constants import IncompatFlag, ItemType, ObjectId
from ..format.items import Backref, DirItem, DirLogItem, InodeRef, Key, RootItem, parse_item
from ..format.plausibility import Limits, finding, item_problem
from ..tree.reader import TreeReader
from ..tree.walk import TreeRoot, iter_items, iter_leaves, iter_located_items
from . import log_items as li
from .subvolumes import Subvolume, SubvolumeSet

_MAX = 2**64 - 1
_INODE, _REF, _EXTREF = int(ItemType.INODE_ITEM), int(ItemType.INODE_REF), int(ItemType.INODE_EXTREF)
_XATTR, _DIR_ITEM, _DIR_INDEX = int(ItemType.XATTR_ITEM), int(ItemType.DIR_ITEM), int(ItemType.DIR_INDEX)
_DIR_LOG_ITEM, _DIR_LOG_INDEX = int(ItemType.DIR_LOG_ITEM), int(ItemType.DIR_LOG_INDEX)
_EXTENT_DATA, _EXTENT_CSUM = int(ItemType.EXTENT_DATA), int(ItemType.EXTENT_CSUM)
_ROOT_ITEM = int(ItemType.ROOT_ITEM)
_CSUM_OBJECTID = int(ObjectId.EXTENT_CSUM)
_HANDLED = {_INODE, _REF, _EXTREF, _XATTR, _DIR_ITEM, _DIR_INDEX, _DIR_LOG_ITEM, _DIR_LOG_INDEX, _EXTENT_DATA}


class _Unsupported(Exception):
    """A log the replay cannot apply faithfully: the subvolume keeps its committed view."""


@dataclass
class ReplayedItems:
    """The items of one subvolume's objects after replay: they replace the committed items of those objectids.

    ``objects[oid]`` is every item of objectid ``oid`` in key order (empty:
    the inode was deleted). ``from_log`` holds the inodes whose INODE_ITEM
    came from the log.
    """

    objects: dict[int, list[tuple[Key, bytes]]]
    from_log: set[int]
    #: disk_bytenr -> (inode, file offset - extent offset) -> items added minus items dropped: the change of
    #: the extent's EXTENT_DATA_REF of that key (root: this subvolume) and of its ``refs``.
    backref_changes: dict[int, dict[tuple[int, int], int]] = field(default_factory=dict)
    #: (logical, checksums) the replay writes to the checksum tree, in replay order (a later one wins).
    csums: list[tuple[int, bytes]] = field(default_factory=list)
    #: Extents referenced from committed leaves a snapshot may share that the replay changes.
    shared_extents: set[int] = field(default_factory=set)

    def covers(self, objectid: int) -> bool:
        return objectid in self.objects

    def extent_refs(self, bytenr: int) -> int:
        """The change of data extent ``bytenr``'s ``refs``: items referencing it added minus dropped."""
        return sum(self.backref_changes.get(bytenr, {}).values())

    def items(self, min_key: Key, max_key: Key) -> Iterator[tuple[Key, bytes]]:
        """Replayed items with min_key <= key <= max_key of the one objectid of ``min_key``."""
        rows = self.objects.get(min_key[0], [])
        for key, data in rows[bisect.bisect_left(rows, (min_key, b"")):]:
            if key > max_key:
                return
            yield key, data


@dataclass
class LogReplay:
    """What replaying (or not) the log did, for the notes the commands print."""

    present: bool
    replayed: bool
    subvolumes: dict[int, ReplayedItems] = field(default_factory=dict)
    #: Why the log was not replayed (``replayed`` False), for the note.
    left_out: str = "--no-log-replay, this is the last committed transaction"

    @property
    def inodes(self) -> int:
        return sum(len(r.from_log) for r in self.subvolumes.values())

    def note(self) -> str | None:
        """One line for the user: how many inodes came from the log, or that it was left out."""
        if not self.present:
            return None
        if not self.replayed:
            return f"the log tree (changes fsync'd after the last commit) was not replayed ({self.left_out})"
        ids = ", ".join(str(i) for i in sorted(self.subvolumes)) or "none"
        return (f"log tree replayed as the kernel does at mount: {self.inodes} inode(s) from the log "
                f"(subvolume(s) {ids})")

    def adjust_refs(self, committed: dict[int, int], bytenrs: Iterable[int], warnings: Warnings,
                    where: str) -> dict[int, int]:
        """The extent reference counts after the replay, from the extent tree's (``committed``) for ``bytenrs``:
        an extent left with none has no extent item and is left out, as in ``committed``."""
        out = dict(committed)
        wanted = sorted({int(b) for b in bytenrs if b})
        uncertain = [b for b in wanted if any(b in r.shared_extents for r in self.subvolumes.values())]
        if uncertain:
            warnings.add(f"reference counts of {len(uncertain)} extent(s) (the first at {uncertain[0]}) may differ "
                         "from the kernel's after log replay: the log changes leaves a snapshot shares, which the "
                         "kernel copies (not modelled)", where, tree=int(ObjectId.EXTENT_TREE))
        for bytenr in wanted:
            change = sum(r.extent_refs(bytenr) for r in self.subvolumes.values())
            if not change:
                continue
            refs = out.get(bytenr, 0) + change
            if refs > 0:
                out[bytenr] = refs
            else:
                out.pop(bytenr, None)
        return out

    def data_backrefs(self, bytenr: int, committed: tuple[Backref, ...]) -> tuple[Backref, ...]:
        """Data extent ``bytenr``'s backrefs after the replay: the ``committed`` ones (none where the extent
        tree has no item for it: the replay creates it) with each subvolume's EXTENT_DATA_REF changes."""
        counts: dict[tuple[int, int, int], int] = {}
        kept: list[Backref] = []
        for ref in committed:
            if ref.type == ItemType.EXTENT_DATA_REF:
                key = (ref.root, ref.objectid, ref.offset)
                counts[key] = counts.get(key, 0) + ref.count
            else:
                kept.append(ref)
        for subvol, replayed in sorted(self.subvolumes.items()):
            for (ino, offset), change in sorted(replayed.backref_changes.get(bytenr, {}).items()):
                counts[(subvol, ino, offset)] = counts.get((subvol, ino, offset), 0) + change
        data = [Backref(ItemType.EXTENT_DATA_REF, root=root, objectid=ino, offset=offset, count=n)
                for (root, ino, offset), n in counts.items() if n > 0]
        return tuple(data + kept)

    def csums(self) -> list[tuple[int, bytes]]:
        """Every (logical, checksums) the replays write, subvolume by subvolume in id order."""
        return [piece for subvol in sorted(self.subvolumes) for piece in self.subvolumes[subvol].csums]


def _log_reader(reader: TreeReader, warnings: Warnings) -> TreeReader:
    """A reader accepting blocks of the running transaction (the log's, one past the superblock's)."""
    log = TreeReader(reader.volume, warnings)
    log.checks = {**reader.checks, "super_generation": reader.checks["super_generation"] + 1}
    return log


def _copy_warnings(source: Warnings, dest: Warnings, prefix: str) -> None:
    for w in source:
        dest.add(f"{prefix}: {w.what}", w.where, tree=w.tree, bytenr=w.bytenr)


def _plausible_items(reader: TreeReader, root: TreeRoot, limits: Limits, warnings: Warnings,
                     tree: str) -> list[tuple[Key, bytes]]:
    """Every item of a log tree but those breaking a plausibility rule (``plausibility.item_problem``, each item
    against the one before it in its leaf), which are skipped with a damage finding as the bulk readers do."""
    out = []
    previous: tuple[int, tuple[Key, int]] | None = None
    for leaf, slot, key, data in iter_located_items(reader, root):
        before = previous[1] if previous is not None and previous[0] == leaf else None
        previous = (leaf, (key, len(data)))
        what = item_problem(key, data, limits, before)
        if what is None:
            out.append((key, data))
        else:
            warnings.add(f"{tree}: {finding(key, what, slot)}", f"log tree leaf {leaf}", tree=int(ObjectId.TREE_LOG),
                         bytenr=leaf)
    return out


def read_log_trees(reader: TreeReader, warnings: Warnings) -> dict[int, list[tuple[Key, bytes]]]:
    """Every item of every subvolume's log tree, by subvolume id; a log tree with a damaged block is left
    out with a warning (its subvolume then shows the last commit)."""
    sb = reader.volume.superblock
    generation = sb.generation + 1
    limits = Limits.of(sb)
    problems = Warnings()
    log = _log_reader(reader, problems)
    top = TreeRoot(ObjectId.TREE_LOG, sb.log_root, sb.log_root_level, generation)
    try:
        roots = [(key, data) for key, data in iter_items(log, top)
                 if key[0] == ObjectId.TREE_LOG and key[1] == _ROOT_ITEM]
    except CorruptionError as exc:
        warnings.add(f"log tree not replayed, the last committed transaction is shown: {exc}",
                     f"log root tree at {sb.log_root}", tree=int(ObjectId.TREE_LOG), bytenr=sb.log_root)
        return {}
    if problems:
        _copy_warnings(problems, warnings, "log root tree partly unreadable, some log trees not replayed")
    out = {}
    for key, data in roots:
        subvol = key[2]
        problems = Warnings()
        log = _log_reader(reader, problems)
        try:
            root: RootItem = parse_item(key, data, f"log root of subvolume {subvol}")
            items = _plausible_items(log, TreeRoot(ObjectId.TREE_LOG, root.bytenr, root.level, root.generation),
                                     limits, warnings, f"log tree of subvolume {subvol}")
        except CorruptionError as exc:
            warnings.add(f"log tree of subvolume {subvol} not replayed, its last committed transaction is shown: "
                         f"{exc}", f"log root tree at {sb.log_root}", tree=subvol)
            continue
        if problems:
            _copy_warnings(problems, warnings, f"log tree of subvolume {subvol} not replayed, its last committed "
                                               "transaction is shown")
            continue
        out[subvol] = items
    return out


class _Replay:
    """Replays one subvolume's log onto in-memory copies of the objects it touches."""

    def __init__(self, reader: TreeReader, sub: Subvolume, log: list[tuple[Key, bytes]], *, sectorsize: int,
                 csum_size: int, no_holes: bool, transid: int) -> None:
        self.reader = reader
        self.sub = sub
        self.log = log
        self.log_keys = {key: data for key, data in log}
        self.log_csums = sorted((key[2], data) for key, data in log
                                if key[0] == _CSUM_OBJECTID and key[1] == _EXTENT_CSUM)
        self.sectorsize = sectorsize
        self.csum_size = csum_size
        self.no_holes = no_holes
        self.transid = transid
        self.objs: dict[int, dict[Key, bytes]] = {}
        self.committed: dict[int, dict[Key, bytes]] = {}
        self.shared_extents: dict[int, set[int]] = {}
        self.csums: list[tuple[int, bytes]] = []
        self.dirty: set[int] = set()
        self.fixup: set[int] = set()
        self.from_log: set[int] = set()
        self.ignored: set[int] = set()
        self.where = f"log tree of subvolume {sub.id}"

    # --- objects -------------------------------------------------------------------

    def obj(self, oid: int) -> dict[Key, bytes]:
        """All items of objectid ``oid``: the committed ones on first use."""
        found = self.objs.get(oid)
        if found is None:
            found = self.committed_items(oid)
            self.committed[oid] = dict(found)
            self.objs[oid] = found
        return found

    def committed_items(self, oid: int) -> dict[Key, bytes]:
        """The committed items of ``oid``; the extents referenced by the leaves holding them (or where they
        would go) go to ``shared_extents[oid]`` when a snapshot may share the leaf (btrfs_block_can_be_shared:
        not the root, generation <= last_snapshot)."""
        low, high = (oid, 0, 0), (oid, 255, _MAX)
        root = self.sub.root
        out: dict[Key, bytes] = {}
        shared_extents = self.shared_extents.setdefault(oid, set())
        for leaf in iter_leaves(self.reader, root, low, high):
            keys = leaf.keys()
            shared = leaf.bytenr != root.bytenr and leaf.generation <= self.sub.root_item.last_snapshot
            for slot, key in enumerate(keys):
                if low <= key <= high:
                    out[key] = leaf.item_data(slot)
                if shared and key[1] == _EXTENT_DATA and (bytenr := li.data_extent(leaf.item_data(slot))):
                    shared_extents.add(bytenr)
        return out

    def put(self, key: Key, data: bytes | None) -> None:
        items = self.obj(key[0])
        if data is None:
            items.pop(key, None)
        else:
            items[key] = data
        self.dirty.add(key[0])

    def inode(self, oid: int) -> bytes | None:
        return self.obj(oid).get((oid, _INODE, 0))

    def of_type(self, oid: int, item_type: int) -> list[tuple[Key, bytes]]:
        return sorted((k, v) for k, v in self.obj(oid).items() if k[1] == item_type)

    def log_of_type(self, oid: int, item_type: int) -> list[tuple[Key, bytes]]:
        lo = bisect.bisect_left(self.log, ((oid, item_type, 0), b""))
        out = []
        for key, data in self.log[lo:]:
            if key[0] != oid or key[1] != item_type:
                break
            out.append((key, data))
        return out

    # --- names ---------------------------------------------------------------------

    def names(self, ino: int) -> list[InodeRef]:
        """Every (parent, index, name) link recorded in the inode's refs."""
        out = []
        for item_type in (_REF, _EXTREF):
            for key, data in self.of_type(ino, item_type):
                out.extend(li.entries(key, data, self.where))
        return out

    def entry_by_name(self, dir_ino: int, name: bytes) -> DirItem | None:
        key = (dir_ino, _DIR_ITEM, name_hash(name))
        data = self.obj(dir_ino).get(key)
        for entry in li.entries(key, data, self.where) if data else ():
            if entry.name == name:
                return entry
        return None

    def entry_by_index(self, dir_ino: int, index: int) -> DirItem | None:
        key = (dir_ino, _DIR_INDEX, index)
        data = self.obj(dir_ino).get(key)
        entries = li.entries(key, data, self.where) if data else []
        return entries[0] if entries else None

    def unlink(self, dir_ino: int, ino: int, name: bytes) -> None:
        """Remove name ``name`` of ``ino`` from ``dir_ino``: its dir entries and the inode's ref."""
        for key, data in self.of_type(dir_ino, _DIR_INDEX):
            if any(e.name == name and e.location[0] == ino for e in li.entries(key, data, self.where)):
                self.put(key, None)
        key = (dir_ino, _DIR_ITEM, name_hash(name))
        data = self.obj(dir_ino).get(key)
        if data:
            kept = [e for e in li.entries(key, data, self.where) if e.name != name]
            self.put(key, li.pack_dir_entries(kept) if kept else None)
        key = (ino, _REF, dir_ino)
        data = self.obj(ino).get(key)
        if data:
            kept = [r for r in li.entries(key, data, self.where) if r.name != name]
            self.put(key, li.pack_inode_refs(kept) if kept else None)
        for key, data in self.of_type(ino, _EXTREF):
            refs = li.entries(key, data, self.where)
            kept = [r for r in refs if not (r.parent == dir_ino and r.name == name)]
            if len(kept) != len(refs):
                self.put(key, li.pack_inode_extrefs(kept) if kept else None)
        self.dirty.add(dir_ino)
        self.fixup.add(ino)

    def drop_entry(self, dir_ino: int, entry: DirItem) -> None:
        """Unlink whatever a conflicting directory entry names."""
        if entry.location[1] == _ROOT_ITEM:
            raise _Unsupported(f"directory {dir_ino} entry {entry.name!r} links subvolume {entry.location[0]}")
        self.unlink(dir_ino, entry.location[0], entry.name)

    def link(self, dir_ino: int, ino: int, name: bytes, index: int, ftype: int, *, backref: bool) -> None:
        """Add entry ``name`` -> ``ino`` at ``index`` to ``dir_ino`` (and the inode's ref with ``backref``)."""
        other = self.entry_by_name(dir_ino, name)
        if other is not None and other.location[0] != ino:
            self.drop_entry(dir_ino, other)
        entry = DirItem((ino, _INODE, 0), self.transid, ftype, name, 0)
        self.put((dir_ino, _DIR_INDEX, index), li.pack_dir_entries([entry]))
        key = (dir_ino, _DIR_ITEM, name_hash(name))
        data = self.obj(dir_ino).get(key)
        kept = [e for e in li.entries(key, data, self.where) if e.name != name] if data else []
        self.put(key, li.pack_dir_entries(kept + [entry]))
        if backref:
            key = (ino, _REF, dir_ino)
            data = self.obj(ino).get(key)
            refs = [r for r in li.entries(key, data, self.where) if r.name != name] if data else []
            self.put(key, li.pack_inode_refs(refs + [InodeRef(dir_ino, index, name)]))
        self.fixup.add(ino)

    # --- stage 1: inodes ---------------------------------------------------------------

    def replay_inode(self, key: Key, data: bytes) -> None:
        ino = key[0]
        logged = li.inode(data, self.where)
        if logged.nlink == 0:  # an O_TMPFILE never linked: the kernel skips it
            self.ignored.add(ino)
            return
        for xkey, _ in self.of_type(ino, _XATTR):
            self.put(xkey, None)
        mode = logged.mode
        if stat.S_ISDIR(mode):
            self.dir_deletes(ino)
        committed = self.inode(ino)
        old = li.inode(committed) if committed is not None else None
        if old is not None and logged.generation == 0:
            if stat.S_ISREG(mode) and stat.S_ISREG(old.mode) and logged.size:
                self.put(key, li.with_inode_fields(committed, size=logged.size))
        elif old is not None:
            keep = {"nbytes": old.nbytes}
            if stat.S_ISDIR(mode) and stat.S_ISDIR(old.mode):
                keep["size"] = old.size
            self.put(key, li.with_inode_fields(data, **keep))
        else:
            self.put(key, li.with_inode_fields(data, nbytes=0, **({"size": 0} if stat.S_ISDIR(mode) else {})))
        if stat.S_ISREG(mode):
            size = li.inode(self.inode(ino)).size
            self.drop_extents(ino, -(-size // self.sectorsize) * self.sectorsize, _MAX)
        self.from_log.add(ino)
        self.fixup.add(ino)

    def dir_deletes(self, dir_ino: int) -> None:
        """Unlink committed entries in the log's DIR_LOG_INDEX ranges that the log does not hold."""
        ranges = []
        for key, data in self.log_of_type(dir_ino, _DIR_LOG_INDEX):
            item: DirLogItem = parse_item(key, data, self.where)
            ranges.append((item.start, item.end))
        for start, end in ranges:
            for key, data in self.of_type(dir_ino, _DIR_INDEX):
                if not start <= key[2] <= end:
                    continue
                for entry in li.entries(key, data, self.where):
                    logged = self.log_keys.get(key)
                    if logged and any(e.name == entry.name for e in li.dir_entries(logged, self.where)):
                        continue
                    self.drop_entry(dir_ino, entry)

    # --- stage 2: directory entries --------------------------------------------------

    def replay_dir_index(self, key: Key, data: bytes) -> None:
        dir_ino, index = key[0], key[2]
        if self.inode(dir_ino) is None:
            return  # the directory is neither committed nor logged
        for entry in li.entries(key, data, self.where):
            target = entry.location[0]
            if entry.location[1] == _ROOT_ITEM:
                raise _Unsupported(f"logged entry {entry.name!r} of directory {dir_ino} links subvolume {target}")
            exists = self.inode(target) is not None
            by_name, by_index = self.entry_by_name(dir_ino, entry.name), self.entry_by_index(dir_ino, index)
            name_ok = by_name is not None and by_name.location == entry.location
            index_ok = by_index is not None and by_index.location == entry.location and by_index.name == entry.name
            if exists:
                if by_name is not None and not name_ok:
                    self.drop_entry(dir_ino, by_name)
                if by_index is not None and not index_ok:
                    self.drop_entry(dir_ino, by_index)
            if name_ok and index_ok:
                continue
            if self.ref_in_log(target, dir_ino, entry.name) or not exists:
                continue  # its ref in the log adds the entry in stage 3; or nothing to point at
            self.link(dir_ino, target, entry.name, index, entry.type, backref=True)

    def ref_in_log(self, ino: int, dir_ino: int, name: bytes) -> bool:
        key = (ino, _REF, dir_ino)
        data = self.log_keys.get(key)
        if data and any(r.name == name for r in li.entries(key, data, self.where)):
            return True
        return any(r.parent == dir_ino and r.name == name
                   for k, d in self.log_of_type(ino, _EXTREF) for r in li.entries(k, d, self.where))

    # --- stage 3: refs, xattrs, extents ------------------------------------------------

    def replay_ref(self, key: Key, data: bytes) -> None:
        ino = key[0]
        logged = li.entries(key, data, self.where)
        item = self.inode(ino)
        if item is None:
            raise _Unsupported(f"logged ref {key} of inode {ino}, which has no inode item")
        ftype = li.file_type(li.inode(item).mode)
        searched: set[int] = set()
        for ref in logged:
            if ref.parent == ino or self.inode(ref.parent) is None:
                continue  # a root's own ref, or a parent the log did not bring: the link count fixes it
            by_index, by_name = self.entry_by_index(ref.parent, ref.index), self.entry_by_name(ref.parent, ref.name)
            if (by_index is not None and by_index.name == ref.name and by_index.location[0] == ino
                    and by_name is not None and by_name.location[0] == ino):
                continue
            if ref.parent not in searched:
                searched.add(ref.parent)
                for old in [n for n in self.names(ino) if n.parent == ref.parent]:
                    if not self.ref_in_log(ino, ref.parent, old.name):
                        self.unlink(ref.parent, ino, old.name)
                for conflict in (self.entry_by_index(ref.parent, ref.index), self.entry_by_name(ref.parent, ref.name)):
                    if conflict is not None:
                        self.drop_entry(ref.parent, conflict)
            if any(n.parent == ref.parent and n.name == ref.name for n in self.names(ino)):
                self.unlink(ref.parent, ino, ref.name)
            self.link(ref.parent, ino, ref.name, ref.index, ftype, backref=False)
        committed = self.obj(ino).get(key)
        if committed is not None:
            for old in li.entries(key, committed, self.where):
                if not any(r.parent == old.parent and r.name == old.name for r in logged):
                    self.unlink(old.parent, ino, old.name)
        self.put(key, data)
        self.fixup.add(ino)

    def drop_extents(self, ino: int, start: int, end: int) -> None:
        """Drop the inode's extent items over [start, end), keeping the parts outside it (btrfs_drop_extents)."""
        for key, data in self.of_type(ino, _EXTENT_DATA):
            offset = key[2]
            stop = li.extent_end(data, offset)
            if stop <= start or offset >= end:
                continue
            self.put(key, None)
            if li.is_inline(data):
                if offset < start:
                    raise _Unsupported(f"inode {ino}: inline extent at {offset} partly overwritten by the log")
                continue
            if offset < start:
                self.put(key, li.extent_piece(data, offset, offset, start))
            if stop > end:
                self.put((ino, _EXTENT_DATA, end), li.extent_piece(data, offset, end, stop))

    def replay_extent(self, key: Key, data: bytes) -> None:
        ino, offset = key[0], key[2]
        if self.inode(ino) is None:
            raise _Unsupported(f"logged extent {key} of inode {ino}, which has no inode item")
        inline = li.is_inline(data)
        if not inline and self.obj(ino).get(key) == data:
            return
        self.drop_extents(ino, offset, li.extent_end(data, offset, self.sectorsize))
        if inline or li.extent(data).disk_bytenr or not self.no_holes:
            self.put(key, data)
        if li.data_extent(data):
            self.take_csums(*li.csum_range(data))
        self.dirty.add(ino)

    def take_csums(self, start: int, end: int) -> None:
        """The log's checksums of logical [start, end): they replace the committed ones there."""
        sector, size = self.sectorsize, self.csum_size
        for first, data in self.log_csums:
            last = first + len(data) // size * sector
            lo, hi = max(first, start), min(last, end)
            if lo < hi:
                self.csums.append((lo, data[(lo - first) // sector * size:(hi - first) // sector * size]))

    def backref_changes(self) -> dict[int, dict[tuple[int, int], int]]:
        """Per data extent and backref key (inode, file offset - extent offset), file extent items referencing
        it after the replay minus before, over the changed objects (an unshared tree holds one reference per
        item)."""
        change: Counter[tuple[int, int, int]] = Counter()
        for oid in self.dirty:
            for items, sign in ((self.committed.get(oid, {}), -1), (self.objs.get(oid, {}), 1)):
                for key, data in items.items():
                    if key[1] == _EXTENT_DATA and (bytenr := li.data_extent(data)):
                        change[bytenr, oid, li.extent(data).data_ref_offset(key[2])] += sign
        out: dict[int, dict[tuple[int, int], int]] = {}
        for (bytenr, ino, offset), n in sorted(change.items()):
            if n:
                out.setdefault(bytenr, {})[ino, offset] = n
        return out

    # --- stage 4: link counts ----------------------------------------------------------

    def fix_links(self) -> None:
        while self.fixup:
            ino = min(self.fixup)
            self.fixup.discard(ino)
            item = self.inode(ino)
            if item is None:
                continue
            count = len(self.names(ino))
            if count:
                if count != li.inode(item).nlink:
                    self.put((ino, _INODE, 0), li.with_inode_fields(item, nlink=count))
                continue
            if stat.S_ISDIR(li.inode(item).mode):
                for key, data in self.of_type(ino, _DIR_INDEX):
                    for entry in li.entries(key, data, self.where):
                        self.drop_entry(ino, entry)
            self.objs[ino] = {}
            self.dirty.add(ino)
            self.from_log.discard(ino)

    def finish_sizes(self) -> None:
        """Directory sizes (2 x name length per entry) and file nbytes after the entries and extents changed."""
        for oid in self.dirty:
            item = self.inode(oid)
            if item is None:
                continue
            mode = li.inode(item).mode
            if stat.S_ISDIR(mode):
                size = sum(2 * len(e.name) for k, d in self.of_type(oid, _DIR_INDEX) for e in li.entries(k, d, self.where))
                self.put((oid, _INODE, 0), li.with_inode_fields(item, size=size))
            elif stat.S_ISREG(mode):
                nbytes = sum(li.extent_bytes(d) for _, d in self.of_type(oid, _EXTENT_DATA))
                self.put((oid, _INODE, 0), li.with_inode_fields(item, nbytes=nbytes))

    # --- the whole replay --------------------------------------------------------------

    def run(self, warnings: Warnings) -> ReplayedItems:
        for key, data in self.log:
            if key[1] == _INODE:
                self.replay_inode(key, data)
        for key, data in self.log:
            if key[1] == _DIR_INDEX and key[0] not in self.ignored:
                self.replay_dir_index(key, data)
        for key, data in self.log:
            oid, item_type = key[0], key[1]
            if oid == _CSUM_OBJECTID and item_type == _EXTENT_CSUM:
                continue  # taken with the extents that reference them
            elif item_type not in _HANDLED:
                warnings.add(f"{self.where}: item {key} ({ItemType.describe(item_type)}) is not replayed",
                             f"subvolume {self.sub.id}", tree=self.sub.id)
            elif oid in self.ignored:
                continue
            elif item_type == _XATTR:
                self.put(key, data)
            elif item_type in (_REF, _EXTREF):
                self.replay_ref(key, data)
            elif item_type == _EXTENT_DATA:
                self.replay_extent(key, data)
        self.fix_links()
        self.finish_sizes()
        objects = {oid: sorted(self.objs[oid].items()) for oid in sorted(self.dirty)}
        shared = set().union(*(self.shared_extents.get(oid, ()) for oid in self.dirty
                               if self.objs[oid] != self.committed.get(oid, {})))
        return ReplayedItems(objects, set(self.from_log), self.backref_changes(), self.csums, shared)


def replay_log(reader: TreeReader, subvolumes: SubvolumeSet, warnings: Warnings) -> LogReplay:
    """Replay every subvolume's log tree; attach the result to each ``Subvolume.replayed``."""
    sb = reader.volume.superblock
    result = LogReplay(present=True, replayed=True)
    for subvol, log in read_log_trees(reader, warnings).items():
        sub = subvolumes.get(subvol)
        if sub is None or sub.deleted:
            warnings.add(f"log tree of subvolume {subvol}, which is not a live subvolume, is not replayed",
                         f"log root tree at {sb.log_root}", tree=subvol)
            continue
        replay = _Replay(reader, sub, log, sectorsize=sb.sectorsize, csum_size=sb.csum.size,
                         no_holes=bool(sb.incompat_flags & IncompatFlag.NO_HOLES), transid=sb.generation + 1)
        try:
            replayed = replay.run(warnings)
        except (_Unsupported, CorruptionError) as exc:
            warnings.add(f"log tree of subvolume {subvol} not replayed (not supported: {exc}); its last "
                         "committed transaction is shown", f"subvolume {subvol}", tree=subvol)
            continue
        sub.replayed = replayed
        result.subvolumes[subvol] = replayed
    return result

