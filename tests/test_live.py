"""The live data source and the working-set models, against the kernel.

On a read-only mount of committed fixtures (a copy given a fresh fsid, so it
never clashes with another mount of the fixture) and on an XFS filesystem
with reflinks made here: drop caches, bring in a seeded mix of whole reads,
range reads and mmap touches, then

* ``per_inode`` = fincore's pages summed over distinct inodes, exactly;
* ``shared_extent`` = a brute-force count from this test's own mincore and
  FIEMAP (``capture.fiemap``): resident pages of extents without an
  unshareable flag once per logical page, every other resident page alone;
* two runs give identical residencies, and every file's mincore vector is the
  same before and after a run (the collector does not perturb the cache);
* the saved residency, loaded and modelled on the unmounted image, gives the
  same figures as the live capture.

The machine reclaims cold pages in the background (DAMON): every comparison
is made inside a window whose mincore snapshots before and after agree, and
retried otherwise; the equalities are never loosened.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import kernel_unavailable, run

from btrfsscan.analysis.facts import filesystem_facts
from btrfsscan.analysis.live import image_layout
from btrfsscan.cache.analyze import analyze
from btrfsscan.errors import LiveError, ResidencyError, Warnings
from btrfsscan.live.collect import collect
from btrfsscan.live.residency import (
    FilesystemIdentity,
    ResidencyBuilder,
    load_residency,
    parse_workload,
    workload_residency,
    write_residency,
)
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.workingset import backing as wb
from btrfsscan.workingset import image as wi
from btrfsscan.workingset import pages as wp

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import capture  # noqa: E402
import kernel  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "btrfsscan/present/schemas/residency.schema.json").read_text())
UNSHAREABLE = {"DATA_INLINE", "ENCODED", "UNWRITTEN", "NOT_ALIGNED", "DELALLOC", "UNKNOWN", "DATA_ENCRYPTED",
               "DATA_TAIL"}
BTRFS_FIXTURES = ["reflinks", "compress", "subvols", "sparse-noholes"]
ATTEMPTS = 6

needs_kernel = pytest.mark.skipif(kernel_unavailable() is not None, reason=kernel_unavailable() or "")


def save_residency(res, path: Path) -> None:
    with open(path, "w", encoding="utf-8") as out:
        write_residency(res, out)


# --- the test's own view of the page cache ---------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


def mincore_vector(path: Path) -> bytes:
    """One byte per page of ``path`` (1: resident), by mincore over an untouched read-only mapping."""
    size = path.stat().st_size
    npages = -(-size // PAGE)
    if npages == 0:
        return b""
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, npages * PAGE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value)
        vec = ctypes.create_string_buffer(npages)
        try:
            assert _libc.mincore(addr, npages * PAGE, vec) == 0
        finally:
            _libc.munmap(addr, npages * PAGE)
    finally:
        os.close(fd)
    return bytes(b & 1 for b in vec.raw)


def regular_files(root: Path) -> dict[tuple[int, int], Path]:
    """(st_dev, st_ino) -> first path, for every regular file below ``root`` (hardlinks once)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            if (st.st_mode & 0o170000) == 0o100000:
                out.setdefault((st.st_dev, st.st_ino), p)
    return out


def snapshot(files: dict) -> dict:
    return {key: mincore_vector(p) for key, p in files.items()}


def fincore_pages(files: dict) -> int:
    """fincore's resident pages over the distinct inodes."""
    paths = [str(p) for p in files.values()]
    total = 0
    for i in range(0, len(paths), 200):
        run = subprocess.run(["fincore", "--json", "--output", "PAGES,FILE", *paths[i:i + 200]],
                             capture_output=True, text=True, check=True)
        total += sum(int(r["pages"]) for r in json.loads(run.stdout)["fincore"])
    return total


def brute_force_shared_extent(files: dict, snap: dict) -> int:
    """Resident pages, with pages of plain extents counted once per logical page (P == sector size here)."""
    keys, other = set(), 0
    for key, p in files.items():
        vec = snap[key]
        extents = capture.fiemap(p, sync=False)
        for page in (k for k, bit in enumerate(vec) if bit):
            start = page * PAGE
            ext = next((e for e in extents if e["fe_logical"] <= start < e["fe_logical"] + e["fe_length"]), None)
            if ext is None or UNSHAREABLE & set(ext["flags"]):
                other += 1
                continue
            address = ext["fe_physical"] + start - ext["fe_logical"]
            if address % PAGE:
                other += 1
            else:
                keys.add(address)
    return other + len(keys)


def seeded_workload(files: dict, seed: str) -> None:
    """Whole reads, range reads and mmap touches of a seeded choice of files (a quarter left alone)."""
    rng = random.Random(seed)
    for p in sorted(files.values()):
        size = p.stat().st_size
        action = rng.choice(("whole", "range", "mmap", "none"))
        if action == "whole" or (action != "none" and size < 2 * PAGE):
            capture.read_all(p)
        elif action == "range":
            off = rng.randrange(0, size)
            with open(p, "rb", buffering=0) as f:
                f.seek(off)
                f.read(rng.randrange(1, 3 * PAGE))
        elif action == "mmap":
            with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
                for _ in range(3):
                    m[rng.randrange(0, size)]


def stable_run(files: dict, *args):
    """`btrfsscan *args` inside a window where the page cache stayed still (mincore and fincore equal before
    and after): (result, mincore snapshot, fincore pages)."""
    for _ in range(ATTEMPTS):
        before, fincore_before = snapshot(files), fincore_pages(files)
        result = run(*args)
        fincore_after, after = fincore_pages(files), snapshot(files)
        if before == after and fincore_before == fincore_after:
            assert result.exit_code == 0, result.stderr
            return result, before, fincore_before
    pytest.fail(f"the page cache never stayed still for {ATTEMPTS} attempts")


def stable_capture(root: Path, files: dict, runs: int = 1):
    """``runs`` collects inside one window whose mincore snapshots (and fincore) agree before and after."""
    for _ in range(ATTEMPTS):
        before = snapshot(files)
        fincore_before = fincore_pages(files)
        captures = [collect([root]) for _ in range(runs)]
        fincore_after = fincore_pages(files)
        after = snapshot(files)
        if before == after and fincore_before == fincore_after:
            return before, fincore_before, captures
    pytest.fail(f"the page cache never stayed still for {ATTEMPTS} attempts (DAMON, or the collector perturbs it)")


def residency_rows(res) -> list:
    return sorted((int(res.subvol[i]), int(res.ino[i]), res.path(i), int(res.size[i]), tuple(res.runs(i)))
                  for i in range(len(res)))


def figures(res, backing) -> dict:
    ws = wp.analyze(res, backing)
    return {
        "per_inode": wp.per_inode_pages(ws),
        "shared_extent": wp.shared_extent_pages(ws),
        "by_kind": wp.pages_by_kind(ws),
        "subvolumes": wp.per_subvolume(ws),
        "top_files": wp.top_files(ws, 10),
        "top_ranges": wp.top_ranges(ws, 10),
    }


# --- btrfs fixtures ----------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_fsid_copy(fixture_images, name: str, tmp: Path):
    """A copy of the fixture's image with a new random fsid (btrfstune -u), so no mount of the fixture clashes."""
    copy = tmp / f"{name}.img"
    shutil.copyfile(fixture_images("files", name)[0], copy)
    subprocess.run(["btrfstune", "-f", "-u", str(copy)], check=True, capture_output=True, input="y\n", text=True)
    yield copy


@pytest.mark.kernel
@needs_kernel
@pytest.mark.parametrize("name", BTRFS_FIXTURES)
def test_live_btrfs(name, fixture_images, tmp_path):
    if shutil.which("btrfstune") is None:
        pytest.skip("btrfstune (btrfs-progs) is needed to give the fixture copy its own fsid")
    with fresh_fsid_copy(fixture_images, name, tmp_path) as img:
        with kernel.loop_devices([img]) as devices, kernel.mounted(devices[0], "ro,subvolid=5") as mnt:
            files = regular_files(mnt)
            capture.drop_caches()
            seeded_workload(files, f"live/{name}")
            snap, fincore_total, (first, second) = stable_capture(mnt, files, runs=2)
            res = first.residency
            live = figures(res, wb.from_fiemap(res, first.extents, res.filesystem.sectorsize))
            expected_shared = brute_force_shared_extent(files, snap)
            assert residency_rows(res) == residency_rows(second.residency)
            assert not first.warnings, first.warnings.messages()
            seen = []
            collect([mnt], progress=seen.append)
            assert seen and seen[-1].directories == first.directories and seen[-1].unreadable == 0
            assert seen[-1].files >= res.files  # paths: a hardlink counts once per path here
            saved = tmp_path / "residency.json"
            save_residency(res, saved)
        assert live["per_inode"] == fincore_total == sum(sum(v) for v in snap.values())
        assert live["per_inode"] > 0
        assert live["shared_extent"] == expected_shared
        assert sum(live["by_kind"].values()) == live["per_inode"]
        assert res.files == len(files) and res.files_with_pages == sum(1 for v in snap.values() if any(v))

        doc = json.loads(saved.read_text())
        jsonschema.Draft202012Validator(SCHEMA).validate(doc)
        fs = open_filesystem([img])
        try:
            fsid = str(fs.volume.fsid)
            loaded = load_residency(saved, fsid=fsid, page_size=PAGE)
            assert residency_rows(loaded) == residency_rows(res)
            warnings = Warnings()
            kept, backing, _ = wi.from_layout(loaded, image_layout(fs, PAGE), warnings)
        finally:
            fs.close()
        assert not warnings, warnings.messages()
        assert figures(kept, backing) == live


@pytest.mark.kernel
@needs_kernel
def test_a_tree_reached_twice_is_counted_once(fixture_images, tmp_path):
    """Roots nested in each other and a second mount of the same subvolume reach directories again: each is
    walked once, so every file is one row (its pages counted once), the capture equals the one of the top
    root alone, and a note names what was reached again."""
    if shutil.which("btrfstune") is None:
        pytest.skip("btrfstune (btrfs-progs) is needed to give the fixture copy its own fsid")
    with fresh_fsid_copy(fixture_images, "subvols", tmp_path) as img:
        with kernel.loop_devices([img]) as devices, kernel.mounted(devices[0], "ro,subvolid=5") as mnt, \
                kernel.mounted(devices[0], "ro,subvolid=5") as again:
            files = regular_files(mnt)
            nested = next(p.parent for p in sorted(files.values()) if p.parent != mnt)
            capture.drop_caches()
            seeded_workload(files, "live/twice")
            for _ in range(ATTEMPTS):
                before = snapshot(files)
                alone, overlapping = collect([mnt]), collect([nested, mnt, again])
                if snapshot(files) == before:
                    break
            else:
                pytest.fail(f"the page cache never stayed still for {ATTEMPTS} attempts")
    res, one = overlapping.residency, alone.residency
    keys = list(zip(res.subvol.tolist(), res.ino.tolist()))
    assert len(keys) == len(set(keys)) == sum(1 for v in before.values() if any(v)) > 0
    # the same rows (a hardlinked file's path is the one its first walk met)
    assert [row[:2] + row[3:] for row in residency_rows(res)] == [row[:2] + row[3:] for row in residency_rows(one)]
    assert res.files == one.files == len(files)
    assert overlapping.directories == alone.directories
    assert not one.notes and len(res.notes) == 1
    assert res.notes[0].startswith("2 directories reached again") and str(mnt) in res.notes[0]


# --- the image-side working set against the image-wide models ------------------------------------


@pytest.mark.parametrize("name", ["reflinks", "compress", "sparse-noholes", "subvols"])
@pytest.mark.parametrize("page_size", [4096, 16384, 65536])
def test_every_page_resident_equals_the_models(name, page_size, fixture_images):
    """With every page of every inode resident, per_inode, shared_extent and the kinds are those of `report`."""
    fs = open_filesystem(list(fixture_images("files", name).values()))
    try:
        layout = image_layout(fs, page_size)
        v = layout.versions
        builder = ResidencyBuilder()
        for version in range(v.n_versions):
            npages = int(layout.npages[version])
            for member in v.members(int(v.version_set[version])).tolist():
                if npages:
                    builder.add(int(v.subvol_ids[member]), int(layout.ino[version]), int(layout.size[version]),
                                b"", [(0, npages)])
        res = builder.build(kind="workload", captured_at="", page_size=page_size, filesystem=None, roots=(),
                            subvolumes=(), files=len(builder.subvol))
        warnings = Warnings()
        kept, backing, _ = wi.from_layout(res, layout, warnings)
        expected = analyze(v, page_size, filesystem_facts(fs))
    finally:
        fs.close()
    assert not warnings
    got = figures(kept, backing)
    assert got["per_inode"] == expected.per_inode_pages
    assert got["shared_extent"] == expected.models["shared_extent"].pages
    kinds = dict(got["by_kind"])
    assert kinds.pop("unknown") == 0
    assert kinds == expected.by_kind


# --- XFS with reflinks ---------------------------------------------------------------------------


def _xfs_unavailable() -> str | None:
    reason = kernel_unavailable()
    if reason:
        return reason
    if shutil.which("mkfs.xfs") is None or shutil.which("xfs_io") is None:
        return "needs xfsprogs (mkfs.xfs, xfs_io)"
    return None


@contextlib.contextmanager
def xfs_mounted(image: Path):
    with kernel.loop_devices([image]) as devices:
        mnt = Path(tempfile.mkdtemp(prefix="btrfsscan-xfs-"))
        try:
            subprocess.run(["mount", "-t", "xfs", devices[0], str(mnt)], check=True, capture_output=True)
            try:
                yield mnt
            finally:
                subprocess.run(["umount", str(mnt)], check=True)
        finally:
            mnt.rmdir()


@pytest.mark.kernel
@pytest.mark.skipif(_xfs_unavailable() is not None, reason=_xfs_unavailable() or "")
def test_live_xfs_reflinks(tmp_path):
    image = kernel.make_sparse_image(tmp_path / "xfs.img", 320 << 20)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], check=True, capture_output=True)
    with xfs_mounted(image) as mnt:
        (mnt / "top").mkdir()
        (mnt / "other").mkdir()
        kernel.write_seeded_file(mnt / "top" / "src", "xfs/src", (1 << 20) + 1000)
        kernel.write_seeded_file(mnt / "other" / "own", "xfs/own", 300_000)
        kernel.write_seeded_file(mnt / "top" / "partial", "xfs/partial", 512 << 10)
        os.sync()
        subprocess.run(["cp", "--reflink=always", str(mnt / "top" / "src"), str(mnt / "other" / "clone")], check=True)
        subprocess.run(["xfs_io", "-c", f"reflink {mnt / 'top' / 'src'} 65536 131072 196608", str(mnt / "top" / "partial")],
                       check=True, capture_output=True)
        os.link(mnt / "top" / "src", mnt / "other" / "src.link")
        subprocess.run(["xfs_io", "-f", "-c", "falloc 0 1m", str(mnt / "other" / "prealloc")], check=True)
        os.sync()
        files = regular_files(mnt)
        capture.drop_caches()
        seeded_workload(files, "live/xfs")
        capture.read_all(mnt / "other" / "clone")
        capture.read_all(mnt / "top" / "src")
        snap, fincore_total, (first, second) = stable_capture(mnt, files, runs=2)
        res = first.residency
        live = figures(res, wb.from_fiemap(res, first.extents, res.filesystem.sectorsize))
        expected_shared = brute_force_shared_extent(files, snap)
        assert residency_rows(res) == residency_rows(second.residency)
    assert res.filesystem.type == "xfs" and res.filesystem.generation is None
    assert live["per_inode"] == fincore_total == sum(sum(v) for v in snap.values())
    assert live["shared_extent"] == expected_shared < live["per_inode"]
    assert res.files == len(files)
    # per top-level directory: the root's own files (none here), top/, other/
    assert sorted(s.path.rsplit(b"/", 1)[-1] for s in res.subvolumes)[-2:] == [b"other", b"top"]


# --- bad input ---------------------------------------------------------------------------------


def _document(tmp_path: Path, **identity) -> Path:
    builder = ResidencyBuilder()
    builder.add(256, 257, 10_000, b"dir/f\xff", [(0, 1), (2, 1)])
    builder.add(256, 258, 5000, "ü/x".encode(), [(0, 2)])
    fs = FilesystemIdentity(**{"type": "btrfs", "fsid": "0634ac5a-61f8-590d-b076-d5b350bd2f0f",
                               "fsid_source": "BTRFS_IOC_FS_INFO", "generation": 7, "sectorsize": 4096, **identity})
    res = builder.build(kind="resident", captured_at="2026-01-01T00:00:00Z", page_size=4096, filesystem=fs,
                        roots=(b"/mnt",), subvolumes=(), files=5)
    path = tmp_path / "r.json"
    save_residency(res, path)
    return path


def test_residency_roundtrip_and_schema(tmp_path):
    path = _document(tmp_path)
    doc = json.loads(path.read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    files = doc["files"]
    assert files["path"] == ["dir/f\ufffd", "ü/x"] and files["path_bytes"] == [[0, "ZGlyL2b/"]]
    assert files["runs"] == [2, 1] and files["run_page"] == [0, 2, 0] and files["run_count"] == [1, 1, 2]
    assert files["subvol"] == [256, 256] and files["ino"] == [257, 258] and files["size"] == [10_000, 5000]
    res = load_residency(path, fsid="0634AC5A-61F8-590D-B076-D5B350BD2F0F", page_size=4096)
    assert [res.path(i) for i in range(len(res))] == [b"dir/f\xff", "ü/x".encode()]
    assert res.runs(0) == [(0, 1), (2, 1)] and res.files == 5 and res.pages == 4
    # the same JSON laid out differently reads the same
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(doc, indent=2))
    again = load_residency(pretty)
    assert residency_rows(again) == residency_rows(res)


@pytest.mark.parametrize("cut", [10, 200, -30, -3])
def test_truncated_residency_is_one_error(tmp_path, cut):
    path = _document(tmp_path)
    text = path.read_text()
    path.write_text(text[:cut])
    with pytest.raises(ResidencyError) as err:
        load_residency(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_residency_of_another_filesystem_page_size_or_version(tmp_path):
    path = _document(tmp_path)
    with pytest.raises(ResidencyError, match="not on 11111111"):
        load_residency(path, fsid="11111111-2222-3333-4444-555555555555")
    with pytest.raises(ResidencyError, match="page size 4096, not 16384"):
        load_residency(path, page_size=16384)
    doc = json.loads(path.read_text())
    doc["schema_version"] = 2
    path.write_text(json.dumps(doc))
    with pytest.raises(ResidencyError, match="schema_version 2 is newer"):
        load_residency(path)


def test_residency_run_past_eof_is_refused(tmp_path):
    path = _document(tmp_path)
    doc = json.loads(path.read_text())
    doc["files"]["run_count"][2] = 3  # file 1 has 5000 bytes: 2 pages
    path.write_text(json.dumps(doc))
    with pytest.raises(ResidencyError, match=r"file 1: run ends at page 3, past the 2 pages of i_size 5000"):
        load_residency(path)


@pytest.mark.parametrize("field, row, value, said", [
    ("size", 1, -1, "files.size[1]: size is not an integer"), ("size", 1, True, "files.size[1]"),
    ("size", 1, 1 << 63, "files.size[1]"), ("size", 1, 1 << 64, "files.size[1]"),
    ("subvol", 1, 1.5, "files.subvol[1]"), ("ino", 1, "7", "files.ino[1]"), ("path", 1, None, "files.path[1]"),
    ("path", 1, "bad\udcffname", "files.path[1]: not valid Unicode"),
    ("path_bytes", 0, [0, "!!"], "the bytes of row 0 are not base64"), ("path_bytes", 0, [5, "AA=="], "[row, base64]"),
    ("runs", 1, 0, "files.runs[1]: runs (the number of runs of the file) must be in [1, 2^32)"),
    ("runs", 1, 2, "files.run_page has 3 values, not 4"),
    ("runs", 0, (1 << 64) - 1, "files.runs[0]: runs (the number of runs of the file) must be in [1, 2^32)"),
    ("run_count", 2, 0, "files.run_count[2]: a run's count must be >= 1"),
    ("run_page", 1, 0, "file 0: runs must be sorted"), ("run_page", 1, 1, "file 0: runs must be sorted, disjoint and not adjacent"),
    ("run_page", 0, -1, "files.run_page[0]"), ("run_page", 2, 1, "file 1: run ends at page 3"),
    ("subvol", None, None, "files.subvol missing"), ("ino", None, [1], "files.ino has 1 values, not 2"),
    ("ino", 1, 257, "files rows 0 and 1 are both inode 257 of subvolume 256: a file is listed once"),
    (None, None, None, "files must be an object of columns"),
])
def test_residency_column_faults_are_one_line(tmp_path, field, row, value, said):
    """Each fault of the file columns: one error naming the column and row (or the file) at fault."""
    doc = json.loads(_document(tmp_path).read_text())
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc, indent=1))
    assert residency_rows(load_residency(path)) == residency_rows(load_residency(_document(tmp_path)))
    if field is None:
        doc["files"] = [[1, 2]]
    elif row is None:
        doc["files"][field] = value
        if value is None:
            del doc["files"][field]
    else:
        doc["files"][field][row] = value
    path.write_text(json.dumps(doc))
    with pytest.raises(ResidencyError) as err:
        load_residency(path)
    assert said in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_not_a_directory_is_one_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(LiveError, match="not a directory"):
        collect([f])
    with pytest.raises(LiveError, match="No such file"):
        collect([tmp_path / "missing"])


def _runs_of(vector: bytes) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for page, bit in enumerate(vector):
        if bit and runs and sum(runs[-1]) == page:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        elif bit:
            runs.append((page, 1))
    return runs


@pytest.mark.parametrize("window_pages", [1, 4, 16])
def test_resident_runs_window_by_window(tmp_path, monkeypatch, window_pages):
    """``resident_runs`` asks cachestat per window (nothing cached: skipped; all cached: one run without
    mincore) and mincore otherwise: the runs are those of a mincore vector of the whole file, taken
    before and after (retried while the page cache moves), across empty, full and partial windows."""
    from btrfsscan.live import kernel_api

    monkeypatch.setattr(kernel_api, "WINDOW", window_pages * PAGE)
    path = tmp_path / "f"
    path.write_bytes(random.Random("windows").randbytes(64 * PAGE + 100))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: only the pages read come in
        for _ in range(ATTEMPTS):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            for page in [*range(0, 16), 17, 20, 21, 40, 64]:  # full, partial and empty windows, the tail
                os.pread(fd, 1, page * PAGE)
            before = mincore_vector(path)
            got = kernel_api.resident_runs(fd, path.stat().st_size)
            if mincore_vector(path) == before:
                break
        else:
            pytest.fail(f"the page cache never stayed still for {ATTEMPTS} attempts")
    finally:
        os.close(fd)
    assert got == _runs_of(before) and got
    windows = [before[i:i + window_pages] for i in range(0, len(before), window_pages)]
    assert any(not any(w) for w in windows) and any(all(w) for w in windows)  # both shortcuts were taken


def test_workload_pages(tmp_path):
    wl = tmp_path / "workload"
    wl.write_bytes(b"# comment\n/a/whole\n/a/with space 100 5000\n/a/with space 20000 1\n\n/a/missing\n/a/empty 0 0\n")
    lines = parse_workload(wl)
    assert [(x.path, x.offset, x.length) for x in lines] == [
        (b"/a/whole", None, None), (b"/a/with space", 100, 5000), (b"/a/with space", 20000, 1),
        (b"/a/missing", None, None), (b"/a/empty", 0, 0)]
    table = {b"/a/whole": (256, 300, 3 * 4096 + 1), b"/a/with space": (257, 301, 10 * 4096), b"/a/empty": (256, 302, 0)}
    res, missing = workload_residency(lines, table.get, page_size=4096, captured_at="t")
    assert [m.path for m in missing] == [b"/a/missing"]
    assert residency_rows(res) == [(256, 300, b"/a/whole", 3 * 4096 + 1, ((0, 4),)),
                                   (257, 301, b"/a/with space", 40960, ((0, 2), (4, 1)))]
    assert res.files == 3
    bad = tmp_path / "bad"
    bad.write_bytes(b"/a 12\n")
    with pytest.raises(ResidencyError, match="line 1"):
        parse_workload(bad)



@pytest.mark.parametrize("name", ["many", "reflinks", "subvols"])
def test_top_ranges_files_by_brute_force(name, fixture_images):
    """Every file of the image read fully: each top range's files, subvolumes and first ten (subvol, ino)
    are those whose resident keys fall in it, found here run by run in Python."""
    fs = open_filesystem(list(fixture_images("files", name).values()))
    try:
        layout = image_layout(fs, 4096)
    finally:
        fs.close()
    builder = ResidencyBuilder()
    for v in range(layout.n_inodes):
        if layout.npages[v]:
            builder.add(int(layout.subvol[v]), int(layout.ino[v]), int(layout.size[v]), b"f", [(0, int(layout.npages[v]))])
    res = builder.build(kind="workload", captured_at="t", page_size=4096, filesystem=None, roots=(), subvolumes=(),
                        files=len(builder.subvol))
    kept, back, _ = wi.from_layout(res, layout, Warnings())
    ws = wp.analyze(kept, back)
    ranges = wp.top_ranges(ws, 10)
    assert ranges and any(r.files > 1 for r in ranges)  # many and subvols: ranges of 10+ files in 2+ subvolumes
    runs = ws.sharing.runs
    for r in ranges:
        lo, hi = r.logical // 4096, r.logical // 4096 + r.cached_pages
        rows = {int(row) for row, k0, n in zip(runs.inode.tolist(), runs.key0.tolist(), runs.count.tolist())
                if k0 < hi and k0 + n > lo}
        pairs = sorted((int(kept.subvol[i]), int(kept.ino[i])) for i in rows)
        assert (r.files, r.subvolumes, r.examples) == (len(rows), tuple(sorted({sv for sv, _ in pairs})), tuple(pairs[:10]))


_JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=False)
                            | st.text(max_size=5), lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@given(path=st.sampled_from(["subvol", "ino", "path", "path_bytes", "size", "runs", "run_page", "run_count", None]),
       index=st.integers(0, 3), value=_JSON_VALUES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_residency_columns_load_or_give_one_error(tmp_path, path, index, value):
    """Any value put anywhere in the file columns: the residency loads, or one ResidencyError line."""
    doc = json.loads(_document(tmp_path).read_text())
    files = doc["files"]
    if path is None:
        doc["files"] = value
    elif isinstance(files[path], list) and index < len(files[path]):
        files[path][index] = value
    else:
        files[path] = value
    bad = tmp_path / "fuzzed.json"
    bad.write_text(json.dumps(doc))
    try:
        load_residency(bad)
    except ResidencyError as exc:
        assert "\n" not in str(exc) and str(bad) in str(exc)
