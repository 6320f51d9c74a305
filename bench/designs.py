#!/usr/bin/env python3
"""Time the content designs as ``report`` runs them (bench/run.py --designs).

``designs.py MODE IMAGE``: ``none`` builds the report with the registry cut
to the four models that read no content (per_inode, shared_extent,
shared_extent_compressed, rfc_as_posted: the report before the content
designs) and without reading the checksum tree, which only those designs
use (the inline data is still hashed while the leaves are parsed: that
cannot be left out from here); ``csum`` is ``report`` (content ids from the
checksum tree);
``data`` is ``report --read-data`` (every distinct extent read once, pages
hashed). Prints the model totals as one JSON line.
"""

from __future__ import annotations

import json
import sys

import btrfsscan.present.cli  # noqa: F401  the command line's process settings (OpenBLAS threads, glibc's allocator)
from btrfsscan.analysis.report import scan_report
from btrfsscan.model.filesystem import open_filesystem

BEFORE = ("per_inode", "shared_extent", "shared_extent_compressed", "rfc_as_posted")


def main(mode: str, image: str, page_size: int = 4096) -> None:
    if mode == "none":  # the registry as it was before the content designs, no checksum tree (bench only)
        from btrfsscan.analysis import report as scan
        from btrfsscan.cache import analyze, report
        from btrfsscan.cache.content import CsumTreeContent
        from btrfsscan.model.csums import csum_table

        analyze.MODELS = report.MODELS = tuple(m for m in analyze.MODELS if m.name in BEFORE)
        scan.content_source = lambda fs, **_: CsumTreeContent(csum_table([], fs.superblock.csum,
                                                                         fs.superblock.sectorsize))
    fs = open_filesystem([image])
    try:
        result = scan_report(fs, page_size=page_size, top=10, read_data=mode == "data")
    finally:
        fs.close()
    out = {name: m.pages for name, m in result.totals.models.items()}
    out["unknown_pages"] = result.totals.models.get("content_dedupe") and result.totals.models["content_dedupe"].unknown_pages
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
