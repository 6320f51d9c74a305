#!/usr/bin/env python3
"""Time the content designs the way ``report`` will run them (bench/run.py --designs).

``designs.py MODE IMAGE``: MODE ``none`` builds the report as ``btrfsscan
report`` does today; ``csum`` also reads the checksum tree and computes
overlay_copy_up, file_fingerprint and content_dedupe from it; ``data`` does
that from the data (``--read-data``: every extent read once, pages hashed).
Prints the figures as one JSON line.
"""

from __future__ import annotations

import json
import sys

from btrfsscan.cache import content as C
from btrfsscan.cache.designs import content_dedupe, file_fingerprint, overlay_copy_up
from btrfsscan.cache.layout import build_layout
from btrfsscan.cache.report import build_report
from btrfsscan.format.constants import ObjectId
from btrfsscan.model.csums import read_csum_tree
from btrfsscan.model.file_data import hash_pages
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.model.fs_tree import FileScanner
from btrfsscan.model.versions import inode_versions
from btrfsscan.present.report_cmd import filesystem_facts


def main(mode: str, image: str, page_size: int = 4096) -> None:
    fs = open_filesystem([image])
    subvols = fs.subvolumes.live()
    scanner = FileScanner(fs.reader, fs.warnings, decompress_inline=mode == "data")
    versions = inode_versions(scanner.scan_leaves(subvols), fs.warnings)
    S = fs.superblock.sectorsize
    report = build_report(versions, page_size=page_size, filesystem=filesystem_facts(fs), subvolumes=[],
                          sectorsize=S, top=10, path_of=fs.namespace.path_of, partial=fs.partial,
                          warnings=fs.warnings.messages(), metadata_dump=fs.is_metadump)
    out = {"per_inode": report.totals.per_inode_pages}
    if mode != "none":
        layout = build_layout(versions, page_size, S)
        if mode == "data":
            requests = C.page_requests(layout)
            hashes, known = hash_pages(fs.volume, requests.extents, requests.pieces, requests.n_outputs,
                                       page_size, fs.warnings)
            content = C.content_from_hashes(layout, requests, hashes, known)
        else:
            table = read_csum_tree(fs.reader, fs.tree_root(ObjectId.CSUM_TREE), fs.superblock.csum, S, fs.warnings)
            content = C.content_from_csums(layout, table, inline_data=not fs.is_metadump)
        for result in (overlay_copy_up.figures(layout, inline_data=not fs.is_metadump), file_fingerprint.figures(layout, content),
                       content_dedupe.figures(layout, content)):
            out[result.name] = result.pages
        out["unknown_pages"] = result.unknown_pages
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
