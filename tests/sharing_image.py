"""A kernel-made btrfs with every kind of extent sharing, and what FIEMAP said about it.

Built on a fresh loop-mounted image (root, loop devices, the btrfs module,
btrfs-progs and xfs_io; see ``tests/fixtures/README.md``), with seeded
content only:

* ``bookend``: one 1 MiB extent whose middle is overwritten (the two ends
  reference it under one backref);
* ``selfref``: a reflink of the file's first 128 KiB to a later position;
* ``cross/a``, ``cross/b``: ``b`` a reflink copy of ``a``, its middle
  overwritten;
* subvolume ``@base`` (``usr/bin``, ``usr/lib``, ``usr/share``, ``etc``,
  ``var``; ``usr/lib/many`` has hundreds of extents over several leaves),
  read-only snapshot ``@snap1``, then changes in ``@base`` (a partial
  overwrite, an append, one block of ``many``), snapshot ``@snap2`` with a
  change of its own, then changes in ``@base`` again;
* subvolume ``@gone`` and its snapshot ``@gone-snap``, deleted (and cleaned
  up: ``btrfs subvolume sync``) after ``@gone`` changed.

Then on a fresh read-only ``subvolid=5`` mount: FIEMAP of every regular
file, the ``lstat`` listing (with subvolume ids) and the subvolume list
(``tests/fixtures/capture.py``).
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
K = 1024
IMAGE_SIZE = 512 * K * K
#: Page size of the brute-force counts.
P = 4096
#: FIEMAP flags of ranges a shared-extent cache does not key by address.
UNSHAREABLE = {"DATA_INLINE", "ENCODED", "UNWRITTEN", "NOT_ALIGNED", "DELALLOC", "DATA_ENCRYPTED", "UNKNOWN"}


def load_fixture_module(name: str):
    """``tests/fixtures/<name>.py`` (the build helpers) as a module."""
    spec = importlib.util.spec_from_file_location(f"btrfsscan_fixtures_{name}", HERE / "fixtures" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class SharingImage:
    image: Path
    fiemap: dict[str, list[dict]]  # path -> FIEMAP records
    listing: list[dict]  # capture.listing rows: path, type, subvol, st_ino, size, ...
    subvolumes: list[dict]

    def inode_of(self, path: str) -> tuple[int, int]:
        row = next(r for r in self.listing if r["path"] == path)
        return row["subvol"], row["st_ino"]

    def page_keys(self, row: dict) -> list[int]:
        """The device pages (FIEMAP, in P units) a shared-extent cache keys the pages of file ``row`` by."""
        npages = -(-row["size"] // P)
        return [e["fe_physical"] // P + (off - e["fe_logical"]) // P
                for e in self.fiemap[row["path"]] if not UNSHAREABLE & set(e["flags"])
                for off in range(e["fe_logical"], e["fe_logical"] + e["fe_length"], P) if off // P < npages]


class _Builder:
    def __init__(self, kernel, mnt: Path) -> None:
        self.k, self.mnt = kernel, mnt

    def sh(self, *args) -> None:
        self.k.run([str(a) for a in args], capture_output=True)

    def write(self, rel: str, seed: str, size: int, offset: int = 0) -> None:
        path = self.mnt / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, self.k.seeded_content(seed, size), offset)
        finally:
            os.close(fd)

    def commit(self) -> None:
        os.sync()
        self.sh("btrfs", "filesystem", "sync", self.mnt)

    def build(self) -> None:
        b = self.mnt
        self.write("bookend", "bookend", 1024 * K)
        self.write("selfref", "selfref", 512 * K)
        self.write("cross/a", "cross", 768 * K)
        self.commit()
        self.write("bookend", "bookend-middle", 64 * K, 256 * K)
        self.sh("xfs_io", "-c", f"reflink {b / 'selfref'} 0 {384 * K} {128 * K}", b / "selfref")
        self.sh("cp", "--reflink=always", b / "cross/a", b / "cross/b")
        self.commit()
        self.write("cross/b", "cross-b", 128 * K, 256 * K)

        self.sh("btrfs", "subvolume", "create", b / "@base")
        for rel, size in (("usr/bin/tool", 300 * K + 17), ("usr/bin/sh", 96 * K), ("usr/lib/libx.so", 512 * K),
                          ("usr/share/doc", 40 * K), ("usr/share/tiny", 900), ("etc/conf", 6000),
                          ("var/log/messages", 200 * K)):
            self.write(f"@base/{rel}", rel, size)
        for block in range(0, 700):  # every other 4 KiB block: hundreds of extent items, several leaves
            self.write("@base/usr/lib/many", f"many-{block}", 4 * K, 2 * block * 4 * K)
        self.commit()
        self.sh("btrfs", "subvolume", "snapshot", "-r", b / "@base", b / "@snap1")
        self.write("@base/usr/lib/libx.so", "libx-patch", 32 * K, 128 * K)
        self.write("@base/var/log/messages", "messages-more", 20 * K, 200 * K)
        self.write("@base/usr/lib/many", "many-changed", 4 * K, 2 * 350 * 4 * K)
        self.commit()
        self.sh("btrfs", "subvolume", "snapshot", b / "@base", b / "@snap2")
        self.write("@snap2/etc/conf", "conf-snap2", 6000)
        self.write("@base/usr/lib/libx.so", "libx-patch2", 32 * K, 384 * K)
        self.write("@base/usr/lib/many", "many-changed-again", 4 * K, 2 * 100 * 4 * K)
        self.commit()

        self.sh("btrfs", "subvolume", "create", b / "@gone")
        self.write("@gone/data", "gone", 256 * K)
        self.commit()
        self.sh("btrfs", "subvolume", "snapshot", b / "@gone", b / "@gone-snap")
        self.write("@gone/data", "gone-new", 64 * K, 64 * K)
        self.commit()
        self.sh("btrfs", "subvolume", "delete", b / "@gone-snap")
        self.commit()
        self.sh("btrfs", "subvolume", "sync", b)
        self.commit()


def build_sharing_image(directory: Path) -> SharingImage:
    kernel = load_fixture_module("kernel")
    capture = load_fixture_module("capture")
    img = kernel.make_sparse_image(directory / "sharing.img", IMAGE_SIZE)
    with kernel.loop_devices([img]) as (dev,):
        kernel.make_fs([dev], fsid=str(uuid.uuid4()))
        with kernel.mounted(dev) as mnt:
            _Builder(kernel, mnt).build()
        with kernel.mounted(dev, "ro,subvolid=5") as mnt:
            listing = capture.listing(mnt)
            fiemap = {r["path"]: capture.fiemap(mnt / r["path"]) for r in listing if r["type"] == "file"}
            subvolumes = capture.subvolumes(mnt)
    return SharingImage(img, fiemap, listing, subvolumes)
