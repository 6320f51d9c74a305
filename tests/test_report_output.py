"""Tests of the page-cache report and its outputs: JSON (validated against the
shipped schema), Prometheus text exposition, and the rich rendering."""

from __future__ import annotations

import dataclasses
import io
import json
import re

import jsonschema
import numpy as np
import pytest

from btrfsscan.analysis.report import example_paths
from btrfsscan.cache.analyze import analyze
from btrfsscan.cache.facts import DeviceInfo, FilesystemFacts, SubvolumeInfo
from btrfsscan.cache.registry import MODELS
from btrfsscan.cache.report import METADATA_DUMP_NOTE, build_report
from btrfsscan.model.tables import EXTENT_DTYPE, INODE_DTYPE, FileTables
from btrfsscan.present.document import CommandOutput
from btrfsscan.present.renderers import table
from btrfsscan.present.renderers.prometheus import METRICS, prometheus_text
from btrfsscan.present.units import human_bytes
from btrfsscan.present.contract import schema
from btrfsscan.present.views.report import focus, report_document, summary

KiB, MiB = 1024, 1 << 20
FSID = "0634ac5a-61f8-590d-b076-d5b350bd2f0f"
ROOT_UUID = "5bf1764d-d341-9549-b6df-5037ada132a5"


def snapshot_tables(snapshots: int = 3) -> FileTables:
    """@rootfs (256) with two files, ``snapshots`` snapshots of it, and @home (300) with an inline file.

    /big: 1 MiB in one extent at 1 GiB; /hl: 10000 bytes (2 links) at 2 GiB; snapshot N's /big
    rewrote its last 64K (a new extent per snapshot); @home/note is 100 bytes inline.
    """
    inodes, extents = [], []

    def ino(sv, i, size, nlink=1):
        inodes.append((sv, i, size, size, nlink, 0o100644))

    def ext(sv, i, fo, nb, db, off=0, typ=1):
        extents.append((sv, i, fo, nb, db, nb if typ else 100, off, nb, typ, 0, bytes(16)))

    for n, sv in enumerate([256] + [400 + k for k in range(snapshots)]):
        ino(sv, 257, MiB)
        ino(sv, 258, 10000, 2)
        ext(sv, 258, 0, 12 * KiB, 2 << 30)
        if sv == 256:
            ext(sv, 257, 0, MiB, 1 << 30)
        else:
            ext(sv, 257, 0, MiB - 64 * KiB, 1 << 30)
            ext(sv, 257, MiB - 64 * KiB, 64 * KiB, (3 << 30) + n * MiB)
    ino(300, 257, 100)
    ext(300, 257, 0, 100, 0, typ=0)
    ino(300, 256, 0)
    inodes_arr = np.array([(sv, i, size, nb, nl, mode, 0, 0, 0, 0) for sv, i, size, nb, nl, mode in inodes], INODE_DTYPE)
    inodes_arr[-1]["mode"] = 0o040755  # a directory
    return FileTables(inodes_arr, np.array(extents, EXTENT_DTYPE))


FACTS = FilesystemFacts(
    label="test\x1b[31m",
    fsid=FSID,
    devices=(DeviceInfo(1, "9f6c7c4e-8b1e-4d3a-9c55-0ed1d6c0e0a1", "dev0.img", 1 << 34, 1 << 32),),
    data_profiles=("SINGLE",),
    metadata_profiles=("DUP",),
    system_profiles=("DUP",),
    nodesize=16384,
    sectorsize=4096,
    generation=42,
    incompat_features=("MIXED_BACKREF", "NO_HOLES"),
    compat_ro_features=("FREE_SPACE_TREE",),
)


def subvols(snapshots: int = 3) -> list[SubvolumeInfo]:
    out = [SubvolumeInfo(256, "@rootfs", ROOT_UUID, None, False, 9),
           SubvolumeInfo(300, "@home", "3a4925f9-57e5-f24c-9601-258262eb310e"),
           SubvolumeInfo(301, "@empty")]
    out += [SubvolumeInfo(400 + k, f"snapshots/{k}", f"00000000-0000-0000-0000-{k:012d}", ROOT_UUID, True)
            for k in range(snapshots)]
    return out


def paths(sv, ino):
    """Paths from the top level, as the CLI gives them."""
    top = {256: "@rootfs", 300: "@home"}.get(sv, f"snapshots/{sv - 400}")
    name = {257: "big", 258: "hl"}.get(ino) if sv != 300 else "note"
    return f"{top}/{name}"


def make_report(page_size=4096, *, facts=FACTS, top=5, **kw):
    analysis = analyze(snapshot_tables(), page_size, facts, top=top)
    return build_report(analysis, subvolumes=subvols(), paths=example_paths(analysis, paths), **kw)


def report_json(report) -> dict:
    return report_document(report).json()


def _section(document, key):
    return next(s for s in document.sections if s.key == key)


def report_text(report, raw: bool = False, width: int = 160) -> str:
    """The report as ``report`` prints it in a table, as plain text."""
    stream = io.StringIO()
    table.render(CommandOutput("report", (report_document(report, raw=raw),)), stream, width=width)
    return stream.getvalue()


def test_report_figures():
    r = make_report()
    # per inode: 4 subvols x (256 + 3 pages) + 1 inline page = 1037
    assert r.totals.per_inode_pages == 1037 and r.totals.inodes == 9 and r.totals.files == 13
    # shared_extent: keys 1G..1G+1M (256) + 3 pages at 2G + 3 x 16 rewritten pages + the inline page = 308
    se = r.model("shared_extent")
    assert se.pages == 308 and se.saved_pages == 729
    assert se.saved_pct == pytest.approx(100 * 729 / 1037)
    assert sum(k.pages for k in r.by_kind) == 1037
    assert {k.kind: k.pages for k in r.by_kind}["inline"] == 1
    rows = {s.id: s for s in r.subvolumes}
    assert rows[256].shares_with[0].id in (400, 401, 402) and rows[256].shares_with[0].shared_pages == 243
    assert rows[301].per_inode_pages == 0 and rows[300].unshareable_pages == 1
    assert r.top_extents[0].logical == 1 << 30 and r.top_extents[0].paths == ("@rootfs/big", "snapshots/0/big", "snapshots/1/big")
    assert r.top_extents[0].references == 4 and r.top_extents[0].subvolume_count == 4
    assert r.top_files[0].path.endswith("/big")
    assert not r.partial and r.model("rfc_as_posted").applicable


def test_json_validates_against_schema():
    for page_size in (4096, 16384, 65536):
        doc = report_json(make_report(page_size))
        jsonschema.Draft202012Validator(schema("report")).validate(doc)
        assert list(doc) == ["schema_version", "page_size", "filesystem", "totals", "by_kind", "subvolumes",
                             "top_extents", "top_files", "paths", "partial", "warnings", "sharing_matrix", "by_dir"]
        assert doc["by_dir"] is None and doc["paths"] is None  # only with --by-dir, --path
        json.dumps(doc)  # serialisable as is
    doc = report_json(make_report(16384))
    assert doc["totals"]["models"]["rfc_as_posted"] == {
        "title": "RFC as posted",
        "design": "the 2021 RFC: shared extents cached once, keyed by their offset on the one device",
        "pages": None, "bytes": None, "saved_pages": None, "saved_bytes": None, "saved_pct": None, "applicable": False,
        "reason": "the RFC needs page size == sector size (page size 16384, sector size 4096)",
        "content_source": None, "unknown_pages": None, "expected_false_merges": None, "subvolumes": None,
        "top_files": None}
    assert sum(v["pages"] for v in doc["by_kind"].values()) == doc["totals"]["per_inode"]["pages"]


def test_warnings_collection_makes_it_partial():
    from btrfsscan.errors import Warnings

    w = Warnings()
    w.add("checksum mismatch", "tree block 30408704")
    r = make_report(warnings=w.messages())
    assert r.partial and r.warnings == ("checksum mismatch (tree block 30408704)",)
    assert not make_report(warnings=Warnings().messages()).partial


def test_json_partial_metadata_dump_and_empty():
    doc = report_json(make_report(warnings=["tree block 123 unreadable (dev 1)"], metadata_dump=True))
    jsonschema.Draft202012Validator(schema("report")).validate(doc)
    assert doc["partial"] is True and doc["warnings"] == ["tree block 123 unreadable (dev 1)"]
    assert METADATA_DUMP_NOTE in doc["filesystem"]["notes"] and doc["filesystem"]["metadata_dump"] is True
    empty = build_report(analyze(FileTables(np.zeros(0, INODE_DTYPE), np.zeros(0, EXTENT_DTYPE)), 4096,
                                 FilesystemFacts(fsid=FSID)), subvolumes=[SubvolumeInfo(5, "")])
    doc = report_json(empty)
    jsonschema.Draft202012Validator(schema("report")).validate(doc)
    assert doc["totals"]["models"]["shared_extent"]["saved_pct"] == 0.0


def test_schema_is_strict():
    doc = report_json(make_report())
    doc["totals"]["extra"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema("report")).validate(doc)


def test_rejects_unsupported_page_size():
    with pytest.raises(ValueError):
        make_report(8192)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\} (\S+)$')


def test_prometheus_text():
    r = make_report(warnings=["x"])
    text = prometheus_text(r)
    assert text.endswith("\n")
    helps, types, samples = set(), set(), []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind == "gauge"
            types.add(name)
        else:
            m = _SAMPLE.match(line)
            assert m, line
            assert m.group(1) in types  # TYPE comes before its samples
            float(m.group(3))
            samples.append((m.group(1), m.group(2), float(m.group(3))))
    assert helps == types == {name for name, _ in METRICS}
    got = {(name, labels): value for name, labels, value in samples}
    assert got[("btrfsscan_page_cache_pages", f'fsid="{FSID}",model="per_inode"')] == 1037
    assert got[("btrfsscan_page_cache_bytes", f'fsid="{FSID}",model="shared_extent"')] == 308 * 4096
    assert got[("btrfsscan_page_cache_saved_bytes", f'fsid="{FSID}",model="shared_extent"')] == 729 * 4096
    assert got[("btrfsscan_report_partial", f'fsid="{FSID}"')] == 1
    assert got[("btrfsscan_model_applicable", f'fsid="{FSID}",model="rfc_as_posted"')] == 1
    # a model that does not apply has no page samples
    text16 = prometheus_text(make_report(16384))
    assert 'model="rfc_as_posted"} ' in text16 and 'btrfsscan_page_cache_pages{fsid="%s",model="rfc_as_posted"}' % FSID not in text16
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return
    assert {f.name for f in text_string_to_metric_families(text)} >= {"btrfsscan_page_cache_pages"}


def test_prometheus_escapes_labels():
    r = make_report(facts=dataclasses.replace(FACTS, fsid='a"b\\c\nd'))
    assert 'fsid="a\\"b\\\\c\\nd"' in prometheus_text(r)


def test_summary_and_rendering():
    r = make_report()
    lines = summary(r)
    assert lines[0] == ("Reading every file once caches 4.1 MiB today; a shared-extent cache would need 1.2 MiB "
                          "— 2.8 MiB (70.3%) saved, most of it in @rootfs and its 3 snapshots.")
    assert focus(r) == "most of it in @rootfs and its 3 snapshots"
    raw = summary(r, raw=True)
    assert str(1037 * 4096) in raw[0]
    text = report_text(r)
    assert lines[0] in " ".join(text.split("\n")) or "Reading every file once caches 4.1 MiB today" in text
    for title in ("Page cache after reading every file once", "Today's page cache by kind", "Subvolumes", "Most shared extents",
                  "Files saving the most", "Filesystem"):
        assert title in text
    assert "\x1b" not in text and "test\\x1b[31m" in text  # the label's escape is shown, not sent
    # one field table drives labels and cells
    models = _section(report_document(r), "models")
    assert tuple(f.label for f in models.table_fields())[:3] == ("model", "design", "pages") and len(models.records) == len(MODELS)
    assert _section(report_document(r, raw=True), "by_kind").fields[1].key == "pages"
    assert _section(report_document(r, raw=True), "by_kind").records[0].cells[1].text == str(r.by_kind[0].pages)


def test_rendering_partial_and_not_applicable():
    r = make_report(65536, warnings=["w1", "w2"], metadata_dump=True)
    text = report_text(r, raw=True)
    assert "Partial result: 2 warnings" in text and "w2" in text
    assert "does not apply" in text and METADATA_DUMP_NOTE in text


def test_human_bytes():
    assert human_bytes(0) == "0 B" and human_bytes(1023) == "1023 B"
    assert human_bytes(2040109465) == "1.9 GiB" and human_bytes(2040109465, raw=True) == "2040109465 B"
