"""A seeded random sequence of file operations on a fresh kernel-made btrfs, checked file by file.

Needs root, loop devices, the btrfs kernel module, btrfs-progs and xfs_io
(skipped otherwise). A fresh 256 MiB image gets a thousand operations
chosen by ``random.Random(seed)``: files of random sizes with seeded content
(some small enough to be inline), whole-file clones (``cp --reflink=always``,
also across subvolumes and out of read-only snapshots), partial reflinks
(``xfs_io reflink``, aligned, and unaligned up to the source's EOF),
overwrites in the middle of files, appends, truncates, deletes, renames,
hardlinks, preallocation and punched holes, snapshots (some read-only, some
of snapshots), new subvolumes, a changing default subvolume, periodic syncs, and stretches written with
``compress-force=zstd``; on one device, and with half as many operations on
RAID10 (4 devices), RAID5 (3) and RAID6 (4) volumes (``VOLUMES``). Then, on a
fresh read-only ``subvolid=5`` mount,
``capture.py`` records FIEMAP of every regular file, the ``lstat`` listing and
the subvolume list, and the files' contents are read; after unmounting,
btrfsscan reads the image and every file is compared as in ``test_files``:

* ``map --json`` merged like FIEMAP equals FIEMAP (flags, SHARED as the
  kernel sets it, holes as gaps), and its shared bytes a brute force over FIEMAP;
* every device range follows the chunk items ``btrfs inspect-internal
  dump-tree -t chunk`` prints, and the bytes at the device ranges of every
  uncompressed regular extent are the file's bytes (as read through the mount);
* ``ls -R --json`` equals the listing; ``subvolumes --json`` the subvolume list;
* ``report --read-data --json`` at 4K, 16K and 64K pages equals the brute-force
  counts of ``design_truth`` (every inode read and hashed page by page through
  the mount): per_inode, overlay_copy_up, file_fingerprint, content_dedupe;
  the checksum-tree figures (xxhash64) are never below them; shared_extent
  equals the count from FIEMAP alone (``test_pagecache``).

The log tree (``test_random_fsyncs_replay_as_the_kernel``): half as many
operations, without snapshots, mounted ``commit=600`` and synced; then a
quarter as many file operations and fsyncs of files and directories with no
commit, and the image copied while mounted, so the copy's ``log_root`` is
set (copied again if a commit of the kernel's own ran meanwhile). A copy of
that copy mounted read-write (the kernel replays the log) gives the kernel's
view; btrfsscan on the copy (replaying in memory) must equal it in every
check above, subvolume generations aside (the replaying mount commits). A
``ro,rescue=nologreplay`` mount of another copy (the last commit) is what
``--no-log-replay`` must show.

``BTRFSSCAN_RANDOM_SEED`` and ``BTRFSSCAN_RANDOM_OPS`` override the seed and
the number of operations, ``BTRFSSCAN_RANDOM_MKFS`` the mkfs.btrfs options
(default ``--csum xxhash``; keep a 64-bit checksum: with crc32c a collision
may merge two pages in the checksum-tree figures); a failure names the seed and keeps the operation
log (``ops.json``) and the image in the test's tmp dir.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from test_files import (
    check_against_fiemap,
    check_device_ranges,
    check_listing,
    check_ls_against_map,
    check_subvolumes,
    fiemap_shared_bytes,
    chunks_from_btrfsscan,
    chunks_from_dump_tree,
)

from btrfsscan.model.filemap import build_file_map
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.model.fs_tree import FileScanner
from btrfsscan.analysis.files import listing, subvolume_list
from btrfsscan.present.views.files import ls_document, map_document, subvolumes_document

from support import run_json
from test_pagecache import shared_extent_pages

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fixtures"))  # design_truth imports capture
K = 1024
M = 1024 * K
IMAGE_SIZE = 256 * M
SEED = int(os.environ.get("BTRFSSCAN_RANDOM_SEED", "20261125"))
N_OPS = int(os.environ.get("BTRFSSCAN_RANDOM_OPS", "1000"))
MKFS_ARGS = os.environ.get("BTRFSSCAN_RANDOM_MKFS", "--csum xxhash").split()
TOOLS = ("mkfs.btrfs", "btrfs", "losetup", "mount", "umount", "mountpoint", "xfs_io", "cp", "sync", "blkid")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"btrfsscan_fixtures_{name}", HERE / "fixtures" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (loop devices, mount)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)}"
    if not Path("/dev/loop-control").exists():
        return "needs loop device support (/dev/loop-control)"
    filesystems = Path("/proc/filesystems").read_text() if Path("/proc/filesystems").exists() else ""
    if "btrfs" not in filesystems and not Path("/sys/module/btrfs").exists():
        subprocess.run(["modprobe", "btrfs"], capture_output=True)
        if "btrfs" not in Path("/proc/filesystems").read_text():
            return "needs the btrfs kernel module"
    return None


REASON = _why_not()
pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(REASON is not None, reason=f"kernel-backed test: {REASON}")]


# --- the random operations ----------------------------------------------------------


class RandomOps:
    """Chooses and performs operations on the mounted filesystem, keeping track of what exists.

    Paths are relative to the mount point ("." is the top level). ``subvol_of``
    maps every tracked directory to the subvolume it belongs to; files live in
    the subvolume of their directory. Only writable subvolumes' directories
    and files are modified; files of read-only snapshots serve as clone sources.
    """

    def __init__(self, kernel, mnt: Path, seed: int) -> None:
        self.kernel = kernel
        self.mnt = mnt
        self.rng = random.Random(seed)
        self.log: list[dict] = []
        self.readonly: dict[str, bool] = {".": False}  # subvolume path -> read-only
        self.subvol_of: dict[str, str] = {".": "."}  # directory -> its subvolume
        self.files: set[str] = set()  # regular files of every subvolume (live paths)
        self.compress = False
        self.n = 0

    # -- helpers
    def p(self, rel: str) -> Path:
        return self.mnt / rel

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    @staticmethod
    def join(d: str, name: str) -> str:
        return name if d == "." else f"{d}/{name}"

    @staticmethod
    def parent(path: str) -> str:
        return path.rsplit("/", 1)[0] if "/" in path else "."

    def writable_dirs(self) -> list[str]:
        return sorted(d for d, sv in self.subvol_of.items() if not self.readonly[sv])

    def writable_files(self) -> list[str]:
        return sorted(f for f in self.files if not self.readonly[self.subvol_of[self.parent(f)]])

    def size(self, rel: str) -> int:
        return os.stat(self.p(rel)).st_size

    def sh(self, *cmd) -> None:
        cmd = [str(c) for c in cmd]
        self.log.append({"op": "run", "cmd": [c.replace(str(self.mnt), "$MNT") for c in cmd]})
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=self.mnt)
        if res.returncode != 0 or res.stderr.strip():
            raise AssertionError(f"seed {SEED}: {' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")

    def xfs_io(self, command: str, target: str) -> None:
        self.sh("xfs_io", "-c", command, self.p(target))

    def pwrite(self, rel: str, offset: int, size: int, fsync: bool) -> None:
        seed = f"{SEED}:{self.n}:{rel}"
        self.n += 1
        data = self.kernel.seeded_content(seed, size)
        fd = os.open(self.p(rel), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            done = 0
            while done < size:
                done += os.pwrite(fd, data[done:], offset + done)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        self.log.append({"op": "write", "path": rel, "offset": offset, "size": size, "seed": seed, "fsync": fsync})

    def random_size(self) -> int:
        r = self.rng.random()
        if r < 0.08:
            return self.rng.randint(0, 2048)  # inline (or empty)
        if r < 0.18:
            return self.rng.randint(2049, 12 * K)
        if r < 0.85:
            return self.rng.randint(12 * K, 256 * K)
        return self.rng.randint(256 * K, 1536 * K)

    # -- operations
    def op_create(self) -> None:
        path = self.join(self.rng.choice(self.writable_dirs()), self.name("f"))
        self.pwrite(path, 0, self.random_size(), fsync=self.rng.random() < 0.3)
        self.files.add(path)

    def op_mkdir(self) -> None:
        path = self.join(self.rng.choice(self.writable_dirs()), self.name("d"))
        os.mkdir(self.p(path))
        self.log.append({"op": "mkdir", "path": path})
        self.subvol_of[path] = self.subvol_of[self.parent(path)]

    def op_clone(self) -> None:
        sources = sorted(self.files)
        if not sources:
            return self.op_create()
        src = self.rng.choice(sources)
        dst = self.join(self.rng.choice(self.writable_dirs()), self.name("c"))
        self.sh("cp", "--reflink=always", self.p(src), self.p(dst))
        self.files.add(dst)

    def op_reflink(self) -> None:
        sources = [f for f in sorted(self.files) if self.size(f) >= 4 * K]
        targets = self.writable_files()
        if not sources or not targets:
            return self.op_create()
        src, dst = self.rng.choice(sources), self.rng.choice(targets)
        src_size, dst_size = self.size(src), self.size(dst)
        soff = self.rng.randrange(0, src_size // (4 * K)) * 4 * K
        if src_size % (4 * K) and self.rng.random() < 0.25:
            length = src_size - soff  # unaligned, up to the source's EOF: the destination must end at its EOF too
            doff = -(-dst_size // (4 * K)) * 4 * K + self.rng.randrange(0, 4) * 4 * K
        else:
            length = self.rng.randint(1, min((src_size - soff) // (4 * K), 96)) * 4 * K
            doff = self.rng.randrange(0, dst_size // (4 * K) + 3) * 4 * K
        if os.path.samefile(self.p(src), self.p(dst)) and soff < doff + length and doff < soff + length:
            return  # overlapping ranges of one inode (maybe through a hardlink): the kernel refuses them
        self.xfs_io(f"reflink {self.p(src)} {soff} {doff} {length}", dst)

    def op_overwrite(self) -> None:
        files = [f for f in self.writable_files() if self.size(f) > 0]
        if not files:
            return self.op_create()
        path = self.rng.choice(files)
        size = self.size(path)
        offset = self.rng.randrange(0, size)
        if self.rng.random() < 0.6:
            offset -= offset % (4 * K)
        length = self.rng.randint(1, min(size - offset, 192 * K))
        self.pwrite(path, offset, length, fsync=self.rng.random() < 0.3)

    def op_append(self) -> None:
        files = self.writable_files()
        if not files:
            return self.op_create()
        path = self.rng.choice(files)
        self.pwrite(path, self.size(path), self.rng.randint(1, 160 * K), fsync=self.rng.random() < 0.3)

    def op_truncate(self) -> None:
        files = self.writable_files()
        if not files:
            return self.op_create()
        path = self.rng.choice(files)
        size = self.size(path)
        new = self.rng.randint(0, size) if self.rng.random() < 0.7 else size + self.rng.randint(1, 300 * K)
        os.truncate(self.p(path), new)
        self.log.append({"op": "truncate", "path": path, "size": new})

    def op_delete(self) -> None:
        files = self.writable_files()
        if len(files) < 5:
            return self.op_create()
        path = self.rng.choice(files)
        os.unlink(self.p(path))
        self.files.discard(path)
        self.log.append({"op": "unlink", "path": path})

    def _file_and_new_name(self, prefix: str) -> tuple[str, str] | None:
        """A writable file and a fresh name in a directory of the same subvolume."""
        files = self.writable_files()
        if not files:
            return None
        path = self.rng.choice(files)
        subvol = self.subvol_of[self.parent(path)]
        dirs = [d for d in self.writable_dirs() if self.subvol_of[d] == subvol]
        return path, self.join(self.rng.choice(dirs), self.name(prefix))

    def op_rename(self) -> None:
        picked = self._file_and_new_name("r")
        if picked is None:
            return self.op_create()
        path, dst = picked
        os.rename(self.p(path), self.p(dst))
        self.files.discard(path)
        self.files.add(dst)
        self.log.append({"op": "rename", "path": path, "to": dst})

    def op_hardlink(self) -> None:
        picked = self._file_and_new_name("h")
        if picked is None:
            return self.op_create()
        path, dst = picked
        os.link(self.p(path), self.p(dst))
        self.files.add(dst)
        self.log.append({"op": "link", "path": path, "to": dst})

    def op_falloc(self) -> None:
        files = self.writable_files()
        if not files:
            return self.op_create()
        path = self.rng.choice(files)
        size = self.size(path)
        offset = self.rng.randrange(0, size // (4 * K) + 8) * 4 * K
        length = self.rng.randint(1, 64) * 4 * K
        keep = "-k " if self.rng.random() < 0.5 else ""
        self.xfs_io(f"falloc {keep}{offset} {length}", path)

    def op_punch(self) -> None:
        files = [f for f in self.writable_files() if self.size(f) > 8 * K]
        if not files:
            return self.op_create()
        path = self.rng.choice(files)
        size = self.size(path)
        offset = self.rng.randrange(0, size)
        if self.rng.random() < 0.7:
            offset -= offset % (4 * K)
        length = self.rng.randint(1, max(1, min(size - offset, 128 * K)))
        self.xfs_io(f"fpunch {offset} {length}", path)

    def op_snapshot(self) -> None:
        src = self.rng.choice(sorted(self.readonly))
        dst = self.join(self.rng.choice(self.writable_dirs()), self.name("snap"))
        ro = self.rng.random() < 0.4
        self.sh("btrfs", "subvolume", "snapshot", *(["-r"] if ro else []), self.p(src), self.p(dst))
        self.readonly[dst] = ro

        def moved(path: str) -> str:
            if path == src:
                return dst
            return self.join(dst, path if src == "." else path[len(src) + 1:])

        for d, sv in list(self.subvol_of.items()):
            if sv == src:
                self.subvol_of[moved(d)] = dst
        for f in list(self.files):
            if self.subvol_of[self.parent(f)] == src:
                self.files.add(moved(f))

    def op_subvolume(self) -> None:
        path = self.join(self.rng.choice(self.writable_dirs()), self.name("sv"))
        self.sh("btrfs", "subvolume", "create", self.p(path))
        self.readonly[path] = False
        self.subvol_of[path] = path

    def op_set_default(self) -> None:
        self.sh("btrfs", "subvolume", "set-default", self.p(self.rng.choice(sorted(self.readonly))))

    def op_sync(self) -> None:
        os.sync()
        self.log.append({"op": "sync"})

    def op_compress(self) -> None:
        self.compress = not self.compress
        option = "compress-force=zstd" if self.compress else "compress=no"
        os.sync()
        self.sh("mount", "-o", f"remount,{option}", self.mnt)

    WEIGHTS = {
        "create": 20, "clone": 8, "reflink": 10, "overwrite": 14, "append": 7, "truncate": 6, "delete": 4,
        "rename": 2, "hardlink": 2, "mkdir": 5, "falloc": 4, "punch": 3, "snapshot": 3, "subvolume": 2,
        "sync": 3, "compress": 1, "set_default": 1,
    }

    def run(self, count: int, weights: dict[str, int] | None = None) -> None:
        weights = weights or self.WEIGHTS
        names = list(weights)
        for _ in range(8):
            self.op_create()
        for _ in range(count):
            getattr(self, "op_" + self.rng.choices(names, [weights[n] for n in names])[0])()
        if self.compress:
            self.op_compress()
        os.sync()

    # -- the log phase: what goes to the log tree, nothing that commits (snapshot, subvolume, sync, remount)
    LOG_WEIGHTS = {
        "create": 20, "clone": 6, "reflink": 8, "overwrite": 14, "append": 8, "truncate": 6, "delete": 4,
        "rename": 4, "hardlink": 3, "mkdir": 4, "falloc": 4, "punch": 3, "fsync": 16,
    }

    def op_fsync(self) -> None:
        """fsync a file or a directory: what its inode (and, for a new name, its parents) needs goes to the log."""
        paths = sorted(self.files) + self.writable_dirs()
        path = self.rng.choice(paths)
        fd = os.open(self.p(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.log.append({"op": "fsync", "path": path})

    def run_logged(self, count: int) -> None:
        """``count`` operations of ``LOG_WEIGHTS`` with no sync after them."""
        names = list(self.LOG_WEIGHTS)
        for _ in range(count):
            getattr(self, "op_" + self.rng.choices(names, [self.LOG_WEIGHTS[n] for n in names])[0])()


# --- the test -------------------------------------------------------------------------


def _read_contents(mnt: Path, rows: list[dict]) -> dict[tuple[int, int], bytes]:
    out = {}
    for r in rows:
        key = (r["subvol"], r["st_ino"])
        if key not in out:
            out[key] = (mnt / r["path"]).read_bytes()
    return out


def _chunk_dump(device: str) -> str:
    """``dump-tree -t chunk`` of a device (every device of the filesystem attached, so btrfs-progs finds them)."""
    return subprocess.run(["btrfs", "inspect-internal", "dump-tree", "-t", "chunk", device],
                          capture_output=True, text=True, check=True).stdout


def _kernel_view(capture, design_truth, mnt: Path) -> dict:
    """What the kernel shows of a mounted filesystem (``ro,subvolid=5`` or a replaying ``subvolid=5`` mount);
    the caller adds ``chunks`` (``_chunk_dump``) once it is unmounted."""
    listing = capture.listing(mnt)
    files = [r for r in listing if r["type"] == "file"]
    return {"listing": listing, "files": files, "fiemaps": {r["path"]: capture.fiemap(mnt / r["path"]) for r in files},
            "subvols": capture.subvolumes(mnt), "contents": _read_contents(mnt, files),
            "designs": design_truth.count(mnt)}


def _check_against(images: list[Path], view: dict, replayed: bool = False, every_kind: bool = True,
                   log_replay: bool = True) -> None:
    """btrfsscan on ``images`` (every device) against the kernel's ``view`` of them (see the module docstring);
    ``replayed`` and ``every_kind`` as ``_check_image`` takes them; ``log_replay=False``: btrfsscan shows the
    last commit (``--no-log-replay``)."""
    flags = () if log_replay else ("--no-log-replay",)
    _check_image(images, view["listing"], view["fiemaps"], view["subvols"], view["contents"], view["chunks"],
                 replayed, every_kind, log_replay)
    _check_designs(images, view["designs"], flags)
    once = {(r["subvol"], r["st_ino"]): (r["size"], view["fiemaps"][r["path"]]) for r in view["files"]}
    doc = run_json("report", "--json", *flags, *images)
    assert doc["totals"]["models"]["shared_extent"]["pages"] == shared_extent_pages(once.values())


def _super_field(img: Path, copy: int, name: str) -> int:
    dump = subprocess.run(["btrfs", "inspect-internal", "dump-super", "-s", str(copy), str(img)],
                          capture_output=True, text=True, check=True).stdout
    return int(re.search(rf"^{name}\s+(\d+)", dump, re.M).group(1))


def _copy_while_mounted(img: Path, copy: Path) -> None:
    """``cp`` of a mounted device's image; again while a commit the kernel made of its own accord (an fsync it
    could not log) left the superblock copies of two generations (read before and after its write)."""
    for _ in range(5):
        subprocess.run(["cp", "--sparse=always", str(img), str(copy)], check=True)
        if _super_field(copy, 0, "generation") == _super_field(copy, 1, "generation"):
            return
    raise AssertionError("the superblock copies kept changing while the image was copied")


def test_random_fsyncs_replay_as_the_kernel(tmp_path):
    """A base of random operations (no snapshots: the kernel copies a leaf a snapshot shares before the
    replay changes it, which btrfsscan does not model) committed with ``commit=600``, then random operations
    and fsyncs of files and directories with no commit, the device copied while mounted (``log_root`` set);
    a copy of the copy mounted read-write (the kernel replays the log) is what btrfsscan must show of the
    copy, in every check of the main test."""
    kernel, capture, design_truth = _load("kernel"), _load("capture"), _load("design_truth")
    img = kernel.make_sparse_image(tmp_path / "random.img", IMAGE_SIZE)
    copy, replayed = tmp_path / "copy.img", tmp_path / "replayed.img"
    log_path = tmp_path / "ops.json"
    base = {name: weight for name, weight in RandomOps.WEIGHTS.items() if name != "snapshot"}
    try:
        with kernel.loop_devices([img]) as (dev,):
            kernel.make_fs([dev], *MKFS_ARGS, fsid=str(uuid.uuid4()))
            with kernel.mounted(dev, "commit=600") as mnt:
                ops = RandomOps(kernel, mnt, SEED)
                try:
                    ops.run(N_OPS // 2, base)
                    ops.run_logged(N_OPS // 4)
                    _copy_while_mounted(img, copy)
                    for _ in range(5):  # the last fsyncs may have committed (what the kernel cannot log): more
                        if _super_field(copy, 0, "log_root"):
                            break
                        path = ops.join(ops.rng.choice(ops.writable_dirs()), ops.name("f"))
                        ops.pwrite(path, 0, ops.random_size(), fsync=True)
                        ops.files.add(path)
                        _copy_while_mounted(img, copy)
                finally:
                    log_path.write_text(json.dumps(ops.log, indent=0))
        img.unlink()
        assert _super_field(copy, 0, "log_root"), "no log tree in the copy"
        views = {}
        for name, options in (("replayed", "subvolid=5"), ("committed", "ro,rescue=nologreplay,subvolid=5")):
            subprocess.run(["cp", "--sparse=always", str(copy), str(replayed)], check=True)
            with kernel.loop_devices([replayed]) as (dev,):
                with kernel.mounted(dev, options) as mnt:
                    views[name] = _kernel_view(capture, design_truth, mnt)
                views[name]["chunks"] = _chunk_dump(dev)
            replayed.unlink()
        _check_against([copy], views["replayed"], replayed=True, every_kind=False)
        _check_against([copy], views["committed"], every_kind=False, log_replay=False)
    except AssertionError as exc:  # the copy stays for a look
        raise AssertionError(f"seed {SEED}, {N_OPS} operations (log: {log_path}, copy: {copy}): {exc}") from exc
    copy.unlink()


#: The volumes the main test runs on: devices and mkfs.btrfs options (single: ``BTRFSSCAN_RANDOM_MKFS``).
#: RAID10 over four devices, RAID5 over three and RAID6 over four put random data through striped chunks
#: and chunks with rotating parity.
VOLUMES = {"single": (1, MKFS_ARGS), "raid10": (4, ["-d", "raid10", "-m", "raid1c3", "--csum", "xxhash"]),
           "raid5": (3, ["-d", "raid5", "-m", "raid1", "--csum", "xxhash"]),
           "raid6": (4, ["-d", "raid6", "-m", "raid1c4", "--csum", "xxhash"])}


@pytest.mark.parametrize("volume", list(VOLUMES))
def test_random_operations_match_kernel(tmp_path, volume):
    kernel = _load("kernel")
    capture = _load("capture")
    n_devices, mkfs_args = VOLUMES[volume]
    images = [kernel.make_sparse_image(tmp_path / f"random{i}.img", IMAGE_SIZE) for i in range(n_devices)]
    log_path = tmp_path / "ops.json"
    count = N_OPS if volume == "single" else N_OPS // 2
    try:
        with kernel.loop_devices(images) as devices:
            kernel.make_fs(devices, *mkfs_args, fsid=str(uuid.uuid4()))
            with kernel.mounted(devices[0]) as mnt:
                ops = RandomOps(kernel, mnt, SEED)
                try:
                    ops.run(count)
                finally:
                    log_path.write_text(json.dumps(ops.log, indent=0))
            if n_devices > 1:  # registered again: loop devices other tests detach may have made the module forget
                subprocess.run(["btrfs", "device", "scan", *devices], check=True, capture_output=True)
            with kernel.mounted(devices[0], "ro,subvolid=5") as mnt:
                view = _kernel_view(capture, _load("design_truth"), mnt)
            view["chunks"] = _chunk_dump(devices[0])
        _check_against(images, view, every_kind=volume == "single")
    except AssertionError as exc:  # the images stay for a look (the layout depends on writeback timing)
        raise AssertionError(f"seed {SEED}, {count} operations on {volume} (log: {log_path}, images: "
                             f"{[str(i) for i in images]}): {exc}") from exc
    for image in images:
        image.unlink()


def _check_image(images: list[Path], expected_listing, fiemaps, expected_subvols, contents, chunk_dump,
                 replayed: bool = False, every_kind: bool = True, log_replay: bool = True) -> None:
    """``replayed``: the kernel's view is a replaying mount's, which commits (newer generations);
    ``every_kind``: the sequence was long enough to reach every kind of extent, which is checked."""
    fs = open_filesystem(images, log_replay=log_replay)
    try:
        tables = FileScanner(fs.reader, fs.warnings).scan(fs.subvolumes.live())
        chunks = chunks_from_dump_tree(chunk_dump)
        assert chunks == chunks_from_btrfsscan(fs)
        entries = ls_document(listing(fs, ".", recursive=True)).json()["entries"]
        check_listing(entries, expected_listing)
        check_subvolumes(subvolumes_document(subvolume_list(fs)).json()["subvolumes"], expected_subvols,
                         generations=not replayed)
        ls = {e["path"]: e for e in entries}
        where = {r["path"]: (r["subvol"], r["st_ino"]) for r in expected_listing}
        sectorsize = fs.superblock.sectorsize
        shared = fiemap_shared_bytes({where[path]: records for path, records in fiemaps.items()}, sectorsize)
        kinds, inline_then_more = set(), 0
        for path, records in fiemaps.items():
            subvol, ino = where[path]
            doc = map_document(build_file_map(fs, subvol, ino, path, tables)).json()
            check_against_fiemap(doc, records, sectorsize, shared.get((subvol, ino)))
            check_device_ranges(doc, chunks, fs)
            check_ls_against_map(ls[path], doc)
            _check_data(fs, doc, contents[(subvol, ino)])
            kinds |= {(e["type"], e["compression"], e["shared"]) for e in doc["extents"]}
            types = [e["type"] for e in doc["extents"] if e["type"] != "hole"]
            inline_then_more += types[:1] == ["inline"] and len(types) > 1  # a reflink after a small file
        assert not fs.warnings, fs.warnings.messages()
        if not every_kind:
            return
        # the sequence did produce the interesting cases
        assert {("regular", "none", True), ("regular", "none", False), ("hole", "none", False)} <= kinds, kinds
        assert any(k[0] == "prealloc" for k in kinds) and any(k[0] == "inline" for k in kinds), kinds
        assert inline_then_more, "no inline extent followed by another"
    finally:
        fs.close()


def _check_designs(images: list[Path], counts: dict, flags: tuple[str, ...] = ()) -> None:
    """``report --read-data`` (exact content) equals the counts made by reading every inode through the kernel;
    from the checksum tree (xxhash64: no collision to expect) the content designs never claim more sharing."""
    designs = ("content_dedupe", "file_fingerprint", "overlay_copy_up")
    for page_size, want in counts.items():
        doc = run_json("report", "--read-data", "--json", "--page-size", page_size, *flags, *images)
        models = doc["totals"]["models"]
        got = {"inodes": doc["totals"]["inodes"], "per_inode": doc["totals"]["per_inode"]["pages"],
               **{d: models[d]["pages"] for d in designs}}
        assert got == want, (page_size, got, want)
        by_csums = run_json("report", "--json", "--page-size", page_size, *flags, *images)["totals"]["models"]
        assert by_csums["overlay_copy_up"]["pages"] == want["overlay_copy_up"]
        assert all(by_csums[d]["pages"] >= want[d] for d in designs), (page_size, by_csums, want)


def _check_data(fs, doc: dict, content: bytes) -> None:
    """The bytes at the device ranges of uncompressed regular extents are the file's bytes."""
    size = len(content)
    for e in doc["extents"]:
        if e["type"] != "regular" or e["compression"] != "none":
            continue
        for r in e["device_ranges"]:
            end = min(r["file_offset"] + r["length"], size)
            if end <= r["file_offset"]:
                continue
            n = end - r["file_offset"]
            on_disk = fs.volume.devices[r["devid"]].image.pread(r["physical"], n)
            assert on_disk == content[r["file_offset"]:end], (doc["path"], e, r)
