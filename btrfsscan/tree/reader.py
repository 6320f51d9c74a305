"""Reading tree blocks by logical address, trying every copy.

A block that fails its checks on one copy is read from the next (DUP, RAID1*,
RAID10); the copies that failed are reported as warnings, and only when every
copy fails does the read fail, naming each copy's problem. Parsed blocks are
kept in a bounded LRU so a run reads each block once in the common case.
"""

from __future__ import annotations

from collections import OrderedDict

from ..errors import BtrfsScanError, ConcurrentWriteError, CorruptionError, MissingDeviceError, ScanWarning, Warnings
from ..volumes.mounted import RACE_ATTEMPTS, RETRY_ON_RACE
from ..volumes.superblock import SuperRoot
from ..volumes.volume import Volume
from .block import BlockProblem, Key, TreeBlock, first_key_problem, level_problem, parse_block
from .owner import owner_problem


class TreeReader:
    """Verified tree blocks of one volume."""

    def __init__(self, volume: Volume, warnings: Warnings | None = None, cache_bytes: int = 32 << 20) -> None:
        self.volume = volume
        self.warnings = warnings if warnings is not None else volume.warnings
        sb = volume.superblock
        #: The filesystem-wide arguments of ``parse_block`` (and ``check_batch``).
        self.checks = dict(
            csum_type=volume.tree_csum_type,
            fsid=sb.metadata_fsid,
            super_generation=sb.generation,
            sectorsize=sb.sectorsize,
        )
        self.nodesize = sb.nodesize
        self._cache: OrderedDict[int, TreeBlock] = OrderedDict()
        self._cache_max = max(16, cache_bytes // max(self.nodesize, 4096))
        self.blocks_read = 0
        #: The root the root tree and the chunk tree are read from, by tree id, once ``roots.root_in_use``
        #: has chosen it (the superblock's own, or a backup slot's when that is unusable).
        self.roots: dict[int, SuperRoot] = {}

    def read(self, bytenr: int, *, level: int | None = None, generation: int | None = None,
             owner: int | None = None, first_key: Key | None = None) -> TreeBlock:
        """The tree block at ``bytenr``; CorruptionError when no copy is good.

        A cached block is checked again for level and first key only, as the
        kernel does for a cached block a second parent points at.
        """
        block = self._cache.get(bytenr)
        if block is not None:
            self._cache.move_to_end(bytenr)
            problem = (level_problem(block.level, level) or first_key_problem(block, first_key)
                       or (owner_problem(owner, block.owner) if owner is not None else None))
            if problem:
                raise CorruptionError(f"tree block {bytenr}: {problem}")
            return block
        block, notes = self.read_copies(bytenr, level=level, generation=generation, owner=owner, first_key=first_key)
        for note in notes:
            self.warnings.add(note.what, note.where, tree=note.tree, bytenr=note.bytenr)
        self._cache[bytenr] = block
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return block

    def read_copies(self, bytenr: int, *, level: int | None = None, generation: int | None = None,
                    owner: int | None = None, first_key: Key | None = None) -> tuple[TreeBlock, list[ScanWarning]]:
        """The first good copy of the block at ``bytenr``, with the warnings it brings (bad copies before
        it, damaged items), not yet added: a reader that reads ahead adds them when its walk gets there.

        Not cached; CorruptionError names every copy's problem when none is good.
        """
        problems: list[str] = []  # bad copies, warned about when another copy is good
        missing: list[str] = []  # copies on a missing device: reported once per device, not per block
        try:
            copies = self.volume.num_copies(bytenr)
        except BtrfsScanError as exc:
            raise CorruptionError(f"tree block {bytenr}: {exc}") from None
        for mirror in range(1, copies + 1):
            try:
                data = self.volume.read(bytenr, self.nodesize, mirror)
                block = parse_block(data, bytenr, level=level, generation=generation, owner=owner,
                                    first_key=first_key, **self.checks)
            except MissingDeviceError as exc:
                missing.append(f"copy {mirror}: {exc}")
                continue
            except (BlockProblem, BtrfsScanError) as exc:
                problems.append(f"copy {mirror}: {exc}")
                continue
            self.blocks_read += 1
            where = f"tree block {bytenr}"
            notes = [ScanWarning(f"bad copy of tree block, used copy {mirror} instead: {problem}", where, bytenr=bytenr)
                     for problem in problems]
            notes += [ScanWarning(f"damaged item skipped: {dropped}", where, bytenr=bytenr) for dropped in block.dropped]
            return block, notes
        if problems and self.volume.in_use:
            if RETRY_ON_RACE.get():
                raise ConcurrentWriteError(f"tree block {bytenr} of a mounted filesystem changed while read: "
                                           + "; ".join(problems))
            problems.append(f"the mounted filesystem was written while it was read, {RACE_ATTEMPTS} fresh starts "
                            "did not get past this block")
        raise CorruptionError(f"tree block {bytenr}: " + "; ".join(problems + missing))
