"""The file-level commands (``map``, ``ls``, ``subvolumes``) against kernel-made fixtures.

Every fixture in ``tests/fixtures/files/*/`` holds images made by the kernel
and what independent tools said about them on a read-only mount (see
``tests/fixtures/README.md``): FIEMAP for every regular file, ``lstat`` over
the whole tree, ``btrfs subvolume list``. Nothing there comes from btrfsscan.

How btrfsscan's ``map`` is compared with FIEMAP (``fiemap_view``):

* holes are not extents in FIEMAP: they are the gaps; btrfsscan's extents
  must tile the file from 0 to the end of its last extent (or i_size);
* ``fe_physical`` is a btrfs *logical* address: ``disk_bytenr + offset`` for
  an uncompressed extent, ``disk_bytenr`` alone for a compressed one (FIEMAP
  leaves the clone offset out), 0 for an inline one;
* ``fe_length`` is ``num_bytes``; an inline extent's is ``ram_bytes`` rounded
  up to the sector size;
* flags: ``ENCODED`` = compressed, ``DATA_INLINE`` + ``NOT_ALIGNED`` = inline,
  ``UNWRITTEN`` = prealloc, ``LAST`` on the last extent only;
* adjacent extents merge, as the kernel's ``emit_fiemap_extent`` does, when
  they are contiguous both in the file and in the logical address space and
  have equal flags.

SHARED: btrfsscan's ``shared`` must be exactly FIEMAP's SHARED (the kernel's
``btrfs_is_data_extent_shared``: a bookend is one backref with count 2, not
shared; snapshot sharing is seen through the tree blocks). ``shared_bytes``
(map, per extent; ls, per file) is checked against a brute force over the
FIEMAP records of every file: the bytes of a file's logical ranges that
another (file, position) also maps (``fiemap_shared_bytes``; files with an
encoded extent are left out, FIEMAP gives no offset into those).

Device ranges are checked against an independent implementation of the
stripe arithmetic (``map_logical``, written from the kernel's
``btrfs_map_block`` for SINGLE/DUP/RAID1*/RAID0/RAID10) over the chunk items
``btrfs inspect-internal dump-tree`` printed (when the fixture has
``dump-tree.txt``; otherwise over btrfsscan's chunk map), and every mirror of
a range must hold the same bytes. ``refs`` is checked against the
EXTENT_ITEMs of ``dump-tree.txt``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import run, validate_documents

from btrfsscan.format.constants import FileExtentType
from btrfsscan.model.filemap import build_file_map
from btrfsscan.model.filesystem import Filesystem, open_filesystem
from btrfsscan.model.fs_tree import FileScanner
from btrfsscan.model.tables import FileTables
from btrfsscan.analysis.files import ListingTables, file_map_of, listing, scan_listing, subvolume_list
from btrfsscan.present.views.files import ls_document, map_document, subvolumes_document

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FILES = HERE / "fixtures" / "files"


def _fixture_dirs() -> list[Path]:
    return sorted(p.parent.parent for p in FILES.glob("*/expected/fiemap.json"))


def fixture_images(directory: Path) -> list[Path]:
    """The fixture's images: ``meta.json`` ``images`` (repo-relative), else ``dev*.img.xz``."""
    meta = directory / "expected" / "meta.json"
    if meta.exists():
        return [REPO / p for p in json.loads(meta.read_text())["images"]]
    return sorted(directory.glob("dev*.img.xz"))


FIXTURE_DIRS = _fixture_dirs()


def load_expected(directory: Path, name: str):
    return json.loads((directory / "expected" / name).read_text(encoding="utf-8"))


# --- the FIEMAP view of btrfsscan's map ----------------------------------------------


def round_up(value: int, to: int) -> int:
    return -(-value // to) * to


@dataclass
class FeExtent:
    logical: int
    physical: int
    length: int
    flags: frozenset

    def key(self):
        return (self.logical, self.physical, self.length, tuple(sorted(self.flags)))


def fiemap_view(extents: list[dict], shared, sectorsize: int) -> list[FeExtent]:
    """``map --json`` extents as FIEMAP reports them (``shared(extent) -> bool`` gives SHARED)."""
    out: list[FeExtent] = []
    for e in extents:
        if e["type"] == "hole":
            continue
        flags = set()
        if e["type"] == "inline":
            physical, length = 0, round_up(e["num_bytes"], sectorsize)
            flags |= {"DATA_INLINE", "NOT_ALIGNED"}
        else:
            physical = e["disk_bytenr"] + (e["offset"] if e["compression"] == "none" else 0)
            length = e["length"]
            if e["type"] == "prealloc":
                flags.add("UNWRITTEN")
            if shared(e):
                flags.add("SHARED")
        if e["compression"] != "none":
            flags.add("ENCODED")
        flags = frozenset(flags)
        prev = out[-1] if out else None
        if (prev is not None and prev.logical + prev.length == e["file_offset"]
                and prev.physical + prev.length == physical and prev.flags == flags):
            prev.length += length
        else:
            out.append(FeExtent(e["file_offset"], physical, length, flags))
    return out


def kernel_fiemap(records: list[dict]) -> list[FeExtent]:
    """FIEMAP records without LAST (checked separately)."""
    return [FeExtent(r["fe_logical"], r["fe_physical"], r["fe_length"], frozenset(r["flags"]) - {"LAST"})
            for r in records]


def fiemap_shared_bytes(fiemaps: dict[tuple[int, int], list[dict]], sectorsize: int) -> dict[tuple[int, int], int]:
    """Brute force, per (subvolume, inode) without encoded extents: the bytes of its FIEMAP logical ranges
    that another (file, file position) also maps, sector by sector."""
    owners: dict[int, set] = defaultdict(set)  # logical byte (by sector) -> {(file, position)}
    plain = {}
    for file, records in fiemaps.items():
        data = [r for r in records if not {"DATA_INLINE", "ENCODED", "DELALLOC"} & set(r["flags"])]
        plain[file] = not any("ENCODED" in r["flags"] for r in records)
        for r in data:
            assert r["fe_length"] % sectorsize == 0 and r["fe_physical"] % sectorsize == 0, (file, r)
            for at in range(0, r["fe_length"], sectorsize):
                owners[r["fe_physical"] + at].add((file, r["fe_logical"] + at))
    out = {}
    for file, records in fiemaps.items():
        if not plain[file]:
            continue
        out[file] = sum(sectorsize for r in records if not {"DATA_INLINE", "DELALLOC"} & set(r["flags"])
                        for at in range(0, r["fe_length"], sectorsize) if len(owners[r["fe_physical"] + at]) > 1)
    return out


def check_tiling(doc: dict) -> None:
    """The extents (holes included) follow each other from 0, up to at least i_size."""
    pos = 0
    for e in doc["extents"]:
        assert e["file_offset"] == pos, (doc["path"], e)
        assert e["length"] > 0, (doc["path"], e)
        pos += e["length"]
    assert pos >= doc["size"], (doc["path"], pos, doc["size"])
    holes = [e for e in doc["extents"] if e["type"] == "hole"]
    for e in holes:
        assert e["disk_bytenr"] == 0 and not e["device_ranges"] and not e["shared"], (doc["path"], e)


def check_against_fiemap(doc: dict, records: list[dict], sectorsize: int, shared: int | None = None) -> None:
    """``map --json`` against FIEMAP, SHARED flags included; ``shared``: the brute-force shared bytes."""
    path = doc["path"]
    check_tiling(doc)
    for e in doc["extents"]:
        if e["type"] in ("regular", "prealloc"):
            assert e["mappings"] >= 1 and e["refs"] >= 1, (path, e)
            assert 0 <= e["shared_bytes"] <= e["length"], (path, e)
        else:
            assert not e["shared"] and e["shared_bytes"] == 0, (path, e)
    if shared is not None:
        assert sum(e["shared_bytes"] for e in doc["extents"]) == shared, (path, doc["extents"])
    if records:
        assert "LAST" in records[-1]["flags"], (path, records)
        assert all("LAST" not in r["flags"] for r in records[:-1]), (path, records)
    want = [x.key() for x in kernel_fiemap(records)]
    got = [x.key() for x in fiemap_view(doc["extents"], lambda e: e["shared"], sectorsize)]
    assert got == want, f"{path}: btrfsscan {got} != FIEMAP {want}"


# --- independent stripe arithmetic --------------------------------------------------

_PROFILES = ("RAID0", "RAID1", "DUP", "RAID10", "RAID5", "RAID6", "RAID1C3", "RAID1C4")


@dataclass(frozen=True)
class ChunkInfo:
    logical: int
    length: int
    stripe_len: int
    type: frozenset
    num_stripes: int
    sub_stripes: int
    stripes: tuple  # ((devid, offset), ...)

    @property
    def profile(self) -> str:
        found = [p for p in _PROFILES if p in self.type]
        return found[0] if found else "SINGLE"


_CHUNK_KEY = re.compile(r"^\s*item \d+ key \(FIRST_CHUNK_TREE CHUNK_ITEM (\d+)\)")
_CHUNK_HEAD = re.compile(r"^\s*length (\d+) owner \d+ stripe_len (\d+) type (\S+)")
_CHUNK_NUM = re.compile(r"^\s*num_stripes (\d+) sub_stripes (\d+)")
_CHUNK_STRIPE = re.compile(r"^\s*stripe \d+ devid (\d+) offset (\d+)")


def chunks_from_dump_tree(text: str) -> list[ChunkInfo]:
    """CHUNK_ITEMs as ``btrfs inspect-internal dump-tree`` prints them."""
    chunks: dict[int, ChunkInfo] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _CHUNK_KEY.match(lines[i])
        if not m:
            i += 1
            continue
        logical = int(m.group(1))
        head = _CHUNK_HEAD.match(lines[i + 1])
        num = next(_CHUNK_NUM.match(line) for line in lines[i + 2:i + 4] if _CHUNK_NUM.match(line))
        stripes = []
        j = i + 2
        while len(stripes) < int(num.group(1)):
            s = _CHUNK_STRIPE.match(lines[j])
            if s:
                stripes.append((int(s.group(1)), int(s.group(2))))
            j += 1
        chunks[logical] = ChunkInfo(logical, int(head.group(1)), int(head.group(2)),
                                    frozenset(head.group(3).upper().split("|")) - {"SINGLE"}, int(num.group(1)),
                                    int(num.group(2)), tuple(stripes))
        i = j
    return [chunks[k] for k in sorted(chunks)]


_BG_BITS = {1: "DATA", 2: "SYSTEM", 4: "METADATA", 8: "RAID0", 16: "RAID1", 32: "DUP", 64: "RAID10", 128: "RAID5",
            256: "RAID6", 512: "RAID1C3", 1024: "RAID1C4"}  # BTRFS_BLOCK_GROUP_* (uapi/btrfs_tree.h)


def chunks_from_btrfsscan(fs: Filesystem) -> list[ChunkInfo]:
    out = []
    for c in fs.volume.chunk_map:
        names = {name for bit, name in _BG_BITS.items() if c.type & bit}
        out.append(ChunkInfo(c.logical, c.length, c.stripe_len, frozenset(names), c.num_stripes, c.sub_stripes,
                             tuple((s.devid, s.offset) for s in c.stripes)))
    return out


def map_logical(chunks: list[ChunkInfo], logical: int, length: int) -> list[tuple[int, int, int, int, int]]:
    """(logical, length, mirror, devid, physical) pieces, as the kernel's btrfs_map_block computes them."""
    out = []
    while length > 0:
        chunk = next((c for c in chunks if c.logical <= logical < c.logical + c.length), None)
        assert chunk is not None, f"no chunk maps logical {logical}"
        n = min(length, chunk.logical + chunk.length - logical)
        off = logical - chunk.logical
        profile = chunk.profile
        if profile in ("SINGLE", "DUP", "RAID1", "RAID1C3", "RAID1C4"):
            for mirror, (devid, base) in enumerate(chunk.stripes, 1):
                out.append((logical, n, mirror, devid, base + off))
        elif profile in ("RAID0", "RAID10"):
            sub = chunk.sub_stripes if profile == "RAID10" else 1
            factor = chunk.num_stripes // sub
            pos, end = off, off + n
            while pos < end:
                stripe_nr, in_stripe = divmod(pos, chunk.stripe_len)
                k = min(chunk.stripe_len - in_stripe, end - pos)
                index = (stripe_nr % factor) * sub
                row = stripe_nr // factor
                for m in range(sub):
                    devid, base = chunk.stripes[index + m]
                    out.append((chunk.logical + pos, k, m + 1, devid, base + row * chunk.stripe_len + in_stripe))
                pos += k
        elif profile in ("RAID5", "RAID6"):
            # btrfs_map_block for a read: data stripe i of full stripe (row) r lies on stripe (r + i) % n,
            # the parity rotating with it; a data block has one copy (mirror 1)
            data_stripes = chunk.num_stripes - (1 if profile == "RAID5" else 2)
            pos, end = off, off + n
            while pos < end:
                stripe_nr, in_stripe = divmod(pos, chunk.stripe_len)
                k = min(chunk.stripe_len - in_stripe, end - pos)
                row, index = divmod(stripe_nr, data_stripes)
                devid, base = chunk.stripes[(row + index) % chunk.num_stripes]
                out.append((chunk.logical + pos, k, 1, devid, base + row * chunk.stripe_len + in_stripe))
                pos += k
        else:
            pytest.fail(f"{profile} data chunks are not covered by this test's stripe arithmetic")
        logical += n
        length -= n
    return out


def expected_device_ranges(chunks: list[ChunkInfo], e: dict) -> list[tuple[int, int, int, int, int]]:
    """(file_offset, length, mirror, devid, physical) of one extent's data on the devices."""
    if e["type"] not in ("regular", "prealloc"):
        return []
    if e["compression"] == "none":
        logical, length = e["disk_bytenr"] + e["offset"], e["num_bytes"]
        return sorted((e["file_offset"] + (lo - logical), n, m, d, p)
                      for lo, n, m, d, p in map_logical(chunks, logical, length))
    return sorted((e["file_offset"], n, m, d, p) for _, n, m, d, p in map_logical(chunks, e["disk_bytenr"],
                                                                                 e["disk_num_bytes"]))


def check_device_ranges(doc: dict, chunks: list[ChunkInfo], fs: Filesystem | None = None) -> int:
    """Device ranges agree with the stripe arithmetic; every mirror holds the same bytes. Returns #ranges."""
    n = 0
    for e in doc["extents"]:
        got = sorted((r["file_offset"], r["length"], r["mirror"], r["devid"], r["physical"])
                     for r in e["device_ranges"])
        assert got == expected_device_ranges(chunks, e), (doc["path"], e)
        n += len(got)
        if fs is None:
            continue
        by_piece = defaultdict(list)
        for file_offset, length, mirror, devid, physical in got:
            by_piece[(file_offset, length)].append((mirror, devid, physical))
        for (file_offset, length), copies in by_piece.items():
            if len(copies) > 1:
                blobs = {fs.volume.devices[d].image.pread(p, length) for _, d, p in copies}
                assert len(blobs) == 1, (doc["path"], file_offset, copies)
    return n


_EXTENT_ITEM = re.compile(r"^\s*item \d+ key \((\d+) EXTENT_ITEM (\d+)\).*\n\s*refs (\d+) gen \d+ flags (\S+)", re.M)


def extent_refs_from_dump_tree(text: str) -> dict[int, int]:
    """bytenr -> refs of every data EXTENT_ITEM in ``dump-tree.txt``."""
    return {int(m.group(1)): int(m.group(3)) for m in _EXTENT_ITEM.finditer(text) if "DATA" in m.group(4)}


# --- opened fixtures --------------------------------------------------------------------


@dataclass
class Opened:
    name: str
    directory: Path
    images: list[Path]
    fs: Filesystem
    tables: FileTables
    listing_tables: ListingTables
    fiemap: dict
    listing: list
    subvolumes: list
    dump_tree: str | None
    _ls: list | None = field(default=None, repr=False)
    _maps: dict | None = field(default=None, repr=False)

    @property
    def sectorsize(self) -> int:
        return self.fs.superblock.sectorsize

    def ls_entries(self) -> list[dict]:
        if self._ls is None:
            self._ls = ls_document(listing(self.fs, ".", recursive=True, tables=self.listing_tables)).json()["entries"]
        return self._ls

    def map_docs(self) -> dict[str, dict]:
        """``map --json`` (without warnings/partial) of every file FIEMAP was asked about, by path."""
        if self._maps is None:
            where = {r["path"]: (r["subvol"], r["st_ino"]) for r in self.listing}
            self._maps = {path: map_document(build_file_map(self.fs, *where[path], path, self.tables)).json()
                          for path in self.fiemap}
        return self._maps

    def chunks(self) -> list[ChunkInfo]:
        if self.dump_tree is not None:
            return chunks_from_dump_tree(self.dump_tree)
        return chunks_from_btrfsscan(self.fs)


@pytest.fixture(scope="module", params=[d.name for d in FIXTURE_DIRS])
def fx(request) -> Opened:
    directory = FILES / request.param
    images = fixture_images(directory)
    missing = [str(p) for p in images if not p.exists()]
    if not images or missing:
        pytest.skip(f"fixture {request.param}: images missing ({', '.join(missing) or 'none listed'})")
    fs = open_filesystem(images)
    tables = FileScanner(fs.reader, fs.warnings).scan(fs.subvolumes.live())
    dump = directory / "expected" / "dump-tree.txt"
    opened = Opened(request.param, directory, images, fs, tables, scan_listing(fs),
                    load_expected(directory, "fiemap.json"), load_expected(directory, "listing.json"),
                    load_expected(directory, "subvolumes.json"), dump.read_text() if dump.exists() else None)
    yield opened
    fs.close()


def test_fixtures_exist():
    assert FIXTURE_DIRS, f"no file fixtures under {FILES}"


# --- map ----------------------------------------------------------------------------------


def test_map_matches_fiemap(fx: Opened):
    """Every regular file: map --json, merged like FIEMAP, equals what FIEMAP reported."""
    where = {r["path"]: (r["subvol"], r["st_ino"]) for r in fx.listing}
    ls = {e["path"]: e for e in fx.ls_entries()}
    docs = fx.map_docs()
    shared = fiemap_shared_bytes({where[path]: records for path, records in fx.fiemap.items()}, fx.sectorsize)
    for path, records in fx.fiemap.items():
        subvol, ino = where[path]
        doc = docs[path]
        assert (doc["path"], doc["subvolume"], doc["inode"]) == (path, subvol, ino)
        check_against_fiemap(doc, records, fx.sectorsize, shared.get((subvol, ino)))
        check_ls_against_map(ls[path], doc)
    assert not fx.fs.warnings, fx.fs.warnings.messages()


def test_map_resolves_paths(fx: Opened):
    """The command's path resolution (top level, --subvol, --inode) finds the inode find/stat saw."""
    files = [r for r in fx.listing if r["type"] == "file"]
    sample = files if len(files) <= 150 else files[:: len(files) // 150]
    subvol_paths = {s.id: s.path for s in fx.fs.subvolumes.live()}
    for r in sample:
        doc = map_document(file_map_of(fx.fs, fx.tables, r["path"])).json()
        assert (doc["path"], doc["subvolume"], doc["inode"], doc["size"]) == (r["path"], r["subvol"], r["st_ino"],
                                                                              r["size"])
        by_inode = map_document(file_map_of(fx.fs, fx.tables, inode=(r["subvol"], r["st_ino"]))).json()
        assert by_inode["extents"] == doc["extents"]
        base = subvol_paths[r["subvol"]]
        if base and r["path"].startswith(base + "/"):
            rel = r["path"][len(base) + 1:]
            via_subvol = map_document(file_map_of(fx.fs, fx.tables, rel, subvol=str(r["subvol"]))).json()
            assert via_subvol == doc
            via_path = map_document(file_map_of(fx.fs, fx.tables, rel, subvol=base)).json()
            assert via_path == doc


def test_map_device_ranges(fx: Opened):
    """Device ranges follow the chunk items (dump-tree when present); mirrors hold equal bytes."""
    chunks = fx.chunks()
    if fx.dump_tree is not None:
        assert sorted(chunks, key=lambda c: c.logical) == sorted(chunks_from_btrfsscan(fx.fs), key=lambda c: c.logical)
    checked = 0
    for doc in fx.map_docs().values():
        checked += check_device_ranges(doc, chunks, fx.fs)
    if any(r for r in fx.fiemap.values()):
        assert checked > 0


def test_map_refs_match_extent_tree_dump(fx: Opened, dump_tree):
    refs = extent_refs_from_dump_tree(fx.dump_tree or dump_tree("files", fx.name))
    checked = 0
    for path, doc in fx.map_docs().items():
        for e in doc["extents"]:
            if e["type"] in ("regular", "prealloc"):
                assert e["refs"] == refs[e["disk_bytenr"]], (path, e)
                checked += 1
    assert checked


# --- ls -----------------------------------------------------------------------------------


def check_listing(entries: list[dict], expected: list[dict]) -> None:
    """``ls -R --json`` entries against ``capture.listing``: same paths, inodes, subvolumes, types,
    modes, links and sizes, in the same order (parents first, names sorted by bytes)."""
    got = [(e["path"], e["subvolume"], e["inode"], e["type"], e["mode"], e["nlink"], e["size"]) for e in entries]
    want = [(r["path"], r["subvol"], r["st_ino"], r["type"], r["st_mode"], r["nlink"], r["size"]) for r in expected]
    assert set(got) == set(want), (sorted(set(got) - set(want))[:10], sorted(set(want) - set(got))[:10])
    assert got == want


def check_ls_against_map(entry: dict, doc: dict) -> None:
    """ls's extent count and shared bytes are what map shows for the same file."""
    data = [e for e in doc["extents"] if e["type"] != "hole"]
    assert entry["extents"] == len(data), (entry, doc)
    assert entry["shared_bytes"] == sum(e["shared_bytes"] for e in data), (entry, doc)
    assert (entry["size"], entry["subvolume"], entry["inode"]) == (doc["size"], doc["subvolume"], doc["inode"])


def test_ls_matches_listing(fx: Opened):
    """ls -R --json lists exactly the entries find/lstat saw, in the same order."""
    check_listing(fx.ls_entries(), fx.listing)
    assert not fx.fs.warnings, fx.fs.warnings.messages()


def test_cli_ls_streams_the_kernels_listing(fx: Opened):
    """``ls -R --json`` through the CLI (entries written as they are listed): the entries find/lstat saw, in
    order; the text form ends with their count."""
    result = run("ls", "-R", "--json", *fx.images, "--")
    assert result.exit_code == 0, result.stderr
    (doc,) = validate_documents("ls", result.stdout)
    check_listing(doc["entries"], fx.listing)
    assert result.stdout.count("\n") == len(fx.listing) + 7  # one entry a line inside the indented document
    text = run("ls", "-R", "--wide", *fx.images, "--")
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[-1] == f"({len(fx.listing)} entries)" and len(lines) == len(fx.listing) + 6


def test_ls_directory_and_file(fx: Opened):
    """ls PATH (no -R): a directory's entries, or the file itself."""
    by_parent = defaultdict(list)
    for r in fx.listing[1:]:
        parent = r["path"].rsplit("/", 1)[0] if "/" in r["path"] else "."
        by_parent[parent].append(r["path"])
    dirs = [r["path"] for r in fx.listing if r["type"] == "dir"][:40]
    for d in dirs:
        entries = listing(fx.fs, d, recursive=False, tables=fx.listing_tables).entries
        assert [e.path for e in entries] == by_parent.get(d, []), d
    files = [r for r in fx.listing if r["type"] != "dir"][:20]
    ls = {e["path"]: e for e in fx.ls_entries()}
    for r in files:
        (entry,) = listing(fx.fs, r["path"], recursive=False, tables=fx.listing_tables).entries
        assert (entry.path, entry.inode, entry.extents, entry.shared_bytes) == (
            r["path"], r["st_ino"], ls[r["path"]]["extents"], ls[r["path"]]["shared_bytes"])


# --- subvolumes ---------------------------------------------------------------------------


def test_subvolumes_match(fx: Opened):
    check_subvolumes(subvolumes_document(subvolume_list(fx.fs)).json()["subvolumes"], fx.subvolumes)


def check_subvolumes(doc: list[dict], expected: list[dict], generations: bool = True) -> None:
    """``subvolumes --json`` against ``capture.subvolumes`` (which leaves the top level out); ``generations``
    False where the mount captured committed a transaction of its own (a log replay)."""
    got = {s["id"]: s for s in doc}
    assert got[5]["path"] == "." and got[5]["parent_id"] is None
    assert set(got) == {r["id"] for r in expected} | {5}
    for r in expected:
        s = got[r["id"]]
        assert s["deleted"] == r["deleted"], r
        if r["deleted"]:
            assert s["path"] is None, s
            continue
        for key in ("path", "parent_id", "uuid", "parent_uuid", "received_uuid", "default"):
            assert s[key] == r[key], (key, s, r)
        if r["readonly"] is not None:
            assert s["readonly"] == r["readonly"], (s, r)
        assert s["otransid"] == r["cgen"], (s, r)
        if generations:
            assert s["generation"] == r["gen"], (s, r)
    assert sum(s["default"] for s in doc) == 1


# --- the command line ---------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("BTRFSSCAN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "btrfsscan", *args], capture_output=True, text=True, env=env,
                          cwd=REPO)


@pytest.fixture(scope="module")
def subvols_image(tmp_path_factory) -> Path:
    """The ``subvols`` fixture decompressed once (the CLI then opens a raw image)."""
    sys.path.insert(0, str(HERE / "fixtures"))
    try:
        import kernel  # tests/fixtures/kernel.py
    finally:
        sys.path.remove(str(HERE / "fixtures"))
    src = FILES / "subvols" / "dev0.img.xz"
    if not src.exists():
        pytest.skip("the subvols fixture is missing")
    return kernel.decompress_image(src, tmp_path_factory.mktemp("subvols") / "dev0.img")


@pytest.mark.parametrize("path, component", [
    ("a/nope/x", "a/nope"),
    ("nope", "nope"),
    ("snap1/nested/x", "snap1/nested/x"),
    ("a/f1/x", "a/f1"),
])
def test_cli_map_missing_path(subvols_image, path, component):
    res = _cli("map", str(subvols_image), path)
    assert res.returncode == 2, res
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("btrfsscan: error: ") and component in lines[0], lines[0]


@pytest.mark.parametrize("path, words", [
    ("a/dir", "is a directory"),
    ("a", "is a directory"),
    ("snap1/nested", "is a directory"),
    ("a/dir/f2.symlink", "is a symbolic link"),
])
def test_cli_map_not_a_regular_file(subvols_image, path, words):
    res = _cli("map", "--json", str(subvols_image), path)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.splitlines()) == 1 and words in res.stderr and path in res.stderr, res.stderr


def test_cli_map_json(subvols_image):
    fs = open_filesystem([subvols_image])
    try:
        tables = FileScanner(fs.reader, fs.warnings).scan(fs.subvolumes.live())
        want = map_document(file_map_of(fs, tables, "snap1/f1")).json()
    finally:
        fs.close()
    for args in (["snap1/f1"], ["--subvol", "snap1", "f1"], ["--subvol", "259", "/f1"], ["--inode", "259:257"]):
        res = _cli("map", "--json", str(subvols_image), *args)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc.pop("warnings") == [] and doc.pop("partial") is False
        assert doc == want, args
    res = _cli("map", str(subvols_image), "snap1/f1")
    assert res.returncode == 0 and "snap1/f1" in res.stdout and "devid 1 @" in res.stdout, res


def test_cli_ls_and_subvolumes(subvols_image):
    res = _cli("ls", "-R", "--json", str(subvols_image))
    assert res.returncode == 0, res.stderr
    entries = json.loads(res.stdout)["entries"]
    want = load_expected(FILES / "subvols", "listing.json")
    assert [(e["path"], e["inode"], e["subvolume"]) for e in entries] == [
        (r["path"], r["st_ino"], r["subvol"]) for r in want]
    res = _cli("ls", "--json", str(subvols_image), "a")
    assert res.returncode == 0, res.stderr
    assert [e["path"] for e in json.loads(res.stdout)["entries"]] == ["a/dir", "a/f1", "a/f2", "a/f3", "a/nested",
                                                                      "a/small"]
    res = _cli("ls", str(subvols_image), "snap1")
    assert res.returncode == 0 and "nested" in res.stdout and "-rw-r--r--" in res.stdout, res
    res = _cli("ls", str(subvols_image), "a/missing")
    assert res.returncode == 2 and "a/missing" in res.stderr and len(res.stderr.splitlines()) == 1
    res = _cli("subvolumes", "--json", str(subvols_image))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert {s["id"] for s in doc["subvolumes"]} == {5} | {r["id"] for r in load_expected(FILES / "subvols",
                                                                                         "subvolumes.json")}
    res = _cli("subvolumes", str(subvols_image))
    assert res.returncode == 0 and "group/snap2-ro" in res.stdout


def test_cli_map_usage_errors(subvols_image):
    res = _cli("map", "--inode", "259", str(subvols_image))
    assert res.returncode == 2 and "SUBVOL:INO" in res.stderr
    res = _cli("map", "--subvol", "nosuch", str(subvols_image), "f1")
    assert res.returncode == 2 and "nosuch" in res.stderr and len(res.stderr.splitlines()) == 1


_XATTR = re.compile(r"key \((\d+) XATTR_ITEM \d+\)[^\n]*\n(?:[^\n]*\n){2}\s+name: ([^\n]*)")


def test_map_xattr_names_match_dump_tree(fixture_images, dump_tree):
    """XATTR_ITEM names (btrfs.compression set by `btrfs property set`) against dump-tree."""
    expected: dict[int, list[str]] = {}
    for ino, name in _XATTR.findall(dump_tree("files", "compress")):
        expected.setdefault(int(ino), []).append(name)
    assert expected, "the compress fixture sets compression properties"
    fs = open_filesystem(list(fixture_images("files", "compress").values()))
    try:
        tables = FileScanner(fs.reader, fs.warnings).scan(fs.subvolumes.live())
        regular = tables.regular_inodes()
        for ino in regular["ino"][regular["subvol"] == 5].tolist():
            file_map = build_file_map(fs, 5, ino, str(ino), tables)
            assert file_map.xattrs == sorted(expected.get(ino, [])), ino
    finally:
        fs.close()


def test_map_marks_copies_on_a_missing_device(fixture_images):
    """raid1-files given without its second image: every copy on that device (its devid from dump-super
    of that image) is listed and marked missing, in JSON and in the table; the others are not."""
    from support import run

    images = fixture_images("files", "raid1-files")
    dump = (FILES / "raid1-files" / "expected" / "dump-super.dev1.txt").read_text()
    missing_devid = int(re.search(r"^dev_item\.devid\s+(\d+)", dump, re.M).group(1))
    fiemap = load_expected(FILES / "raid1-files", "fiemap.json")
    paths = [p for p, records in fiemap.items() if any("DATA_INLINE" not in r["flags"] for r in records)]
    assert paths
    marked = 0
    for path in paths[:6]:
        result = run("map", "--json", images[0], path)
        assert result.exit_code == 1, result.stderr  # degraded: partial, with the warning
        doc = json.loads(result.stdout)
        for e in doc["extents"]:
            for r in e["device_ranges"]:
                assert r["missing"] == (r["devid"] == missing_devid), (path, r)
                marked += r["missing"]
            if e["type"] == "regular":
                assert {r["devid"] for r in e["device_ranges"]} == {1, 2}, (path, e)  # RAID1: both copies listed
        table = run("map", "--wide", images[0], path)
        copies = re.findall(r"devid (\d+) @ \d+( <missing>)?", table.stdout)
        assert copies and all(bool(mark) == (int(devid) == missing_devid) for devid, mark in copies), table.stdout
    assert marked > 0
