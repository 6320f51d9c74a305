"""A working set: which pages of which files are in the page cache (``--save``, ``--resident``, ``--workload``).

``Residency`` holds, per file with at least one resident page, its subvolume
id, inode number, path, i_size and resident pages as runs ``(first page,
count)``, in column arrays. Files without resident pages are counted
(``files``), not listed. It comes from a live capture (``live.collect``), from
a residency document (``load_residency``), or from a workload description
(``parse_workload`` + ``workload_residency``).

The document (``schema_version`` 1, JSON Schema
``present/schemas/residency.schema.json``) is written one file record per
line, so that loading it costs one small parse per file and never a tree of
Python objects for the whole document; any other layout of the same JSON is
read too (all at once).

Paths: on btrfs a file's ``path`` is relative to the root of its subvolume
(what an image of the filesystem resolves inside subvolume ``subvol``);
elsewhere relative to the walked directory. Names are bytes: ``path`` is the
text with undecodable bytes as U+FFFD, and ``path_bytes`` (base64) carries the
raw bytes whenever that text is not exactly them.
"""

from __future__ import annotations

import base64
import json
import os
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from ..arrays import I64
from ..errors import ResidencyError
from ..names import name_fields

SCHEMA_VERSION = 1
KINDS = ("resident", "workload")
_LAST_LINE = "]}"


@dataclass(frozen=True)
class FilesystemIdentity:
    """The filesystem a residency was captured on.

    ``fsid``: btrfs: the fsid of BTRFS_IOC_FS_INFO (what ``btrfs filesystem
    show`` and the superblock call fsid); elsewhere the superblock uuid
    (``FS_IOC_GETFSUUID``, else ``XFS_IOC_FSGEOMETRY``), as blkid shows it;
    ``fsid_source`` names which. ``generation``: the btrfs transaction
    generation at capture (None elsewhere).
    """

    type: str
    fsid: str
    fsid_source: str
    generation: int | None
    sectorsize: int


@dataclass(frozen=True)
class SubvolumeEntry:
    """A subvolume (btrfs) or top-level directory (elsewhere) and the host path the capture entered it by."""

    id: int
    path: bytes


@dataclass
class Residency:
    """Resident page runs of files; file ``i`` has runs ``run_page/run_count[run_start[i]:run_start[i+1]]``.

    Runs of a file are sorted, disjoint, not adjacent, and inside
    ``ceil(size / page_size)`` pages.
    """

    kind: str
    captured_at: str
    page_size: int
    filesystem: FilesystemIdentity | None
    roots: tuple[bytes, ...]
    subvolumes: tuple[SubvolumeEntry, ...]
    subvol: np.ndarray  # uint64
    ino: np.ndarray  # uint64
    size: np.ndarray  # int64
    path_blob: bytes
    path_start: np.ndarray  # int64, n + 1
    run_start: np.ndarray  # int64, n + 1
    run_page: np.ndarray  # int64
    run_count: np.ndarray  # int64
    files: int  # regular-file inodes visited (hardlinks once), listed or not
    unreadable: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.subvol)

    @property
    def files_with_pages(self) -> int:
        return len(self.subvol)

    @property
    def pages(self) -> int:
        return int(self.run_count.sum())

    @property
    def run_file(self) -> np.ndarray:
        """The file (row) of every run."""
        return np.repeat(np.arange(len(self), dtype=I64), np.diff(self.run_start))

    def path(self, i: int) -> bytes:
        return self.path_blob[int(self.path_start[i]):int(self.path_start[i + 1])]

    def runs(self, i: int) -> list[tuple[int, int]]:
        a, b = int(self.run_start[i]), int(self.run_start[i + 1])
        return list(zip(self.run_page[a:b].tolist(), self.run_count[a:b].tolist()))


# --- building ---------------------------------------------------------------------------


class ResidencyBuilder:
    """Appends files one by one into compact ``array`` columns (no Python object kept per file)."""

    def __init__(self) -> None:
        self.subvol = array("Q")
        self.ino = array("Q")
        self.size = array("q")
        self._paths = bytearray()
        self._path_ends = array("q")
        self._run_ends = array("q")
        self._runs = array("q")  # page, count, page, count, ...

    def add(self, subvol: int, ino: int, size: int, path: bytes, runs: Iterable[tuple[int, int]]) -> None:
        self.subvol.append(subvol)
        self.ino.append(ino)
        self.size.append(size)
        self._paths += path
        self._path_ends.append(len(self._paths))
        for page, count in runs:
            self._runs.extend((page, count))
        self._run_ends.append(len(self._runs) // 2)

    def columns(self) -> dict[str, Any]:
        """The files added so far as ``Residency`` columns."""
        runs = np.frombuffer(self._runs, I64).reshape(-1, 2)
        return dict(
            subvol=np.frombuffer(self.subvol, np.uint64).copy(),
            ino=np.frombuffer(self.ino, np.uint64).copy(),
            size=np.frombuffer(self.size, I64).copy(),
            path_blob=bytes(self._paths),
            path_start=np.concatenate(([0], np.frombuffer(self._path_ends, I64))).astype(I64),
            run_start=np.concatenate(([0], np.frombuffer(self._run_ends, I64))).astype(I64),
            run_page=runs[:, 0].copy(),
            run_count=runs[:, 1].copy(),
        )

    def build(self, **meta) -> Residency:
        return Residency(**self.columns(), **meta)


# --- the document -------------------------------------------------------------------------


def _raw_path(record: dict, key: str, where: str) -> bytes:
    if f"{key}_bytes" in record:
        try:
            return base64.b64decode(record[f"{key}_bytes"], validate=True)
        except (ValueError, TypeError):
            raise ResidencyError(f"{where}: {key}_bytes is not base64") from None
    try:
        return record[key].encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (\udcff) in the JSON text
        raise ResidencyError(f"{where}: {key} is not valid Unicode text (give the raw name as {key}_bytes)") from None


def _header(res: Residency) -> dict[str, Any]:
    fs = res.filesystem
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": res.kind,
        "captured_at": res.captured_at,
        "page_size": res.page_size,
        "filesystem": None if fs is None else {
            "type": fs.type, "fsid": fs.fsid, "fsid_source": fs.fsid_source,
            "generation": fs.generation, "sectorsize": fs.sectorsize,
        },
        "roots": [name_fields(r) for r in res.roots],
        "subvolumes": [{"id": s.id, **name_fields(s.path)} for s in res.subvolumes],
        "counts": {"files": res.files, "files_with_pages": res.files_with_pages,
                   "unreadable": res.unreadable, "pages": res.pages},
        "notes": list(res.notes),
    }


def write_residency(res: Residency, out: IO[str]) -> None:
    """The document, one file record per line (sorted by subvolume, inode)."""
    head = json.dumps(_header(res), separators=(",", ":"))
    out.write(head[:-1] + ',"files":[\n')
    order = np.lexsort((res.ino, res.subvol))
    last = len(order) - 1
    for n, i in enumerate(order.tolist()):
        a, b = int(res.run_start[i]), int(res.run_start[i + 1])
        record = {"subvol": int(res.subvol[i]), "ino": int(res.ino[i]), **name_fields(res.path(i)),
                  "size": int(res.size[i]),
                  "runs": np.stack((res.run_page[a:b], res.run_count[a:b]), 1).tolist()}
        out.write(json.dumps(record, separators=(",", ":")) + (",\n" if n < last else "\n"))
    out.write(_LAST_LINE + "\n")


class _Invalid(Exception):
    """A structural problem; ``load_residency`` turns it into one ResidencyError line."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise _Invalid(what)


def _is_int(v: Any, lo: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v < 1 << 64


def _check_header(doc: Any) -> None:
    _need(isinstance(doc, dict), "the document is not a JSON object")
    version = doc.get("schema_version")
    _need(_is_int(version, 1), "schema_version missing or not a positive integer")
    if version > SCHEMA_VERSION:
        raise _Invalid(f"schema_version {version} is newer than this btrfsscan reads ({SCHEMA_VERSION})")
    _need(doc.get("kind") in KINDS, f"kind must be one of {', '.join(KINDS)}")
    _need(isinstance(doc.get("captured_at"), str), "captured_at missing")
    _need(_is_int(doc.get("page_size"), 1), "page_size missing or not a positive integer")
    fs = doc.get("filesystem")
    if fs is not None:
        _need(isinstance(fs, dict) and isinstance(fs.get("fsid"), str) and isinstance(fs.get("type"), str)
              and isinstance(fs.get("fsid_source"), str) and _is_int(fs.get("sectorsize"), 1)
              and (fs.get("generation") is None or _is_int(fs.get("generation"))),
              "filesystem must have type, fsid, fsid_source, generation, sectorsize")
    for key in ("roots", "subvolumes"):
        _need(isinstance(doc.get(key), list) and all(isinstance(x, dict) and isinstance(x.get("path"), str)
                                                     for x in doc[key]), f"{key} must be a list of paths")
    _need(all(_is_int(s.get("id")) for s in doc["subvolumes"]), "subvolumes[].id must be integers")
    counts = doc.get("counts")
    _need(isinstance(counts, dict) and all(_is_int(counts.get(k)) for k in ("files", "unreadable")),
          "counts must have files and unreadable")
    _need(isinstance(doc.get("notes", []), list), "notes must be a list")


def _add_record(builder: ResidencyBuilder, record: Any, page_size: int, where: str) -> None:
    _need(isinstance(record, dict), "not an object")
    for key in ("subvol", "ino"):
        _need(_is_int(record.get(key)), f"{key} missing or not a non-negative integer")
    _need(_is_int(record.get("size")) and record["size"] < 1 << 63, "size missing or not an integer in [0, 2^63)")
    _need(isinstance(record.get("path"), str), "path missing")
    runs = record.get("runs")
    _need(isinstance(runs, list) and runs, "runs must be a non-empty list")
    npages = -(-record["size"] // page_size)
    end = -1
    for run in runs:
        _need(isinstance(run, list) and len(run) == 2 and _is_int(run[0]) and _is_int(run[1], 1),
              "a run must be [first page, count >= 1]")
        _need(run[0] > end, "runs must be sorted, disjoint and not adjacent")
        end = run[0] + run[1]
        _need(end <= npages, f"run ends at page {end}, past the {npages} pages of i_size {record['size']}")
    builder.add(record["subvol"], record["ino"], record["size"], _raw_path(record, "path", where),
                (tuple(r) for r in runs))


def _parsed(lines: list[str]) -> list[Any] | None:
    """The record lines of a laid-out document parsed in one go (None: some line is not JSON)."""
    try:
        return json.loads("[" + "\n".join(lines) + "]")
    except json.JSONDecodeError:
        return None


def _ints(values: list[Any], limit: int = 1 << 63) -> np.ndarray | None:
    """``values`` as uint64 when every one is an int (not a bool) in ``[0, limit)``; else None."""
    if not {type(v) for v in values} <= {int}:
        return None
    try:
        out = np.array(values, dtype=np.uint64)
    except OverflowError:
        return None
    return out if not len(out) or int(out.max()) < limit else None


def _columns(records: list[Any] | None, page_size: int) -> dict[str, Any] | None:
    """Every file record as ``Residency`` columns, when each one is what ``_add_record`` accepts (the checks
    in bulk); None when one is not, or might not be: ``_add_record`` then decides, record by record."""
    if records is None or not {type(r) for r in records} <= {dict}:
        return None
    try:
        subvol = _ints([r["subvol"] for r in records], 1 << 64)
        ino = _ints([r["ino"] for r in records], 1 << 64)
        size = _ints([r["size"] for r in records])
        runs = [r["runs"] for r in records]
    except KeyError:
        return None
    if subvol is None or ino is None or size is None or not {type(r.get("path")) for r in records} <= {str}:
        return None
    if not {type(x) for x in runs} <= {list} or (runs and min(map(len, runs)) == 0):
        return None
    pairs = [run for file_runs in runs for run in file_runs]
    if not {type(run) for run in pairs} <= {list} or not {len(run) for run in pairs} <= {2}:
        return None
    flat = _ints([v for run in pairs for v in run], 1 << 62)
    if flat is None:
        return None
    page, count = flat[0::2].astype(I64), flat[1::2].astype(I64)
    lengths = np.fromiter(map(len, runs), I64, len(runs))
    run_start = np.concatenate(([0], np.cumsum(lengths))).astype(I64)
    run_file = np.repeat(np.arange(len(records), dtype=I64), lengths)
    end = page + count
    npages = (size // np.uint64(page_size) + (size % np.uint64(page_size) != 0)).astype(I64)
    later = np.ones(len(page), bool)
    later[run_start[:-1]] = False
    if (count < 1).any() or (end > npages[run_file]).any() or (page[1:] <= end[:-1])[later[1:]].any():
        return None
    try:
        paths = [_raw_path(r, "path", "") for r in records]
    except ResidencyError:
        return None
    path_lengths = np.fromiter(map(len, paths), I64, len(paths))
    return dict(subvol=subvol, ino=ino, size=size.astype(I64), path_blob=b"".join(paths),
                path_start=np.concatenate(([0], np.cumsum(path_lengths))).astype(I64), run_start=run_start,
                run_page=page, run_count=count)


def _identity(fs: dict | None) -> FilesystemIdentity | None:
    if fs is None:
        return None
    return FilesystemIdentity(fs["type"], fs["fsid"], fs["fsid_source"], fs["generation"], fs["sectorsize"])


def _lines(text: str) -> tuple[dict, list[str]] | None:
    """Header and record lines of a document as ``write_residency`` lays it out, or None."""
    first, _, rest = text.partition("\n")
    if not first.endswith(',"files":['):
        return None
    body = rest.split("\n")
    while body and body[-1] == "":
        body.pop()
    if not body or body[-1] != _LAST_LINE:
        raise _Invalid("truncated: the closing ']}' line is missing")
    try:
        head = json.loads(first[: -len(',"files":[')] + "}")
    except json.JSONDecodeError:
        return None
    return head, body[:-1]


def load_residency(path: str | os.PathLike, *, fsid: str | None = None, page_size: int | None = None) -> Residency:
    """Read and check a residency document.

    Raises ``ResidencyError`` (one line naming the file, and the record or
    byte offset) when it is unreadable, truncated, not valid, of a newer
    schema version, or, where given, of another ``fsid`` or ``page_size``.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ResidencyError(f"{name}: cannot read residency: {exc}") from None
    where = name
    try:
        laid_out = _lines(text)
        if laid_out is None:
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                what = "truncated" if exc.pos >= len(text.rstrip()) else "not JSON"
                raise _Invalid(f"{what} at byte {exc.pos}: {exc.msg}") from None
            _check_header(doc)
            _need(isinstance(doc.get("files"), list), "files must be a list")
            head, records = doc, doc["files"]
        else:
            head, records = laid_out
            _check_header(head)
        _check_identity(head, fsid, page_size)
        P = head["page_size"]
        columns = _columns(_parsed(records) if laid_out is not None else records, P)
        if columns is None:  # some record is not valid: record by record, naming the first fault
            builder = ResidencyBuilder()
            for n, record in enumerate(records):
                where = f"{name}: files[{n}]"
                if isinstance(record, str):
                    try:
                        record = json.loads(record.removesuffix(","))
                    except json.JSONDecodeError as exc:
                        raise _Invalid(f"not JSON ({exc.msg})") from None
                _add_record(builder, record, P, where)
            columns = builder.columns()
    except _Invalid as exc:
        raise ResidencyError(f"{where}: {exc}") from None
    return Residency(
        **columns,
        kind=head["kind"], captured_at=head["captured_at"], page_size=P, filesystem=_identity(head["filesystem"]),
        roots=tuple(_raw_path(r, "path", name) for r in head["roots"]),
        subvolumes=tuple(SubvolumeEntry(s["id"], _raw_path(s, "path", name)) for s in head["subvolumes"]),
        files=head["counts"]["files"], unreadable=head["counts"]["unreadable"], notes=list(head.get("notes", [])),
    )


def _check_identity(head: dict, fsid: str | None, page_size: int | None) -> None:
    fs = head["filesystem"]
    if fsid is not None and fs is not None and fs["fsid"].lower() != fsid.lower():
        raise _Invalid(f"captured on filesystem {fs['fsid']}, not on {fsid}")
    if page_size is not None and head["page_size"] != page_size:
        raise _Invalid(f"captured with page size {head['page_size']}, not {page_size}")


# --- workloads ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadLine:
    """``PATH`` (the whole file) or ``PATH OFFSET LENGTH`` (that byte range), line ``line`` of the file."""

    path: bytes
    offset: int | None
    length: int | None
    line: int


def parse_workload(path: str | os.PathLike) -> list[WorkloadLine]:
    """The lines of a workload file; blank lines and lines starting with ``#`` are skipped.

    A line is a range when its last two whitespace-separated fields are
    decimal integers (so a path may contain spaces); otherwise the whole line,
    without its newline, is the path.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError as exc:
        raise ResidencyError(f"{name}: cannot read workload: {exc.strerror}") from None
    out = []
    for number, line in enumerate(lines, 1):
        line = line.rstrip(b"\r")
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        parts = line.rsplit(None, 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append(WorkloadLine(parts[0], int(parts[1]), int(parts[2]), number))
        elif len(parts) >= 2 and parts[-1].isdigit() and parts[-1] != line.strip():
            raise ResidencyError(f"{name}: line {number}: a range needs PATH OFFSET LENGTH")
        else:
            out.append(WorkloadLine(line, None, None, number))
    return out


def _merge_runs(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Page spans ``[a, b)`` -> sorted, disjoint, non-adjacent ``(first, count)`` runs."""
    out: list[list[int]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b - a) for a, b in out]


def workload_residency(
    lines: Sequence[WorkloadLine],
    resolve: Callable[[bytes], tuple[int, int, int] | None],
    *,
    page_size: int,
    captured_at: str,
    filesystem: FilesystemIdentity | None = None,
) -> tuple[Residency, list[WorkloadLine]]:
    """The pages a workload brings into the cache, ignoring the kernel's readahead.

    ``resolve(path)`` gives ``(subvol, ino, i_size)`` of a regular file, or
    None; the lines it cannot resolve are returned (the caller warns). A
    range covers pages ``floor(OFFSET/P)`` to ``ceil((OFFSET+LENGTH)/P)``,
    clipped to the file's pages.
    """
    P = int(page_size)
    found: dict[tuple[int, int], tuple[bytes, int, list[tuple[int, int]]]] = {}
    missing = []
    for line in lines:
        target = resolve(line.path)
        if target is None:
            missing.append(line)
            continue
        subvol, ino, size = target
        npages = -(-size // P)
        if line.offset is None:
            span = (0, npages)
        else:
            span = (min(line.offset // P, npages), min(-(-(line.offset + line.length) // P), npages))
        found.setdefault((subvol, ino), (line.path, size, []))[2].append(span)
    builder = ResidencyBuilder()
    for (subvol, ino), (path, size, spans) in sorted(found.items()):
        runs = _merge_runs(spans)
        if runs:
            builder.add(subvol, ino, size, path, runs)
    res = builder.build(kind="workload", captured_at=captured_at, page_size=P, filesystem=filesystem, roots=(),
                        subvolumes=(), files=len(found))
    return res, missing
