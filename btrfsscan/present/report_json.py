"""The page-cache report as a JSON document (``schema_version`` 1).

The document is described exactly by ``schemas/report.schema.json`` (JSON
Schema draft 2020-12), which ships with the package; ``schema()`` loads it.
Sizes are exact integers (pages and bytes); percentages and fair-share page
counts are floats rounded to 4 and 3 decimals.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib import resources
from typing import Any

from ..cache.by_dir import SAVING_MODEL, ByDir, DirEntry
from ..cache.report import ExtentFigures, FileFigures, ModelFigures, Report, SubvolumeFigures
from ..cache.sharing_matrix import SharingMatrix

SCHEMA_VERSION = 1
SCHEMA_RESOURCE = "report.schema.json"


def schema() -> dict[str, Any]:
    """The shipped JSON Schema of ``report_json``'s output."""
    text = resources.files(__package__).joinpath("schemas").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)


def _pct(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _model(m: ModelFigures) -> dict[str, Any]:
    return {
        "pages": m.pages,
        "bytes": m.bytes,
        "saved_pages": m.saved_pages,
        "saved_bytes": m.saved_bytes,
        "saved_pct": _pct(m.saved_pct),
        "applicable": m.applicable,
        "reason": m.reason,
    }


def _subvolume(s: SubvolumeFigures) -> dict[str, Any]:
    return {
        "id": s.id,
        "path": s.path,
        "uuid": s.uuid,
        "parent_uuid": s.parent_uuid,
        "readonly": s.readonly,
        "files": s.files,
        "inodes": s.inodes,
        "per_inode_pages": s.per_inode_pages,
        "unshareable_pages": s.unshareable_pages,
        "exclusive_pages": s.exclusive_pages,
        "shared_pages": s.shared_pages,
        "saved_pages": round(s.saved_pages, 3),
        "shares_with": [{"id": x.id, "path": x.path, "shared_pages": x.shared_pages} for x in s.shares_with],
    }


def _extent(e: ExtentFigures) -> dict[str, Any]:
    return {
        "logical": e.logical,
        "disk_num_bytes": e.disk_num_bytes,
        "references": e.references,
        "subvolume_count": e.subvolume_count,
        "subvolumes": list(e.subvolumes),
        "file_pages": e.file_pages,
        "cached_pages": e.cached_pages,
        "saved_pages": e.saved_pages,
        "saved_bytes": e.saved_bytes,
        "paths": list(e.paths),
    }


def _file(f: FileFigures) -> dict[str, Any]:
    return {
        "subvol": f.subvol,
        "ino": f.ino,
        "path": f.path,
        "size": f.size,
        "nlink": f.nlink,
        "pages": f.pages,
        "eligible_pages": f.eligible_pages,
        "shared_pages": f.shared_pages,
        "saved_pages": round(f.saved_pages, 3),
        "saved_bytes": f.saved_bytes,
    }


def _dir_entry(e: DirEntry) -> dict[str, Any]:
    return {
        **asdict(e),
        "parent": None if e.parent < 0 else e.parent,
        "pages": {name: None if v is None else round(v, 3) for name, v in e.pages.items()},
        "saved_pages": round(e.saved_pages, 3),
        "saved_pct": _pct(e.saved_pct),
    }


def _by_dir(b: ByDir) -> dict[str, Any]:
    return {"depth": b.depth, "top": b.top, "saving_model": SAVING_MODEL, "entries": [_dir_entry(e) for e in b.entries]}


def _sharing_matrix(m: SharingMatrix) -> dict[str, Any]:
    return {"model": "shared_extent", "subvolumes": list(m.ids), "shared_pages": [list(row) for row in m.shared_pages]}


def report_json(report: Report) -> dict[str, Any]:
    """``report`` as a JSON-ready dict (keys in a fixed order)."""
    fs = report.filesystem
    t = report.totals
    doc = {
        "schema_version": SCHEMA_VERSION,
        "page_size": report.page_size,
        "filesystem": {
            "label": fs.label,
            "fsid": fs.fsid,
            "num_devices": fs.device_count,
            "devices": [
                {"devid": d.devid, "uuid": d.uuid, "path": d.path, "total_bytes": d.total_bytes, "bytes_used": d.bytes_used}
                for d in fs.devices
            ],
            "profiles": {
                "data": list(fs.data_profiles),
                "metadata": list(fs.metadata_profiles),
                "system": list(fs.system_profiles),
            },
            "nodesize": fs.nodesize,
            "sectorsize": report.sectorsize,
            "generation": fs.generation,
            "features": {"incompat": list(fs.incompat_features), "compat_ro": list(fs.compat_ro_features)},
            "metadata_dump": report.metadata_dump,
            "notes": list(report.notes),
        },
        "totals": {
            "files": t.files,
            "inodes": t.inodes,
            "per_inode": {"pages": t.per_inode_pages, "bytes": t.per_inode_bytes},
            "models": {name: _model(m) for name, m in t.models.items()},
        },
        "by_kind": {k.kind: {"pages": k.pages, "bytes": k.bytes} for k in report.by_kind},
        "subvolumes": [_subvolume(s) for s in report.subvolumes],
        "top_extents": [_extent(e) for e in report.top_extents],
        "top_files": [_file(f) for f in report.top_files],
        "partial": report.partial,
        "warnings": list(report.warnings),
    }
    if report.sharing_matrix is not None:
        doc["sharing_matrix"] = _sharing_matrix(report.sharing_matrix)
    if report.by_dir is not None:
        doc["by_dir"] = _by_dir(report.by_dir)
    return doc
