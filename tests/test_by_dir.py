"""`report --by-dir` and `sharing_matrix` against a brute-force count over the kernel's own view of the files.

The expectation comes from what the build captured through the kernel —
`listing.json` (lstat, INO_LOOKUP subvolume ids), `fiemap.json` (FIEMAP),
`subvolumes.json` (`btrfs subvolume list`) — never from btrfsscan:

* a regular inode is (subvol, st_ino); it lies in the directory of its link
  whose parent directory has the smallest inode number (the first INODE_REF
  in key order), its pages are ceil(size / 4096);
* a page is shareable when one FIEMAP extent without DATA_INLINE, ENCODED,
  UNWRITTEN or NOT_ALIGNED covers it; its key is the logical address FIEMAP
  reports (fe_physical) divided by 4096; a page whose key ``c`` file pages map
  costs ``1/c`` under shared_extent;
* a directory's figures are the sums over every inode below it (the
  directories of deeper inodes cut at DEPTH levels).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from support import run, run_json

from btrfsscan.model.directories import EntryKind, directory_tree
from btrfsscan.model.filesystem import open_filesystem
from btrfsscan.model.fs_tree import FileScanner
from btrfsscan.model.links import LINK_DTYPE, LinkTable
from btrfsscan.model.versions import inode_versions
from btrfsscan.present.views.report import schema

FILES = Path(__file__).resolve().parent / "fixtures" / "files"
P = 4096
UNSHAREABLE = {"DATA_INLINE", "ENCODED", "UNWRITTEN", "NOT_ALIGNED", "DELALLOC", "DATA_ENCRYPTED", "UNKNOWN"}
FIXTURES = ["sample", "subvols", "reflinks"]


def _expected(name: str):
    directory = FILES / name / "expected"
    listing = json.loads((directory / "listing.json").read_text())
    fiemap = json.loads((directory / "fiemap.json").read_text())
    subvol_path = {s["id"]: s["path"] for s in json.loads((directory / "subvolumes.json").read_text())
                   if not s["deleted"]}
    subvol_path[5] = ""
    by_path = {r["path"]: r for r in listing}
    links: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
    for r in listing:
        if r["type"] != "file":
            continue
        parent = r["path"].rpartition("/")[0] or "."
        links[r["subvol"], r["st_ino"]].append((by_path[parent]["st_ino"], r["path"]))
    inodes = {}
    for key, paths in links.items():
        path = min(paths)[1]
        record = by_path[path]
        npages = -(-record["size"] // P)
        keys = []
        for e in fiemap.get(path, []):
            if UNSHAREABLE & set(e["flags"]):
                continue
            for off in range(e["fe_logical"], e["fe_logical"] + e["fe_length"], P):
                if off // P < npages and (e["fe_physical"] + off - e["fe_logical"]) % P == 0:
                    keys.append((e["fe_physical"] + off - e["fe_logical"]) // P)
        base = subvol_path[key[0]]
        rel = path[len(base) + 1:] if base else path
        inodes[key] = {"dirs": rel.split("/")[:-1], "nlink": record["nlink"], "npages": npages, "keys": keys}
    return inodes, subvol_path


def _brute_force(name: str, depth: int):
    """{(subvol, relpath): (files, inodes, per_inode pages, shared_extent pages)} and the sharing matrix."""
    inodes, subvol_path = _expected(name)
    c = Counter(k for ino in inodes.values() for k in ino["keys"])
    dirs: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for (sv, _), ino in inodes.items():
        cost = ino["npages"] - sum(1 - 1 / c[k] for k in ino["keys"])
        for d in range(min(depth, len(ino["dirs"])) + 1):
            figures = dirs[sv, "/".join(ino["dirs"][:d])]
            for i, v in enumerate((ino["nlink"], 1, ino["npages"], cost)):
                figures[i] += v
    keys_of: dict[int, set[int]] = defaultdict(set)
    for (sv, _), ino in inodes.items():
        keys_of[sv].update(ino["keys"])
    return dirs, keys_of, subvol_path


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(schema())


@pytest.mark.parametrize("depth", [0, 1, 3])
@pytest.mark.parametrize("name", FIXTURES)
def test_by_dir_matches_brute_force(name, depth, fixture_images, validator):
    doc = run_json("report", "--json", "--by-dir", depth, "--top", 10000, *fixture_images("files", name).values())
    validator.validate(doc)
    want, _, subvol_path = _brute_force(name, depth)
    entries = doc["by_dir"]["entries"]
    assert doc["by_dir"]["depth"] == depth
    assert not [e for e in entries if e["kind"] in ("rest", "unreachable")]
    got = {(e["subvol"], e["relpath"]): e for e in entries}
    assert set(got) == set(want)
    for key, (files, inodes, per_inode, shared) in want.items():
        e = got[key]
        assert (e["files"], e["inodes"], e["pages"]["per_inode"]) == (files, inodes, per_inode), key
        assert e["pages"]["shared_extent"] == pytest.approx(shared, abs=2e-3), key
        assert e["saved_pages"] == pytest.approx(per_inode - shared, abs=2e-3), key
        base = subvol_path[key[0]]
        assert e["path"] == "/".join(p for p in (base, key[1]) if p)
        assert e["depth"] == (len(key[1].split("/")) if key[1] else 0)
    for n, e in enumerate(entries):  # parents come first and name the enclosing directory
        if e["parent"] is None:
            assert e["kind"] == "subvolume" and e["relpath"] == ""
        else:
            parent = entries[e["parent"]]
            assert e["parent"] < n and parent["subvol"] == e["subvol"]
            assert parent["relpath"] == e["relpath"].rpartition("/")[0]
    roots = [e for e in entries if e["kind"] == "subvolume"]
    assert sum(e["files"] for e in roots) == doc["totals"]["files"]
    assert sum(e["pages"]["shared_extent"] for e in roots) == pytest.approx(
        doc["totals"]["models"]["shared_extent"]["pages"], abs=0.01)


def test_by_dir_top_folds_the_rest(fixture_images, validator):
    images = fixture_images("files", "sample").values()
    full = run_json("report", "--json", "--by-dir", 3, "--top", 10000, *images)["by_dir"]["entries"]
    doc = run_json("report", "--json", "--by-dir", 3, "--top", 2, *images)
    validator.validate(doc)
    entries = doc["by_dir"]["entries"]
    by_key = {(e["subvol"], e["relpath"]): e for e in full}
    for n, e in enumerate(entries):
        kids = [k for k in entries if k["parent"] == n]
        shown = [k for k in kids if k["kind"] == "directory"]
        assert len(shown) <= 2
        if e["kind"] == "rest" or e["kind"] == "unreachable":
            continue
        all_kids = [k for k in full if k["parent"] is not None and full[k["parent"]] is by_key[e["subvol"], e["relpath"]]]
        largest = sorted(all_kids, key=lambda k: -k["pages"]["per_inode"])[:2]
        assert sorted(k["pages"]["per_inode"] for k in shown) == sorted(k["pages"]["per_inode"] for k in largest)
        rest = [k for k in kids if k["kind"] == "rest"]
        assert len(rest) == (1 if len(all_kids) > 2 else 0)
        if rest:
            assert rest[0]["folded"] == len(all_kids) - 2
            assert rest[0]["pages"]["per_inode"] + sum(k["pages"]["per_inode"] for k in shown) == pytest.approx(
                sum(k["pages"]["per_inode"] for k in all_kids))


@pytest.mark.parametrize("name", ["sample", "subvols"])  # the ones with several subvolumes
def test_sharing_matrix_matches_brute_force(name, fixture_images, validator):
    doc = run_json("report", "--json", *fixture_images("files", name).values())
    validator.validate(doc)
    _, keys_of, _ = _brute_force(name, 0)
    matrix = doc["sharing_matrix"]
    ids = matrix["subvolumes"]
    assert ids == sorted(s["id"] for s in doc["subvolumes"] if s["inodes"])
    for i, a in enumerate(ids):
        for j, b in enumerate(ids):
            assert matrix["shared_pages"][i][j] == len(keys_of[a] & keys_of[b]), (a, b)
    assert any(matrix["shared_pages"][i][j] for i in range(len(ids)) for j in range(len(ids)) if i != j)


def _tree_rows(text: str) -> list[tuple[int, str, int, int]]:
    """(nesting, name, files, cache today bytes) of each row of the text form's tree (``--raw``)."""
    lines = [line.rstrip() for line in text.split("Page cache by directory", 1)[1].splitlines()]
    rule = next(n for n, line in enumerate(lines) if line.strip() and set(line.strip()) == {"─"})
    end = lines.index("", rule)
    rows = []
    for line in lines[rule + 1:end]:
        m = re.match(r"^  ((?:[│ ]   )*(?:[├└]── )?)(\S.*?)\s{2,}(\d+)\s+(\d+)\s", line)
        assert m, line
        rows.append((len(m.group(1)) // 4, m.group(2), int(m.group(3)), int(m.group(4))))
    return rows


@pytest.mark.parametrize("name", ["sample", "subvols"])
def test_text_tree_is_largest_first_and_top_limited(name, fixture_images):
    """The table form of --by-dir: each subvolume a tree of its directories, children largest first, at most
    --top of them and the rest folded into one row; figures from the brute-force count."""
    dirs, _, subvol_path = _brute_force(name, 2)
    result = run("report", "--by-dir", 2, "--top", 2, "--raw", *fixture_images("files", name).values())
    assert result.exit_code == 0, result.stderr
    rows = _tree_rows(result.stdout)
    stack: list[tuple[int, str]] = []  # the (subvol, relpath) of each open level
    children: dict[tuple[int, str], list[tuple[str, int]]] = defaultdict(list)
    for level, label, files, today in rows:
        del stack[level:]
        if level == 0:
            sv = next(s for s, p in subvol_path.items() if label in (p, f"subvolume {s}")
                      or (s == 5 and label == "the top-level subvolume"))
            stack.append((sv, ""))
            assert (files, today) == tuple(dirs[sv, ""][i] * m for i, m in ((0, 1), (2, P))), label
            continue
        sv, parent = stack[-1]
        children[sv, parent].append((label, today))
        if label.startswith("("):  # the folded rest
            stack.append((sv, "\0"))
            continue
        rel = f"{parent}/{label.rstrip('/')}" if parent else label.rstrip("/")
        assert (files, today) == (dirs[sv, rel][0], dirs[sv, rel][2] * P), rel
        stack.append((sv, rel))
    assert children
    for (sv, parent), shown in children.items():
        everything = sorted((figures[2] * P for (s, rel), figures in dirs.items()
                             if s == sv and rel and rel.rpartition("/")[0] == parent), reverse=True)
        named = [today for label, today in shown if not label.startswith("(")]
        assert named == everything[:2], (sv, parent)
        folded = [label for label, _ in shown if label.startswith("(")]
        assert folded == ([f"({len(everything) - 2} more)"] if len(everything) > 2 else []), (sv, parent)


@pytest.mark.parametrize("covered", ["every leaf", "no leaf"])
def test_inodes_without_link_rows_are_unreachable(covered, fixture_images):
    """Leaves without link rows (none kept, or a table that stops short of the last leaves): every inode has no
    name, so each holder's copy lands in its subvolume's unreachable entry — never an IndexError."""
    fs = open_filesystem(list(fixture_images("files", "sample").values()))
    try:
        leaves = FileScanner(fs.reader, fs.warnings, links=True).scan_leaves(fs.subvolumes.live())
    finally:
        fs.close()
    starts = np.zeros(leaves.n_leaves + 1 if covered == "every leaf" else 1, np.int64)
    leaves = dataclasses.replace(leaves, links=LinkTable(np.zeros(0, LINK_DTYPE), starts, np.zeros(0, np.uint8)))
    versions = inode_versions(leaves)
    tree = directory_tree(leaves, versions, 3)
    inodes, _ = _expected("sample")
    assert len(tree.pair_entry) == len(inodes)  # one copy per (subvolume, regular inode) the kernel listed
    assert (tree.kind[tree.pair_entry] == EntryKind.UNREACHABLE).all()
    holders = Counter(int(versions.subvol_ids[i]) for i in tree.subvol[tree.pair_entry].tolist())
    assert holders == Counter(sv for sv, _ in inodes)
