"""``shared`` (FIEMAP's SHARED) and ``shared_bytes`` of ``map`` and ``ls`` on a kernel-made image.

The image (``sharing_image.py``) holds bookends, a reflink within one file,
a reflink across files, snapshot sharing before and after changes, and a
snapshot deleted and cleaned up. Expected values: FIEMAP on the mounted
filesystem, for SHARED as the kernel decides it; a brute force over the
FIEMAP logical ranges of every file for the shared bytes
(``test_files.fiemap_shared_bytes``). Needs root, loop devices, the btrfs
module, btrfs-progs and xfs_io.
"""

from __future__ import annotations

import json

import pytest
from sharing_image import SharingImage, build_sharing_image
from support import kernel_unavailable, run
from test_files import check_against_fiemap, check_ls_against_map, fiemap_shared_bytes

from btrfsscan.analysis.files import listing
from btrfsscan.model.filemap import build_file_map
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.model.fs_tree import FileScanner
from btrfsscan.present.views.files import ls_document, map_document

WHY_NOT = kernel_unavailable(("losetup", "mkfs.btrfs", "btrfs", "xfs_io"))
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


@pytest.fixture(scope="module")
def sharing(tmp_path_factory) -> SharingImage:
    return build_sharing_image(tmp_path_factory.mktemp("sharing"))


@pytest.fixture(scope="module")
def scanned(sharing):
    fs = open_filesystem([sharing.image])
    tables = FileScanner(fs.reader, fs.warnings).scan(fs.subvolumes.live())
    docs = {path: map_document(build_file_map(fs, *sharing.inode_of(path), path, tables)).json()
            for path in sharing.fiemap}
    entries = {e["path"]: e for e in ls_document(listing(fs, ".", recursive=True)).json()["entries"]}
    yield docs, entries, fs
    fs.close()


def _flags(sharing: SharingImage, path: str) -> list[bool]:
    return ["SHARED" in r["flags"] for r in sharing.fiemap[path] if "DATA_INLINE" not in r["flags"]]


def test_the_image_has_every_case(sharing):
    """What FIEMAP says on the cases the image was built for (so the comparison below covers them)."""
    assert _flags(sharing, "bookend") == [False, False, False]  # two bookends, the new middle
    assert any(_flags(sharing, "selfref")) and any(_flags(sharing, "cross/b"))
    assert all(_flags(sharing, "@snap1/usr/bin/tool")) and all(_flags(sharing, "@base/usr/bin/tool"))
    assert not all(_flags(sharing, "@base/usr/lib/libx.so")) and any(_flags(sharing, "@base/usr/lib/libx.so"))
    many = _flags(sharing, "@base/usr/lib/many")
    assert len(many) >= 600 and any(many) and not all(many)
    assert not any(_flags(sharing, "@gone/data"))  # its snapshot is gone


def test_map_shared_is_fiemap_shared(sharing, scanned):
    """Every file: map merged like FIEMAP equals FIEMAP, SHARED flags included; its shared bytes are the
    brute force's; ls shows the same figures."""
    docs, entries, fs = scanned
    shared = fiemap_shared_bytes({sharing.inode_of(p): records for p, records in sharing.fiemap.items()}, 4096)
    for path, records in sharing.fiemap.items():
        check_against_fiemap(docs[path], records, 4096, shared[sharing.inode_of(path)])
        check_ls_against_map(entries[path], docs[path])
    assert not fs.warnings, fs.warnings.messages()


def test_bookends_are_neither_shared_nor_shared_bytes(scanned):
    """The case of the bug: one extent referenced twice under one backref (refs 2) is not shared."""
    docs, entries, _ = scanned
    ends = [e for e in docs["bookend"]["extents"] if e["refs"] == 2]
    assert len(ends) == 2 and not any(e["shared"] or e["shared_bytes"] for e in ends)
    assert entries["bookend"]["shared_bytes"] == 0


def test_cli_map_and_ls_json(sharing):
    """The commands' JSON (validated against the shipped schemas by ``support.run``) carries the same."""
    result = run("map", "--json", sharing.image, "selfref")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [e["shared"] for e in doc["extents"] if e["type"] == "regular"] == \
        [("SHARED" in r["flags"]) for r in sharing.fiemap["selfref"]]
    result = run("ls", "--json", sharing.image, "cross")
    assert result.exit_code == 0, result.stderr
    by_name = {e["path"]: e["shared_bytes"] for e in json.loads(result.stdout)["entries"]}
    assert by_name == {"cross/a": 768 * 1024 - 128 * 1024, "cross/b": 768 * 1024 - 128 * 1024}
