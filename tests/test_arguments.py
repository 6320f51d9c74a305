"""Small argument and unit rules of issue 13: map's PATH, --sample everywhere, --raw units."""

from __future__ import annotations

import json
import re

from support import run


def test_map_without_path_says_path_is_missing():
    result = run("map", "disk.img")
    assert result.exit_code == 2 and "the last argument is the file's path" in result.stderr


def test_map_with_a_trailing_slash_is_refused():
    result = run("map", "--sample", "@base/etc/hosts/")
    assert result.exit_code == 2 and "ends with /" in result.stderr
    assert run("map", "--sample", "@base/etc/hosts").exit_code == 0


def test_chunks_and_map_logical_take_sample():
    chunks = run("chunks", "--sample", "--json")
    assert chunks.exit_code == 0
    logical = json.loads(chunks.stdout)["chunks"][0]["logical"]
    assert run("map-logical", "--sample", str(logical), "--json").exit_code == 0


def test_raw_report_has_units_and_percent_signs():
    first = run("report", "--sample", "--raw").stdout.splitlines()[0]
    assert re.search(r"caches \d+ B today", first) and re.search(r"\(\d+\.\d+%\) saved", first), first
