"""Reading tree blocks by logical address, trying every copy.

A block that fails its checks on one copy is read from the next (DUP, RAID1*,
RAID10); the copies that failed are reported as warnings, and only when every
copy fails does the read fail, naming each copy's problem. Parsed blocks are
kept in a bounded LRU so a run reads each block once in the common case.
"""

from __future__ import annotations

from collections import OrderedDict

from ..errors import BtrfsScanError, CorruptionError, MissingDeviceError, Warnings
from ..volumes.volume import Volume
from .block import BlockProblem, TreeBlock, parse_block


class TreeReader:
    """Verified tree blocks of one volume."""

    def __init__(self, volume: Volume, warnings: Warnings | None = None, cache_bytes: int = 32 << 20) -> None:
        self.volume = volume
        self.warnings = warnings if warnings is not None else volume.warnings
        sb = volume.superblock
        self._check = dict(
            csum_type=volume.tree_csum_type,
            fsid=sb.metadata_fsid,
            super_generation=sb.generation,
            sectorsize=sb.sectorsize,
        )
        self.nodesize = sb.nodesize
        self._cache: OrderedDict[int, TreeBlock] = OrderedDict()
        self._cache_max = max(16, cache_bytes // max(self.nodesize, 4096))
        self.blocks_read = 0

    def read(self, bytenr: int, *, level: int | None = None, generation: int | None = None,
             owner: int | None = None) -> TreeBlock:
        """The tree block at ``bytenr``; CorruptionError when no copy is good."""
        block = self._cache.get(bytenr)
        if block is not None:
            self._cache.move_to_end(bytenr)
            if level is not None and block.level != level:
                raise CorruptionError(f"tree block {bytenr}: level {block.level}, expected {level}")
            return block
        block = self._read_copies(bytenr, level, generation, owner)
        self._cache[bytenr] = block
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return block

    def _read_copies(self, bytenr: int, level, generation, owner) -> TreeBlock:
        problems: list[str] = []  # bad copies, warned about when another copy is good
        missing: list[str] = []  # copies on a missing device: reported once per device, not per block
        try:
            copies = self.volume.num_copies(bytenr)
        except BtrfsScanError as exc:
            raise CorruptionError(f"tree block {bytenr}: {exc}") from None
        for mirror in range(1, copies + 1):
            try:
                data = self.volume.read(bytenr, self.nodesize, mirror)
                block = parse_block(data, bytenr, level=level, generation=generation, owner=owner, **self._check)
            except MissingDeviceError as exc:
                missing.append(f"copy {mirror}: {exc}")
                continue
            except (BlockProblem, BtrfsScanError) as exc:
                problems.append(f"copy {mirror}: {exc}")
                continue
            self.blocks_read += 1
            for problem in problems:
                self.warnings.add(f"bad copy of tree block, used copy {mirror} instead: {problem}", f"tree block {bytenr}",
                                  bytenr=bytenr)
            for dropped in block.dropped:
                self.warnings.add(f"damaged item skipped: {dropped}", f"tree block {bytenr}", bytenr=bytenr)
            return block
        raise CorruptionError(f"tree block {bytenr}: " + "; ".join(problems + missing))
