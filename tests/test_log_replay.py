"""Log replay against the kernel: a copy taken while mounted, after fsync (``log_root`` set).

The fixture ``files/log-replay`` (``tests/fixtures/build_logs.py``) holds the
copy and what the kernel showed of it: ``expected/replayed`` after a
read-write mount (the kernel replays the log) and ``expected/committed``
after a ``ro,rescue=nologreplay`` mount. ``ls -R``, ``map`` (every file's
blocks against FIEMAP, and its bytes read through the map against the
kernel's sha256) and ``report``'s per-inode pages (against fincore) must
equal the replayed view by default and the committed view with
``--no-log-replay``. Damaged and unsupported logs: a warning, a partial
result, the committed view of that subvolume, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIXTURE = HERE / "fixtures" / "files" / "log-replay"
EXPECTED = FIXTURE / "expected"
sys.path.insert(0, str(HERE / "fixtures"))
import kernel  # noqa: E402  tests/fixtures/kernel.py

pytestmark = pytest.mark.skipif(not (FIXTURE / "dev0.img.xz").exists(), reason="log-replay fixture not built")
BLOCK = 4096


def _load(view: str, name: str):
    return json.loads((EXPECTED / view / f"{name}.json").read_text())


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("BTRFSSCAN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "btrfsscan", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    return kernel.decompress_image(FIXTURE / "dev0.img.xz", tmp_path_factory.mktemp("log") / "dev0.img")


def _flags(view: str) -> list[str]:
    return [] if view == "replayed" else ["--no-log-replay"]


def _listing(img: Path, *extra: str) -> tuple[list[dict], subprocess.CompletedProcess]:
    res = _cli("ls", "-R", "--json", *extra, str(img))
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout)["entries"], res


def _kernel_rows(view: str) -> list[tuple]:
    return [(r["path"], r["subvol"], r["st_ino"], r["type"], r["st_mode"], r["nlink"], r["size"])
            for r in _load(view, "listing")]


def _our_rows(entries: list[dict]) -> list[tuple]:
    return [(e["path"], e["subvolume"], e["inode"], e["type"], e["mode"], e["nlink"], e["size"]) for e in entries]


def test_the_copy_has_a_log():
    text = (EXPECTED / "dump-super.txt").read_text()
    assert int(re.search(r"^log_root\s+(\d+)", text, re.M).group(1)) != 0
    assert _kernel_rows("replayed") != _kernel_rows("committed")  # the log changes what is seen


def test_dir_log_items_parse_through_the_item_table(image):
    """Every DIR_LOG_INDEX range of the log trees, read by btrfsscan through ``parse_item``, as dump-tree prints it."""
    from btrfsscan.errors import Warnings
    from btrfsscan.format.constants import ItemType
    from btrfsscan.format.items import DirLogItem, parse_item
    from btrfsscan.model.filesystem import open_filesystem
    from btrfsscan.model.log_replay import read_log_trees

    text = (EXPECTED / "dump-tree.txt").read_text()
    want = sorted((int(oid), int(start), int(end)) for oid, start, end in re.findall(
        r"key \((\d+) DIR_LOG_INDEX (\d+)\) itemoff \d+ itemsize 8\n\t\tdir log end (\d+)", text))
    fs = open_filesystem([image])
    try:
        warnings = Warnings()
        records = [(key[0], parse_item(key, data, "log")) for log in read_log_trees(fs.reader, warnings).values()
                   for key, data in log if key[1] == ItemType.DIR_LOG_INDEX]
    finally:
        fs.close()
    assert not warnings and len(want) >= 4
    assert all(isinstance(r, DirLogItem) for _, r in records)
    assert sorted((oid, r.start, r.end) for oid, r in records) == want


@pytest.mark.parametrize("view", ["replayed", "committed"])
def test_ls_matches_the_kernel(image, view):
    entries, res = _listing(image, *_flags(view))
    assert res.returncode == 0, res.stderr
    assert _our_rows(entries) == _kernel_rows(view)
    notes = [line for line in res.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "warning" not in res.stderr
    assert json.loads(res.stdout)["notes"] == [notes[0].removeprefix("note: ")]  # the same note in the JSON
    if view == "replayed":
        assert f"{_logged_inodes()} inode(s) from the log" in notes[0]
    else:
        assert "not replayed" in notes[0]


def _logged_inodes() -> int:
    """INODE_ITEMs in the log trees, counted in btrfs-progs' dump-tree of the copy."""
    text = (EXPECTED / "dump-tree.txt").read_text()
    logs = re.split(r"^log tree key ", text, flags=re.M)[1:]
    return sum(len(re.findall(r"item \d+ key \(\d+ INODE_ITEM 0\)", re.split(r"^\S.*tree key", t, flags=re.M)[0]))
               for t in logs)


def _kernel_blocks(extents: list[dict], size: int) -> dict[int, object]:
    """file block -> logical address (or 'inline') from FIEMAP, inside i_size."""
    out = {}
    for e in extents:
        for off in range(e["fe_logical"], min(e["fe_logical"] + e["fe_length"], -(-size // BLOCK) * BLOCK), BLOCK):
            out[off] = "inline" if "DATA_INLINE" in e["flags"] else e["fe_physical"] + (off - e["fe_logical"])
    return out


def _our_blocks(extents: list[dict]) -> dict[int, object]:
    out = {}
    for e in extents:
        if e["type"] == "inline":
            out[e["file_offset"]] = "inline"
        elif e["type"] in ("regular", "prealloc"):
            assert e["compression"] == "none"
            for off in range(e["file_offset"], e["file_offset"] + e["length"], BLOCK):
                out[off] = e["disk_bytenr"] + e["offset"] + (off - e["file_offset"])
    return out


def _content(img: Path, doc: dict) -> bytes:
    """The file's bytes read from the image through ``map``'s device ranges (holes are zeros)."""
    data = bytearray(doc["size"])
    with open(img, "rb") as f:
        for e in doc["extents"]:
            for r in e["device_ranges"]:
                if r["mirror"] != 1:
                    continue
                f.seek(r["physical"])
                piece = f.read(r["length"])
                data[r["file_offset"]:r["file_offset"] + len(piece)] = piece
    return bytes(data[:doc["size"]])


@pytest.mark.parametrize("view", ["replayed", "committed"])
def test_map_matches_fiemap_and_content(image, view):
    fiemap, sums = _load(view, "fiemap"), _load(view, "sha256")
    sizes = {r["path"]: r["size"] for r in _load(view, "listing")}
    checked = 0
    for path, extents in fiemap.items():
        res = _cli("map", "--json", *_flags(view), str(image), path)
        assert res.returncode == 0, (path, res.stderr)
        doc = json.loads(res.stdout)
        assert doc["size"] == sizes[path]
        ours = _our_blocks(doc["extents"])
        assert ours == _kernel_blocks(extents, sizes[path]), path
        if "inline" not in ours.values():
            assert hashlib.sha256(_content(image, doc)).hexdigest() == sums[path], path
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("view", ["replayed", "committed"])
def test_report_per_inode_matches_fincore(image, view):
    res = _cli("report", "--json", *_flags(view), str(image))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout.splitlines()[0])
    pages = {(r["subvol"], r["st_ino"]): r["pages"] for r in _load(view, "fincore")}
    assert doc["totals"]["per_inode"]["pages"] == sum(pages.values())
    assert doc["totals"]["inodes"] == len(pages)
    assert any("log tree" in n for n in doc["filesystem"]["notes"])


# --- damaged and unsupported logs ---------------------------------------------------


def _log_leaf(subvol: int) -> int:
    """The log tree leaf of ``subvol``, from btrfs-progs' dump-tree of the copy."""
    text = (EXPECTED / "dump-tree.txt").read_text()
    match = re.search(rf"log tree key \(TREE_LOG ROOT_ITEM {subvol}\)\s*\nleaf (\d+) ", text)
    return int(match.group(1))


def _copies(logical: int) -> list[int]:
    """Device offsets of every copy of a metadata block, from the chunk items in btrfs-progs' dump-tree
    (log blocks have no extent item, so btrfs-map-logical does not answer for them)."""
    chunks: list[list] = []  # [start, length, [stripe offsets]]
    for line in (EXPECTED / "dump-tree.txt").read_text().splitlines():
        if m := re.search(r"key \(FIRST_CHUNK_TREE CHUNK_ITEM (\d+)\)", line):
            chunks.append([int(m.group(1)), 0, []])
        elif chunks and (m := re.match(r"\s+length (\d+) ", line)):
            chunks[-1][1] = int(m.group(1))
        elif chunks and (m := re.match(r"\s+stripe \d+ devid 1 offset (\d+)", line)):
            chunks[-1][2].append(int(m.group(1)))
    for start, length, stripes in chunks:
        if start <= logical < start + length:
            return [offset + logical - start for offset in stripes]
    raise AssertionError(f"no chunk holds {logical}")


def _rewrite_block(img: Path, logical: int, change) -> None:
    """Apply ``change(bytearray)`` to every copy of a tree block, checksum recomputed (crc32c)."""
    from btrfsscan.format.checksum import crc32c

    with open(img, "r+b") as f:
        for physical in _copies(logical):
            f.seek(physical)
            block = bytearray(f.read(16384))
            change(block)
            if change is not _smash:
                block[0:32] = crc32c(bytes(block[32:])).to_bytes(4, "little") + bytes(28)
            f.seek(physical)
            f.write(block)


def _smash(block: bytearray) -> None:
    block[200:264] = bytes(64)  # item payload bytes zeroed, checksum left wrong


@pytest.fixture
def mutable(image, tmp_path) -> Path:
    return Path(shutil.copy(image, tmp_path / "dev0.img"))


def _subvol_rows(rows: list[tuple], subvol: int) -> list[tuple]:
    return [r for r in rows if r[1] == subvol and r[0] != "sv"]


def test_damaged_log_block_shows_that_subvolume_committed(mutable):
    _rewrite_block(mutable, _log_leaf(5), _smash)
    entries, res = _listing(mutable)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "log tree of subvolume 5 not replayed" in res.stderr
    ours = _our_rows(entries)
    assert _subvol_rows(ours, 5) == _subvol_rows(_kernel_rows("committed"), 5)
    assert _subvol_rows(ours, 256) == _subvol_rows(_kernel_rows("replayed"), 256)
    assert json.loads(_cli("ls", "-R", "--json", str(mutable)).stdout)["partial"] is True


def test_unsupported_log_item_is_a_warning(mutable):
    """The last item of subvolume 256's log (an EXTENT_CSUM) retyped to 200: still in key order, not replayable."""
    from btrfsscan.format import fastparse

    header, item = fastparse.HEADER.size, fastparse.ITEM.size

    def retype(block: bytearray) -> None:
        nritems = int.from_bytes(block[fastparse.HEADER.size - 5:fastparse.HEADER.size - 1], "little")
        assert nritems == 8
        block[header + (nritems - 1) * item + 8] = 200  # btrfs_disk_key.type of the last item

    _rewrite_block(mutable, _log_leaf(256), retype)
    entries, res = _listing(mutable)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert re.search(r"warning: log tree of subvolume 256: item .* is not replayed", res.stderr)
    assert _our_rows(entries) == _kernel_rows("replayed")  # everything else replayed


# --- the kernel, live ---------------------------------------------------------------


def _no_kernel() -> str | None:
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        return "needs root and loop devices to mount a copy (the kernel replays the log)"
    return None


@pytest.mark.kernel
@pytest.mark.skipif(_no_kernel() is not None, reason=_no_kernel() or "")
def test_kernel_replays_what_the_fixture_says(image, tmp_path):
    """The committed expectations still hold on this kernel: mount a copy read-write and compare."""
    import capture  # tests/fixtures/capture.py

    copy = Path(shutil.copy(image, tmp_path / "rw.img"))
    os.environ["BLKID_FILE"] = "/dev/null"
    kernel.wait_fsid_unused(json.loads((EXPECTED / "meta.json").read_text())["fsid"])
    with kernel.loop_devices([copy]) as devs, kernel.mounted(devs[0]) as mnt:
        rows = [(r["path"], r["subvol"], r["st_ino"], r["type"], r["st_mode"], r["nlink"], r["size"])
                for r in capture.listing(mnt)]
    assert rows == _kernel_rows("replayed")
    entries, res = _listing(image)
    assert _our_rows(entries) == rows


def _by_dir_brute_force(view: str, depth: int) -> dict[tuple[int, str], tuple[int, int]]:
    """{(subvol, relpath): (files, per-inode pages)} from the kernel's listing of ``view``: a regular inode lies in
    the directory of its link whose parent has the smallest inode number (its first INODE_REF), its pages are
    ceil(size / 4096), a directory sums every inode below it (deeper directories cut at ``depth``)."""
    listing = _load(view, "listing")
    by_path = {r["path"]: r for r in listing}
    base = {r["subvol"]: ("" if r["path"] == "." else r["path"]) for r in listing
            if r["type"] == "dir" and r["st_ino"] == 256}  # each subvolume's root directory
    links: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for r in listing:
        if r["type"] == "file":
            parent = r["path"].rpartition("/")[0] or "."
            links.setdefault((r["subvol"], r["st_ino"]), []).append((by_path[parent]["st_ino"], r["path"]))
    figures: dict[tuple[int, str], list[int]] = {}
    for (sv, _), paths in links.items():
        path = min(paths)[1]
        record = by_path[path]
        rel = path[len(base[sv]) + 1:] if base[sv] else path
        dirs = rel.split("/")[:-1]
        for d in range(min(depth, len(dirs)) + 1):
            f = figures.setdefault((sv, "/".join(dirs[:d])), [0, 0])
            f[0] += record["nlink"]
            f[1] += -(-record["size"] // BLOCK)
    return {key: (files, pages) for key, (files, pages) in figures.items()}


@pytest.mark.parametrize("view", ["replayed", "committed"])
def test_report_by_dir_matches_the_kernel_listing(image, view):
    """``report --by-dir``: the replayed inodes' names come from the log (the synthetic leaves' link rows)."""
    res = _cli("report", "--by-dir", "3", "--top", "10000", "--json", *_flags(view), str(image))
    assert res.returncode == 0, res.stderr
    entries = json.loads(res.stdout.splitlines()[0])["by_dir"]["entries"]
    assert not [e for e in entries if e["kind"] in ("rest", "unreachable")]
    got = {(e["subvol"], e["relpath"]): (e["files"], e["pages"]["per_inode"]) for e in entries}
    want = _by_dir_brute_force(view, 3)
    assert got == want
    if view == "replayed":  # the log adds a directory and files in it
        assert want != _by_dir_brute_force("committed", 3)


# --- implausible log items: the bulk readers' rules and findings ----------------------------------


def _log_item(block: bytearray, slot: int) -> tuple[int, int, int]:
    """(offset of btrfs_item ``slot``, offset of its payload, its size) in a leaf."""
    from btrfsscan.format import fastparse

    at = fastparse.HEADER.size + slot * fastparse.ITEM.size
    offset, size = struct.unpack_from("<II", block, at + 17)
    return at, fastparse.HEADER.size + offset, size


def test_implausible_logged_inode_is_a_finding_and_its_subvolume_committed(mutable):
    """Subvolume 256's logged INODE_ITEM of s2 (slot 3) with mode 0: the finding the fs-tree scan gives, naming
    the log leaf and slot; the log's ref of s2 then names no inode, so that subvolume shows its last commit."""
    from test_damage import _offsets

    from btrfsscan.format import fastparse

    mode_at = _offsets(fastparse.INODE_ITEM)["mode"]
    leaf = _log_leaf(256)
    _rewrite_block(mutable, leaf, lambda b: struct.pack_into("<I", b, _log_item(b, 3)[1] + mode_at, 0))
    entries, res = _listing(mutable)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert (f"warning: log tree of subvolume 256: INODE_ITEM of inode 258 implausible: mode 0 names no file type, "
            f"skipped (slot 3) (log tree leaf {leaf})") in res.stderr
    assert "log tree of subvolume 256 not replayed" in res.stderr
    ours = _our_rows(entries)
    assert [r for r in ours if r[1] == 256] == [r for r in _kernel_rows("committed") if r[1] == 256]
    assert _subvol_rows(ours, 5) == _subvol_rows(_kernel_rows("replayed"), 5)


def test_implausible_logged_csum_item_is_skipped(mutable, image):
    """Subvolume 256's last log item (EXTENT_CSUM of s1's appended sector) shortened to 3 bytes: a finding, and
    that sector's content is unknown to the content designs instead of keyed by a partial checksum."""
    leaf = _log_leaf(256)

    def shorten(block: bytearray) -> None:
        at, _, size = _log_item(block, 7)
        assert size == 4
        struct.pack_into("<I", block, at + 21, 3)

    _rewrite_block(mutable, leaf, shorten)
    before = json.loads(_cli("report", "--json", str(image)).stdout.splitlines()[0])
    res = _cli("report", "--json", str(mutable))
    assert res.returncode == 1
    doc = json.loads(res.stdout.splitlines()[0])
    assert any(w.startswith("log tree of subvolume 256: EXTENT_CSUM item at logical 14127104 implausible: 3 bytes, "
                            "not a whole number of 4-byte checksums, skipped (slot 7)") for w in doc["warnings"])
    for name, model in doc["totals"]["models"].items():
        if model["content_source"] == "csum_tree":
            assert before["totals"]["models"][name]["unknown_pages"] == 0 and model["unknown_pages"] == 1, name
    text = " ".join(_cli("report", str(mutable)).stdout.split())
    assert "; 1 page (4.0 KiB) has no known content (nodatasum data, unreadable extents) and is cached per inode" in text
