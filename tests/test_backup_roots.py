"""The superblock's backup roots standing in for an unusable root tree (or chunk tree) root block.

The images are made here by the kernel: mkfs.btrfs on a file attached with
``losetup -f --show``, mounted with ``commit=600`` (only the test's syncs
commit), written in three commits of seeded files small enough that nothing
else commits, then unmounted: the backup slots name the root trees of the
commits before the last, each with fewer files. The chunk tree case writes
a file that needs a second data chunk (its allocation may commit on its
own: that case needs only a slot older than the chunk). Each case damages a
copy: a few bytes of the body of a root block, in every copy, at the
physical offsets the chunk items of ``dump-tree -t chunk`` give
(``btrfs-map-logical`` agrees for the superblock's root; it knows no freed
block). What btrfsscan must then show comes from btrfs-progs (``dump-super
-f`` for the slots, ``dump-tree -b`` of the slot's trees for files, sizes,
extents, block groups and chunks) and from what the test wrote before that
commit.

No commit follows the last one, so the newest backup's blocks are intact;
the older ones' could have been reused by later commits (copy-on-write frees
them), so the fixtures check with ``dump-tree`` that the slots the cases use
are intact. The log case copies the device while mounted after an fsync,
as ``fixtures/build_logs.py`` does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from construct import Container
from support import kernel_unavailable, run
from test_kernel_random import _load

from btrfsscan.format.constants import ObjectId
from btrfsscan.volumes.superblock import Superblock, SuperRoot, backup_roots, super_root

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
M = 1 << 20
PAGE = 4096
TOOLS = ("losetup", "mount", "umount", "mkfs.btrfs", "btrfs", "btrfs-map-logical", "cp")
REASON = kernel_unavailable(TOOLS)


def kernel_backed(test):
    """A test on kernel-made images: skipped, saying why, where they cannot be made."""
    return pytest.mark.kernel(pytest.mark.skipif(REASON is not None, reason=f"kernel-backed test: {REASON}")(test))


#: The three commits of the root tree cases: the files each writes (path -> size), all within the data chunk
#: mkfs makes (8 MiB), so that nothing but the syncs commits.
COMMITS = (
    {"one/a": 5000, "one/b": 40000, "one/c": 100},
    {"two/d": 30000, "two/f": 200000},
    {"three/e": 70000},
)
#: The chunk tree case: a 12 MiB file needs a second data chunk, so the chunk tree changes after the first commit.
GROWTH = (COMMITS[0], {"two/big": 12 * M})


# --- btrfs-progs ----------------------------------------------------------------------------------------


def _progs(*args) -> str:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout


def _generation(device) -> int:
    return int(re.search(r"^generation\s+(\d+)$", _progs("btrfs", "inspect-internal", "dump-super", device),
                         re.M).group(1))


@dataclass(frozen=True)
class DumpedSuper:
    """``dump-super -f``: the fields used here and the backup slots, each tree's (bytenr, generation, level)."""

    fields: dict[str, int]
    slots: list[dict[str, tuple[int, int, int]]]

    @classmethod
    def of(cls, image) -> "DumpedSuper":
        text = _progs("btrfs", "inspect-internal", "dump-super", "-f", image)
        fields = {name: int(value) for name, value in re.findall(r"^(\w+)\t+(\d+)$", text, re.M)}
        slots = []
        for body in re.split(r"^\tbackup \d+:$", text, flags=re.M)[1:]:
            slots.append({name: (int(b), int(g), int(lv)) for name, b, g, lv in
                          re.findall(r"^\t\t(?:backup_)?(\w+):\t+(\d+)\tgen: (\d+)\tlevel: (\d+)$", body, re.M)})
        assert len(slots) == 4, text
        return cls(fields, slots)

    def slot_of(self, tree: str, generation: int) -> int:
        (slot,) = [n for n, s in enumerate(self.slots) if s[tree][1] == generation]
        return slot


def _dump_block(image, bytenr: int) -> str:
    return _progs("btrfs", "inspect-internal", "dump-tree", "-b", bytenr, "--follow", image)


def _block_generations(text: str) -> dict[int, int]:
    return {int(b): int(g) for b, g in re.findall(r"^(?:leaf|node) (\d+) .*generation (\d+) owner", text, re.M)}


def _intact(image, tree_root: int, generation: int) -> bool:
    """Whether the root tree at ``tree_root`` and every tree its ROOT_ITEMs name read back as that commit
    wrote them (each root block of the generation its pointer names), by ``dump-tree -b``."""
    text = _dump_block(image, tree_root)
    if _block_generations(text).get(tree_root) != generation:
        return False
    roots = re.findall(r"ROOT_ITEM 0\) itemoff \d+ itemsize \d+\n\s+generation (\d+) root_dirid \d+ bytenr (\d+)", text)
    return bool(roots) and all(_block_generations(_dump_block(image, b)).get(int(b)) == int(g) for g, b in roots)


def _files(image, fs_root: int) -> dict[str, int]:
    """path -> size of every regular file of the fs tree at ``fs_root``, from its DIR_INDEX and INODE_ITEMs."""
    text = _dump_block(image, fs_root)
    sizes = {int(i): int(s) for i, s in re.findall(
        r"key \((\d+) INODE_ITEM 0\) itemoff \d+ itemsize \d+\n\s+generation \d+ transid \d+ size (\d+)", text)}
    parent = {int(ino): (int(d), name, kind) for d, ino, kind, name in re.findall(
        r"key \((\d+) DIR_INDEX \d+\) itemoff \d+ itemsize \d+\n\s+location key \((\d+) INODE_ITEM 0\) "
        r"type (\w+)\n.*\n\s+name: (.*)", text)}

    def path(ino: int) -> str:
        d, name, _ = parent[ino]
        return name if d == 256 else f"{path(d)}/{name}"

    return {path(ino): sizes[ino] for ino, (_, _, kind) in parent.items() if kind == "FILE"}


def _disk_bytenrs(image, fs_root: int) -> set[int]:
    return {int(b) for b in re.findall(r"extent data disk byte (\d+) nr", _dump_block(image, fs_root)) if b != "0"}


def _block_groups_used(image, extent_root: int) -> dict[int, int]:
    return {int(start): int(used) for start, used in re.findall(
        r"key \((\d+) BLOCK_GROUP_ITEM \d+\) itemoff \d+ itemsize \d+\n\s+block group used (\d+)",
        _dump_block(image, extent_root))}


def _chunk_starts(image, chunk_root: int) -> list[int]:
    return sorted(int(s) for s in re.findall(r"CHUNK_ITEM (\d+)\)", _dump_block(image, chunk_root)))


# --- the images -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    image: Path
    #: The generation of each commit of ``COMMITS`` and the files there were after it.
    generations: tuple[int, ...]
    files: tuple[dict[str, int], ...]
    sb: DumpedSuper


def _write(kernel, mnt: Path, files: dict[str, int]) -> None:
    for rel, size in files.items():
        (mnt / rel).parent.mkdir(exist_ok=True)
        kernel.write_seeded_file(mnt / rel, rel, size)


def _image(directory: Path, commits, while_mounted=None) -> tuple[Path, list[int], list[dict[str, int]]]:
    """A fresh filesystem written in ``commits`` (a sync after each), then unmounted (``while_mounted(mnt,
    image)`` runs before): the image, the generation after each commit and the files there were then."""
    kernel = _load("kernel")
    img = kernel.make_sparse_image(directory / "fs.img", 128 * M)
    generations, files = [], [{}]
    with kernel.loop_devices([img]) as (dev,):
        kernel.make_fs([dev], fsid=str(uuid.uuid4()))
        with kernel.mounted(dev, "commit=600") as mnt:
            for commit in commits:
                _write(kernel, mnt, commit)
                os.sync()
                generations.append(_generation(dev))
                files.append({**files[-1], **commit})
            if while_mounted is not None:
                while_mounted(mnt, img)
    return img, generations, files[1:]


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> History:
    img, generations, files = _image(tmp_path_factory.mktemp("backup-roots"), COMMITS)
    sb = DumpedSuper.of(img)
    # The fixture's design: one commit a sync and none after the last, every commit has its slot, and the
    # two older commits' trees are intact (no later commit reused their blocks).
    assert generations == list(range(generations[0], generations[0] + len(COMMITS)))
    assert sb.fields["generation"] == generations[-1]
    assert set(generations) <= {s["tree_root"][1] for s in sb.slots}
    mapped = _mapped(img, sb.fields["root"])
    assert _copies(img, sb.fields["root"]) == mapped and len(mapped) == 2  # DUP metadata
    for generation in generations[:2]:
        assert _intact(img, sb.slots[sb.slot_of("tree_root", generation)]["tree_root"][0], generation)
    return History(img, tuple(generations), tuple(files), sb)


@pytest.fixture(scope="module")
def grown(tmp_path_factory) -> tuple[Path, dict[str, int], DumpedSuper]:
    """An image whose chunk tree changed after its first commit, with its files and superblock."""
    img, generations, files = _image(tmp_path_factory.mktemp("backup-roots-chunks"), GROWTH)
    sb = DumpedSuper.of(img)
    assert generations[0] < sb.fields["chunk_root_generation"] <= generations[1]
    return img, files[-1], sb


def _copy(src: Path, dest: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(src), str(dest)], check=True)
    return dest


def _mapped(image: Path, logical: int) -> list[int]:
    """Where every copy of ``logical`` lies, by ``btrfs-map-logical`` (which knows only allocated blocks)."""
    return [int(p) for p in re.findall(r"^mirror \d+ logical \d+ physical (\d+) device",
                                       _progs("btrfs-map-logical", "-l", logical, image), re.M)]


def _copies(image: Path, logical: int) -> list[int]:
    """Where every copy of ``logical`` lies, from the chunk items ``dump-tree -t chunk`` prints (a freed block
    too; SINGLE and DUP chunks: each stripe holds the whole chunk)."""
    text = _progs("btrfs", "inspect-internal", "dump-tree", "-t", "chunk", image)
    for start, length, stripes in re.findall(r"CHUNK_ITEM (\d+)\) itemoff \d+ itemsize \d+\n\s+length (\d+) "
                                             r"owner.*\n(?:.*\n){2}((?:\s+stripe \d+ .*\n.*\n)+)", text):
        if int(start) <= logical < int(start) + int(length):
            return [int(o) + logical - int(start) for o in re.findall(r"stripe \d+ devid 1 offset (\d+)", stripes)]
    raise AssertionError(f"no chunk maps {logical}")


def _damaged(image: Path, dest: Path, *blocks: int) -> Path:
    """A copy of ``image`` with 8 bytes of the body of each tree block at ``blocks`` (logical addresses, past
    its header) flipped in every copy (found on ``image``: btrfs-progs cannot open the copy)."""
    _copy(image, dest)
    with open(dest, "r+b") as raw:
        for logical in set(blocks):  # a block twice would be flipped back
            for physical in _copies(image, logical):
                raw.seek(physical + 0x300)
                body = raw.read(8)
                raw.seek(physical + 0x300)
                raw.write(bytes(b ^ 0xFF for b in body))
    return dest


def _bad(bytenr: int) -> str:
    """What the reader says of a block damaged by ``_damaged`` (DUP metadata: two copies)."""
    return f"tree block {bytenr}: copy 1: checksum mismatch; copy 2: checksum mismatch"


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "btrfsscan", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)


def _json(*args, exit_code: int = 1) -> dict:
    result = run(*args)
    assert result.exit_code == exit_code, result.stderr
    return json.loads(result.stdout.splitlines()[0] if args[0] == "report" else result.stdout)


def _listed_files(image) -> dict[str, int]:
    entries = _json("ls", "-R", "--json", image, "--")["entries"]
    return {e["path"]: e["size"] for e in entries if e["type"] == "file"}


def _backup_warning(history: History, used: int, newer: tuple[int, ...] = ()) -> str:
    """The warning for the root tree read from the slot of commit ``used`` (the slots of ``newer`` unusable)."""
    sb = history.sb
    slot = sb.slot_of("tree_root", history.generations[used])
    bytenr, generation, _ = sb.slots[slot]["tree_root"]
    unusable = [f"slot {n} of generation {sb.slots[n]['tree_root'][1]} ({_bad(sb.slots[n]['tree_root'][0])})"
                for n in (sb.slot_of("tree_root", history.generations[c]) for c in newer)]
    return (f"tree ROOT_TREE: the superblock's root is unusable ({_bad(sb.fields['root'])})"
            + (f", as are the newer backup roots: {', '.join(unusable)}" if unusable else "")
            + f"; using backup root slot {slot} instead: tree block {bytenr} of generation {generation}, older than "
            f"the superblock's {sb.fields['generation']}, so what later transactions wrote is not shown "
            "(superblock backup roots)")


def _check_backup_generation(history: History, image: Path, used: int, warning: str) -> None:
    """Every command shows commit ``used``: its files, subvolume generation, block groups and extents."""
    slot = history.sb.slots[history.sb.slot_of("tree_root", history.generations[used])]
    listing = run("ls", "-R", "--json", image, "--")
    assert listing.exit_code == 1 and listing.stderr == f"warning: {warning}\n"
    doc = json.loads(listing.stdout)
    assert doc["warnings"] == [warning] and doc["partial"] is True
    files = {e["path"]: e["size"] for e in doc["entries"] if e["type"] == "file"}
    assert files == history.files[used] == _files(history.image, slot["fs_root"][0])

    subvolumes = _json("subvolumes", "--json", image)["subvolumes"]
    assert [(s["id"], s["generation"]) for s in subvolumes] == [(5, slot["fs_root"][1])]

    report = _json("report", "--json", image)
    assert report["partial"] is True and report["warnings"] == [warning]
    assert report["filesystem"]["generation"] == history.generations[used]
    assert report["totals"]["files"] == len(files)
    assert report["totals"]["per_inode"]["pages"] == sum(-(-size // PAGE) for size in files.values())

    used_bytes = {c["logical"]: c["used"] for c in _json("chunks", "--json", image)["chunks"]}
    expected = _block_groups_used(history.image, slot["extent_root"][0])
    assert used_bytes == {start: expected.get(start) for start in used_bytes}

    mapped = _json("map", "--json", image, "one/b")
    assert {e["disk_bytenr"] for e in mapped["extents"]} <= _disk_bytenrs(history.image, slot["fs_root"][0])
    newer = sorted(set(history.files[-1]) - set(files))[0]
    missing = run("map", "--json", image, newer)
    assert missing.exit_code == 2 and missing.stderr.startswith("btrfsscan: error: no such file or directory: ")
    assert f"looking up '{newer}'" in missing.stderr


# --- the root tree ---------------------------------------------------------------------------------------


@kernel_backed
def test_the_newest_backup_root_stands_in_for_an_unusable_root_tree_root(history, tmp_path):
    image = _damaged(history.image, tmp_path / "damaged.img", history.sb.fields["root"])
    _check_backup_generation(history, image, 1, _backup_warning(history, 1))


@kernel_backed
def test_an_unusable_newest_backup_root_gives_way_to_the_next(history, tmp_path):
    sb = history.sb
    image = _damaged(history.image, tmp_path / "damaged.img", sb.fields["root"],
                     sb.slots[sb.slot_of("tree_root", history.generations[1])]["tree_root"][0])
    _check_backup_generation(history, image, 0, _backup_warning(history, 0, newer=(1,)))


@kernel_backed
def test_no_usable_backup_root_is_one_error_line(history, tmp_path):
    sb = history.sb
    older = sorted((s["tree_root"] for s in sb.slots if s["tree_root"][1] < sb.fields["generation"]),
                   key=lambda root: -root[1])
    assert len(older) == 3
    image = _damaged(history.image, tmp_path / "damaged.img", sb.fields["root"], *(b for b, _, _ in older))
    tried = ", ".join(f"slot {sb.slot_of('tree_root', g)} of generation {g} ({_bad(b)})" for b, g, _ in older)
    message = f"{_bad(sb.fields['root'])}; backup roots tried, none usable: {tried}"
    for args in (("ls", "-R", "--json", image), ("report", "--json", image), ("subvolumes", image),
                 ("map", "--json", image, "one/a")):
        result = _cli(*args)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", f"btrfsscan: error: {message}\n")
    chunks = _cli("chunks", "--json", image)  # the chunk map is there: only the used bytes are not
    assert chunks.returncode == 1 and json.loads(chunks.stdout)["warnings"] == [f"block groups: {message} (root tree)"]


# --- the chunk tree --------------------------------------------------------------------------------------


@kernel_backed
def test_a_backup_chunk_root_stands_in_for_an_unusable_chunk_root(grown, tmp_path):
    """The chunk tree of the first commit (mkfs's) maps everything but the data chunk the second added."""
    pristine, files, sb = grown
    image = _damaged(pristine, tmp_path / "damaged.img", sb.fields["chunk_root"])
    own = sb.fields["chunk_root_generation"]
    (slot, (bytenr, generation, _)) = max(((n, s["chunk_root"]) for n, s in enumerate(sb.slots)
                                           if s["chunk_root"][1] < own), key=lambda found: found[1][1])
    warning = (f"tree CHUNK_TREE: the superblock's root is unusable ({_bad(sb.fields['chunk_root'])}); using backup "
               f"root slot {slot} instead: tree block {bytenr} of generation {generation}, older than the "
               f"superblock's {own}, so chunks allocated since are not mapped (superblock backup roots)")
    chunks = run("chunks", "--json", image)
    assert chunks.exit_code == 1 and chunks.stderr == f"warning: {warning}\n"
    starts = [c["logical"] for c in json.loads(chunks.stdout)["chunks"]]
    assert starts == _chunk_starts(pristine, bytenr)
    assert len(starts) < len(_chunk_starts(pristine, sb.fields["chunk_root"]))
    assert _listed_files(image) == files  # the root tree is the superblock's
    assert _json("report", "--json", image)["filesystem"]["generation"] == sb.fields["generation"]
    big = run("map", "--json", image, "two/big")
    assert big.exit_code == 1 and "is not mapped by any chunk" in big.stderr
    assert json.loads(run("super", "--json", image).stdout)["warnings"] == [warning]


# --- the log tree ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A copy taken while mounted, after two commits and an fsync of a new file (in the log only), with the
    generations of the commits."""
    kernel = _load("kernel")
    work = tmp_path_factory.mktemp("backup-roots-log")
    copy = work / "copy.img"

    def fsync_and_copy(mnt: Path, image: Path) -> None:
        kernel.write_seeded_file(mnt / "fsynced", "fsynced", 20000)
        with open(mnt / "fsynced", "rb+") as f:
            os.fsync(f.fileno())
        _copy(image, copy)

    _, generations, _ = _image(work, (COMMITS[0], COMMITS[2]), fsync_and_copy)
    sb = DumpedSuper.of(copy)
    assert sb.fields["log_root"] != 0 and sb.fields["generation"] == generations[-1]
    assert _intact(copy, sb.slots[sb.slot_of("tree_root", generations[0])]["tree_root"][0], generations[0])
    return copy, generations, sb


@kernel_backed
def test_a_backup_root_does_not_replay_the_log(logged, tmp_path):
    copy, generations, sb = logged
    replayed = run("ls", "-R", "--json", copy, "--")  # the undamaged copy: the log holds the fsync'd file
    assert replayed.exit_code == 0 and "fsynced" in {e["path"] for e in json.loads(replayed.stdout)["entries"]}
    image = _damaged(copy, tmp_path / "damaged.img", sb.fields["root"])
    result = run("ls", "-R", "--json", image, "--")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert {e["path"]: e["size"] for e in doc["entries"] if e["type"] == "file"} == COMMITS[0]
    note = ("the log tree (changes fsync'd after the last commit) was not replayed (a backup root is in use, and "
            "the log continues the superblock's newer transaction)")
    assert doc["notes"] == [note] and len(doc["warnings"]) == 1
    assert f"using backup root slot {sb.slot_of('tree_root', generations[0])} instead" in doc["warnings"][0]
    assert result.stderr.splitlines() == [f"note: {note}", f"warning: {doc['warnings'][0]}"]


# --- the slot choice -------------------------------------------------------------------------------------


def _superblock(generation: int, chunk_generation: int, slots: list[tuple[int, int, int, int]]) -> Superblock:
    """A superblock of hand-made fields: its roots, and per backup slot (tree root, its generation, chunk
    root, its generation), levels 1 and 0."""
    backups = [Container(tree_root=t, tree_root_gen=tg, tree_root_level=1, chunk_root=c, chunk_root_gen=cg,
                         chunk_root_level=0) for t, tg, c, cg in slots]
    fields = Container(generation=generation, root=9000, root_level=1, chunk_root_generation=chunk_generation,
                       chunk_root=500, chunk_root_level=0, super_roots=backups)
    return Superblock(fields, b"")


def test_backup_slots_older_than_the_superblock_newest_first():
    """Slots are written in turn: here slot 2 is the last commit's, slot 3 was never written."""
    sb = _superblock(12, 11, [(7000, 10, 500, 11), (8000, 11, 500, 11), (9000, 12, 500, 11), (0, 0, 0, 0)])
    assert super_root(sb, ObjectId.ROOT_TREE) == SuperRoot(9000, 12, 1)
    assert backup_roots(sb, ObjectId.ROOT_TREE) == [SuperRoot(8000, 11, 1, 1), SuperRoot(7000, 10, 1, 0)]
    assert backup_roots(sb, ObjectId.CHUNK_TREE) == []  # every slot names the superblock's own chunk root


def test_a_root_several_slots_name_is_tried_once():
    """The chunk tree changes with the chunks only: older slots often name one chunk root."""
    sb = _superblock(12, 12, [(7000, 10, 400, 9), (8000, 11, 400, 9), (9000, 12, 500, 12), (6000, 9, 400, 9)])
    assert backup_roots(sb, ObjectId.CHUNK_TREE) == [SuperRoot(400, 9, 0, 0)]


def test_backup_slots_newer_than_the_superblock_are_not_tried():
    """A superblock older than its slots (written before a copy of it was restored) takes only older ones;
    the ring order does not matter, the generation does."""
    sb = _superblock(20, 20, [(1000, 21, 100, 21), (2000, 18, 200, 18), (3000, 19, 300, 17), (4000, 20, 400, 20)])
    assert [(r.slot, r.generation) for r in backup_roots(sb, ObjectId.ROOT_TREE)] == [(2, 19), (1, 18)]
    assert [(r.slot, r.bytenr, r.generation) for r in backup_roots(sb, ObjectId.CHUNK_TREE)] == [(1, 200, 18),
                                                                                                   (2, 300, 17)]
