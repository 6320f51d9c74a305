#!/usr/bin/env python3
"""What ``btrfsscan live`` runs, timed by bench/run.py --live: collect + the working-set report.

Usage: live_probe.py DIR...   (prints one JSON line: files, pages, per_inode, shared_extent)
"""

import json
import sys

from btrfsscan.analysis.live import live_report

result = live_report(sys.argv[1:], top=10)
res, totals = result.residency, result.report.totals
print(json.dumps({"files": res.files, "files_with_pages": res.files_with_pages, "pages": res.pages,
                  "per_inode": totals.per_inode_pages, "shared_extent": totals.models["shared_extent"].pages,
                  "warnings": len(result.report.warnings)}))
