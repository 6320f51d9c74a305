"""Listing the namespace: every entry with its inode facts and an extent summary, streamed.

``Lister.iter_batches`` walks the directory tree from the top-level subvolume
(or from any path) across subvolume and snapshot boundaries, the way
``find`` on a filesystem mounted with ``subvolid=5`` sees it: parents before
their children, a subvolume's root directory in place of the entry that
links it, and the empty placeholder directory (inode 2, mode 040755) that a
snapshot shows for a nested subvolume it did not take.

Entries are produced one at a time from column tables: the committed
DIR_INDEX rows (``dir_index``) and the inode and extent rows
(``tables.LeafTables``), both kept once per distinct leaf; a subvolume's
entries are sorted and joined with its inode facts when the walk enters it
and dropped when it leaves, so memory follows the metadata, not the number
of entries listed. A directory the log replay changed is read through
``Namespace.list_dir``, which replays.

Each entry carries what ``ls -li`` shows (inode, mode, links, size) plus
two numbers from the file extents:

* ``extents``: the EXTENT_DATA items of the inode that hold data: regular
  and preallocated extents with a disk address, and inline extents; holes
  (explicit ones, and the implicit ones of NO_HOLES filesystems) are not
  counted.
* ``shared_bytes``: the bytes of the inode's regular and preallocated extent
  references that another reference of the live fs trees also maps: another
  file, the same inode in a snapshot, another position of the same file
  (``byte_sharing``). The two ends of an overwritten extent (bookends) map
  disjoint bytes: not shared. It is the sum of ``shared_bytes`` over the
  extents ``filemap.build_file_map`` lists.
"""

from __future__ import annotations

import gc
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterator
from itertools import chain
from functools import cached_property
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..arrays import ranges
from ..errors import CorruptionError
from ..format.constants import FileExtentType, FileType, ItemType, ObjectId
from .byte_sharing import shared_bytes
from .dir_index import EntryLeaves
from .namespace import EMPTY_SUBVOL_DIR_INO, ROOT_DIR_INO, Entry
from .tables import LeafTables

if TYPE_CHECKING:
    from .filesystem import Filesystem
    from .subvolumes import Subvolume

#: What the kernel shows for the placeholder of a nested subvolume in a snapshot.
PLACEHOLDER_MODE = stat.S_IFDIR | 0o755

TYPE_NAMES = {
    stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket", stat.S_IFCHR: "chardev", stat.S_IFBLK: "blockdev",
}
_DIR_TYPE_MODES = {
    FileType.REG_FILE: stat.S_IFREG, FileType.DIR: stat.S_IFDIR, FileType.CHRDEV: stat.S_IFCHR,
    FileType.BLKDEV: stat.S_IFBLK, FileType.FIFO: stat.S_IFIFO, FileType.SOCK: stat.S_IFSOCK,
    FileType.SYMLINK: stat.S_IFLNK,
}
#: Entries handed on together (``Lister.iter_batches``).
BATCH = 4096
#: Entry rows turned into Python values together, and how many such chunks a subvolume keeps: a bound on
#: the memory a listing holds however large a subvolume is.
CHUNK, CHUNKS_KEPT = 4096, 256


def type_name(mode: int) -> str:
    """``file``, ``dir``, ``symlink``, ``fifo``, ``socket``, ``chardev``, ``blockdev`` or ``unknown``."""
    return TYPE_NAMES.get(stat.S_IFMT(mode), "unknown")


class Listed(NamedTuple):
    """One entry of a listing (a tuple: millions are made). ``path`` is from the top level ("." for its root)."""

    path: str
    name: str
    subvolume: int
    inode: int
    type: str
    mode: int
    nlink: int
    size: int
    extents: int
    shared_bytes: int


#: What a directory entry names, as far as its subvolume's tables tell (plain ints: compared per entry).
INODE, MISSING, SUBVOLUME = 0, 1, 2  # an inode with its INODE_ITEM, one without, a ROOT_ITEM (``Namespace.resolve``)
#: ``type`` by the file type bits of a mode (``mode >> 12``).
_TYPE_OF = tuple(TYPE_NAMES.get(bits << 12, "unknown") for bits in range(16))


def _extent_columns(leaves: LeafTables) -> tuple[np.ndarray, np.ndarray]:
    """Per extent row (each distinct leaf's once): whether it counts as an extent (data or inline), and its
    shared bytes (``byte_sharing``: bytes another reference also maps), a row of a leaf that several
    subvolumes hold counting once per subvolume."""
    ext = leaves.extents
    holders = np.bincount(leaves.subvol_leaves, minlength=leaves.n_leaves)  # subvolumes holding each leaf
    weight = np.repeat(holders, np.diff(leaves.extent_start))
    inline = ext["type"] == FileExtentType.INLINE
    data = ~inline & (ext["disk_bytenr"] != 0)
    return inline | data, shared_bytes(ext, weight).astype(np.int64)


class SubvolumeFacts:
    """One subvolume's inodes as a listing needs them: per inode (by number) mode, links, size, extent count and
    shared bytes; and, on first use, its directory entries sorted by name and joined with those facts."""

    def __init__(self, sub: Subvolume, lister: Lister) -> None:
        self.sub = sub
        self._entries = lister.entries
        self._chunks: OrderedDict[int, list[tuple]] = OrderedDict()  # the chunks used last, in use order
        leaves = lister.leaves
        at = np.flatnonzero(leaves.subvol_ids == sub.id)
        mine = (leaves.subvol_leaves[leaves.subvol_start[at[0]]:leaves.subvol_start[at[0] + 1]] if len(at)
                else np.zeros(0, np.int64))
        inodes = leaves.inodes[ranges(leaves.inode_start[mine], leaves.inode_start[mine + 1])]
        rows = ranges(leaves.extent_start[mine], leaves.extent_start[mine + 1])
        ino = leaves.extents["ino"][rows]
        if len(ino) and not bool(np.all(ino[1:] >= ino[:-1])):  # key order keeps an inode's rows together
            rows = rows[np.argsort(ino, kind="stable")]
            ino = ino[np.argsort(ino, kind="stable")]
        first = np.flatnonzero(np.concatenate(([True], ino[1:] != ino[:-1]))) if len(ino) else np.zeros(0, np.int64)
        groups = ino[first]
        counted, shared = lister.extent_columns
        self.ino = inodes["ino"]  # key order: sorted
        self.table = np.zeros((len(inodes), 5), np.int64)  # mode, nlink, size, extents, shared_bytes
        for n, name in enumerate(("mode", "nlink", "size")):
            self.table[:, n] = inodes[name]
        if len(ino):
            where = np.minimum(np.searchsorted(groups, self.ino), len(groups) - 1)
            hit = groups[where] == self.ino
            self.table[hit, 3] = np.add.reduceat(counted[rows].astype(np.int64), first)[where[hit]]
            self.table[hit, 4] = np.add.reduceat(shared[rows], first)[where[hit]]

    def facts(self, ino: int) -> tuple[int, ...] | None:
        """(mode, nlink, size, extents, shared_bytes) of inode ``ino``, None if it has no INODE_ITEM."""
        at = int(np.searchsorted(self.ino, ino))
        if at < len(self.ino) and int(self.ino[at]) == ino:
            return tuple(self.table[at].tolist())
        return None

    @cached_property
    def _sorted(self) -> tuple[dict[int, tuple[int, int]], np.ndarray, np.ndarray]:
        """Each directory's rows, the entry rows (by directory and name), and per row its kind, location, entry
        type and the inode's facts."""
        entries = self._entries
        rows = entries.rows[entries.subvolume(self.sub.id)]
        location = rows["location"]
        out = np.zeros((len(rows), 8), np.int64)
        if len(self.ino):
            where = np.minimum(np.searchsorted(self.ino, location), len(self.ino) - 1)
            found = self.ino[where] == location
            out[found, 3:] = self.table[where[found]]
        else:
            found = np.zeros(len(rows), bool)
        out[:, 0] = np.where(rows["location_type"] == ItemType.ROOT_ITEM, SUBVOLUME, np.where(found, INODE, MISSING))
        out[:, 1], out[:, 2] = location, rows["type"]
        first = np.flatnonzero(np.concatenate(([True], rows["dir"][1:] != rows["dir"][:-1]))) if len(rows) \
            else np.zeros(0, np.int64)
        ends = np.append(first[1:], len(rows))
        return dict(zip(rows["dir"][first].tolist(), zip(first.tolist(), ends.tolist()))), rows, out

    def _chunk(self, chunk: int) -> list[tuple]:
        """Rows ``[chunk * CHUNK, (chunk + 1) * CHUNK)`` as tuples (``block``'s form), made column by column;
        the ``CHUNKS_KEPT`` used last are kept."""
        kept = self._chunks.get(chunk)
        if kept is not None:
            self._chunks.move_to_end(chunk)
            return kept
        if len(self._chunks) >= CHUNKS_KEPT:
            self._chunks.popitem(last=False)
        kept = self._chunks[chunk] = self._make_chunk(chunk)
        return kept

    def _make_chunk(self, chunk: int) -> list[tuple]:
        _, rows, table = self._sorted
        rows, table = rows[chunk * CHUNK:(chunk + 1) * CHUNK], table[chunk * CHUNK:(chunk + 1) * CHUNK]
        lengths = rows["name_len"].astype(np.int64)
        at = np.cumsum(lengths + 1) - lengths - 1  # each name followed by a "/", which no name holds
        joined = np.full(int(lengths.sum()) + len(rows), ord("/"), np.uint8)
        joined[ranges(at, at + lengths)] = np.frombuffer(self._entries.names, np.uint8)[
            ranges(rows["name_at"], rows["name_at"] + lengths)]
        names = joined[:-1].tobytes().decode("utf-8", "surrogateescape").split("/") if len(rows) else []
        if len(names) != len(rows):  # a damaged name holding "/": one by one
            raw = self._entries.names
            names = [raw[a:a + n].decode("utf-8", "surrogateescape")
                     for a, n in zip(rows["name_at"].tolist(), lengths.tolist())]
        kinds = np.where(table[:, 0] == INODE, (table[:, 3] >> 12) & 15, 0)
        types = np.array(_TYPE_OF, object)[kinds].tolist()
        columns = [table[:, n].tolist() for n in range(8)]
        return list(zip(names, *columns[:3], types, *columns[3:]))

    def block(self, dir_ino: int) -> Iterator[tuple]:
        """The committed entries of a directory sorted by name bytes: (name, kind, location, entry type,
        type, mode, nlink, size, extents, shared_bytes)."""
        span = self._sorted[0].get(dir_ino)
        if span is None:
            return iter(())
        a, b = span
        first, last = a // CHUNK, (b - 1) // CHUNK
        if first == last:
            return iter(self._chunk(first)[a - first * CHUNK:b - first * CHUNK])
        return chain.from_iterable(self._chunk(c)[max(a - c * CHUNK, 0):b - c * CHUNK] for c in range(first, last + 1))


def _name_key(entry: Entry) -> bytes:
    return entry.name.encode("utf-8", "surrogateescape")


class Lister:
    """Listings over the namespace of ``fs`` from its column tables (``leaves``: inodes and extents of every
    live subvolume; ``entries``: their committed directory entries)."""

    def __init__(self, fs: Filesystem, leaves: LeafTables, entries: EntryLeaves) -> None:
        self.fs = fs
        self.ns = fs.namespace
        self.leaves = leaves
        self.entries = entries
        self.extent_columns = _extent_columns(leaves)
        self._last: SubvolumeFacts | None = None  # the subvolume last asked for: ``describe``, then the walk

    def root_entry(self) -> Entry:
        return Entry(int(ObjectId.FS_TREE), int(ROOT_DIR_INO), "", FileType.DIR, subvol_link=int(ObjectId.FS_TREE))

    def facts_of(self, sub_id: int) -> SubvolumeFacts | None:
        if self._last is not None and self._last.sub.id == sub_id:
            return self._last
        sub = self.fs.subvolumes.get(sub_id)
        if sub is None:
            return None
        self._last = SubvolumeFacts(sub, self)
        return self._last

    def _record(self, facts: SubvolumeFacts | None, sub_id: int, ino: int, ftype: int, path: str, name: str) -> Listed:
        """The record of inode ``ino`` of ``sub_id`` (a warning when it has no INODE_ITEM)."""
        found = facts.facts(ino) if facts is not None else None
        if found is None:
            return self._missing(sub_id, ino, ftype, path, name)
        return Listed(path, name, sub_id, ino, _TYPE_OF[(found[0] >> 12) & 15], *found)

    def _missing(self, sub_id: int, ino: int, ftype: int, path: str, name: str) -> Listed:
        self.fs.warnings.add(f"{path}: inode {ino} has no INODE_ITEM (shown with mode and size 0)",
                             f"subvolume {sub_id}", tree=sub_id)
        mode = _DIR_TYPE_MODES.get(ftype, 0)
        return Listed(path, name, sub_id, ino, type_name(mode) if mode else "unknown", mode, 0, 0, 0, 0)

    def describe(self, entry: Entry, path: str) -> Listed:
        """The listing record of one resolved entry."""
        name = entry.name or path.rsplit("/", 1)[-1]
        if entry.ino == EMPTY_SUBVOL_DIR_INO and entry.subvol_link is None:
            return Listed(path, name, entry.subvol, entry.ino, "dir", PLACEHOLDER_MODE, 1, 0, 0, 0)
        return self._record(self.facts_of(entry.subvol), entry.subvol, entry.ino, entry.type, path, name)

    def _children(self, facts: SubvolumeFacts, dir_ino: int) -> Iterator[tuple]:
        """A directory's entries sorted by name bytes (``SubvolumeFacts.block``'s form); through the namespace
        when the log replay changed the directory."""
        sub = facts.sub
        if sub.replayed is None or not sub.replayed.covers(dir_ino):
            return facts.block(dir_ino)
        try:
            found = sorted(self.ns.list_dir(sub, dir_ino), key=_name_key)
        except CorruptionError as exc:
            self.fs.warnings.add(f"directory {dir_ino} of subvolume {sub.id} listed in part: {exc}",
                                 f"subvolume {sub.id}", tree=sub.id)
            return iter(())
        out = []
        for e in found:
            if e.subvol != sub.id or e.ino == EMPTY_SUBVOL_DIR_INO:  # resolved again as the ROOT_ITEM it is
                out.append((e.name, SUBVOLUME, e.subvol, e.type, "", 0, 0, 0, 0, 0))
                continue
            inode = facts.facts(e.ino)
            out.append((e.name, MISSING, e.ino, e.type, "", 0, 0, 0, 0, 0) if inode is None
                       else (e.name, INODE, e.ino, e.type, _TYPE_OF[(inode[0] >> 12) & 15], *inode))
        return iter(out)

    def iter_batches(self, start: Entry | None = None, start_path: str = ".", *, recursive: bool = True,
                     include_start: bool = True, progress: Callable[[int], None] | None = None,
                     ) -> Iterator[list[Listed]]:
        """Entries from ``start`` (the top-level root by default), parents before children, names sorted by
        their bytes (what ``ls`` shows), in lists of up to ``BATCH`` (what writers take at a time).

        ``recursive=False`` lists ``start`` and its direct entries only;
        ``include_start=False`` leaves ``start`` itself out. ``progress(n)``
        is told how many entries are listed, batch by batch.
        """
        start = start or self.root_entry()
        start_path = start_path or "."
        first = self.describe(start, start_path)
        batch = [first] if include_start else []
        produced = 0
        if first.type == "dir" and not (start.ino == EMPTY_SUBVOL_DIR_INO and start.subvol_link is None):
            # Millions of small tuples, none in a reference cycle: the cyclic collector would scan the live ones
            # again and again (a third of the time). It is off while the walk runs, and while its batches are
            # written between its steps.
            collecting = gc.isenabled()
            gc.disable()
            try:
                for batch in self._walk(start, start_path, recursive, batch):
                    produced += len(batch)
                    if progress is not None:
                        progress(produced)
                    yield batch
            finally:
                if collecting:
                    gc.enable()
            batch = []
        if batch:
            yield batch

    def _walk(self, start: Entry, start_path: str, recursive: bool, batch: list[Listed]) -> Iterator[list[Listed]]:
        """The entries below directory ``start`` depth first, in full lists (``batch``: what comes before)."""
        facts = self.facts_of(start.subvol)
        if facts is None:
            if batch:
                yield batch
            return
        seen = {(start.subvol, start.ino)}
        stack = [(facts, start.ino, self._children(facts, start.ino), "" if start_path == "." else start_path + "/")]
        make, add = tuple.__new__, batch.append
        while stack:
            facts, dir_ino, rows, prefix = stack[-1]
            sub_id = facts.sub.id
            for name, kind, location, ftype, kind_name, mode, nlink, size, extents, shared in rows:
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
                    add = batch.append
                path = prefix + name
                if kind == INODE:
                    add(make(Listed, (path, name, sub_id, location, kind_name, mode, nlink, size, extents, shared)))
                    if kind_name != "dir" or not recursive:
                        continue
                    owner, ino = facts, location
                elif kind == MISSING:
                    add(self._missing(sub_id, location, ftype, path, name))
                    continue
                else:
                    entry = self.ns.resolve(facts.sub, dir_ino, name, location, ItemType.ROOT_ITEM, FileType.DIR)
                    if entry.subvol_link is None:
                        add(Listed(path, name, entry.subvol, entry.ino, "dir", PLACEHOLDER_MODE, 1, 0, 0, 0))
                        continue
                    owner = self.facts_of(entry.subvol)
                    record = self._record(owner, entry.subvol, entry.ino, FileType.DIR, path, name)
                    add(record)
                    if not recursive or record.type != "dir" or owner is None:
                        continue
                    ino = entry.ino
                key = (owner.sub.id, ino)
                if key in seen:
                    self.fs.warnings.add(f"{path}: directory met twice (a loop in the directory tree), "
                                         "not entered again", f"subvolume {key[0]} inode {ino}", tree=key[0])
                    continue
                seen.add(key)
                stack.append((owner, ino, self._children(owner, ino), path + "/"))
                break
            else:
                stack.pop()
        if batch:
            yield batch


def normalize_path(path: str) -> str:
    """``path`` without empty and ``.`` components ("." for the root)."""
    parts = [p for p in path.split("/") if p and p != "."]
    return "/".join(parts) or "."
