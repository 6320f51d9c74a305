#!/usr/bin/env python3
"""What ``btrfsscan live`` will run, timed by bench/run.py --live: collect + the working-set figures.

Usage: live_probe.py DIR...   (prints one JSON line: files, pages, per_inode, shared_extent)
"""

import json
import sys

from btrfsscan.live.collect import collect
from btrfsscan.workingset import backing, pages

capture = collect(sys.argv[1:])
res = capture.residency
ws = pages.analyze(res, backing.from_fiemap(res, capture.extents, res.filesystem.sectorsize))
print(json.dumps({"files": res.files, "files_with_pages": res.files_with_pages, "pages": res.pages,
                  "per_inode": pages.per_inode_pages(ws), "shared_extent": pages.shared_extent_pages(ws),
                  "directories": capture.directories, "warnings": len(capture.warnings.items)}))
