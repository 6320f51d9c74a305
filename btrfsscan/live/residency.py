"""A working set: which pages of which files are in the page cache (``--save``, ``--resident``, ``--workload``).

``Residency`` holds, per file with at least one resident page, its subvolume
id, inode number, path, i_size and resident pages as runs ``(first page,
count)``, in column arrays. Files without resident pages are counted
(``files``), not listed. It comes from a live capture (``live.collect``), from
a residency document (``load_residency``), or from a workload description
(``parse_workload`` + ``workload_residency``).

The document (``schema_version`` 1, JSON Schema
``present/schemas/residency.schema.json``) holds the files as columns (one
JSON list per field, the runs flattened), so that loading it creates a few
long lists rather than several Python objects per file.

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
from functools import cached_property
from typing import IO, Any

import numpy as np

from ..arrays import I64, dense_rows, distinct_inverse, prefix, ranges
from ..errors import ResidencyError
from ..names import name_fields, name_texts, names_base64

SCHEMA_VERSION = 1
KINDS = ("resident", "workload")


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

    @cached_property
    def subvolume_index(self) -> tuple[np.ndarray, np.ndarray]:
        """The subvolume ids of the rows (sorted, each once) and the index of each row's among them."""
        ids, row = distinct_inverse(self.subvol)
        return ids, row

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
    """The raw bytes of a header entry's ``key``: ``{key}_bytes`` (base64) when given, else the text."""
    if f"{key}_bytes" in record:
        try:
            return base64.b64decode(record[f"{key}_bytes"], validate=True)
        except (ValueError, TypeError):
            raise _Invalid(f"{where}: {key}_bytes is not base64") from None
    return _raw_text(record[key], where)


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


def _files(res: Residency) -> dict[str, Any]:
    """The ``files`` columns, rows sorted by subvolume, inode."""
    order = np.lexsort((res.ino, res.subvol))
    runs = ranges(res.run_start[order], res.run_start[order + 1])
    paths = [res.path(i) for i in order.tolist()]
    return {
        "subvol": res.subvol[order].tolist(), "ino": res.ino[order].tolist(), "size": res.size[order].tolist(),
        "path": name_texts(paths),
        "path_bytes": [[row, encoded] for row, encoded in enumerate(names_base64(paths)) if encoded is not None],
        "runs": np.diff(res.run_start)[order].tolist(),
        "run_page": res.run_page[runs].tolist(), "run_count": res.run_count[runs].tolist(),
    }


def write_residency(res: Residency, out: IO[str]) -> None:
    """The document: the header on one line, then each ``files`` column on its own line."""
    head = json.dumps(_header(res), separators=(",", ":"))
    columns = [json.dumps(key) + ":" + json.dumps(values, separators=(",", ":"))
               for key, values in _files(res).items()]
    out.write(head[:-1] + ',"files":{\n' + ",\n".join(columns) + "\n}}\n")


class _Invalid(Exception):
    """A structural problem; ``load_residency`` turns it into one ResidencyError line."""


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise _Invalid(what)


def _is_int(v: Any, lo: int = 0, limit: int = 1 << 64) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v < limit


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


def _column(files: dict, key: str, length: int, what: str, lo: int = 0, limit: int = 1 << 64) -> np.ndarray:
    """``files[key]``, a list of ``length`` integers in ``[lo, limit)``, as uint64; else the first fault named."""
    values = files.get(key)
    _need(isinstance(values, list), f"files.{key} missing or not a list")
    _need(len(values) == length, f"files.{key} has {len(values)} values, not {length}")
    if set(map(type, values)) <= {int}:
        try:
            out = np.array(values, dtype=np.uint64)
        except OverflowError:  # a value past 2^64 (a negative one is found below)
            out = None
        if out is not None and (not length or (int(out.min()) >= lo and int(out.max()) < limit)):
            return out
    bad = next(i for i, v in enumerate(values) if not _is_int(v, lo, limit))
    raise _Invalid(f"files.{key}[{bad}]: {what}")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _listed_again(subvol: np.ndarray, ino: np.ndarray) -> tuple[int, int] | None:
    """The first row naming a (subvol, ino) an earlier row names, and that earlier row; None when each is
    named once (its pages would be counted twice)."""
    n = len(subvol)
    if n < 2:
        return None
    ids = dense_rows(np.stack((subvol, ino), 1))
    first = np.full(int(ids.max()) + 1, n, I64)
    np.minimum.at(first, ids, np.arange(n, dtype=I64))
    again = np.flatnonzero(first[ids] != np.arange(n))
    return (int(first[ids[again[0]]]), int(again[0])) if len(again) else None


def _file_columns(files: Any, page_size: int) -> dict[str, Any]:
    """The ``files`` columns as ``Residency`` columns, every field checked (in bulk; a fault names its row)."""
    _need(isinstance(files, dict), "files must be an object of columns")
    paths = files.get("path")
    _need(isinstance(paths, list), "files.path missing or not a list")
    n = len(paths)
    subvol = _column(files, "subvol", n, "subvol is not a non-negative integer")
    ino = _column(files, "ino", n, "ino is not a non-negative integer")
    size = _column(files, "size", n, "size is not an integer in [0, 2^63)", limit=1 << 63).astype(I64)
    # at most 2^32 runs a file, so that their total cannot wrap
    lengths = _column(files, "runs", n, "runs (the number of runs of the file) must be in [1, 2^32)", lo=1,
                      limit=1 << 32).astype(I64)
    total = int(lengths.sum())
    page = _column(files, "run_page", total, "a run's first page must be a non-negative integer",
                   limit=1 << 62).astype(I64)
    count = _column(files, "run_count", total, "a run's count must be >= 1", lo=1, limit=1 << 62).astype(I64)
    again = _listed_again(subvol, ino)
    if again is not None:
        first, row = again
        raise _Invalid(f"files rows {first} and {row} are both inode {int(ino[row])} of subvolume "
                       f"{int(subvol[row])}: a file is listed once")
    run_start = prefix(lengths)
    run_file = np.repeat(np.arange(n, dtype=I64), lengths)
    end = page + count
    npages = -(-size // page_size)
    past = end > npages[run_file]
    if past.any():
        r = _first(past)
        raise _Invalid(f"file {int(run_file[r])}: run ends at page {int(end[r])}, past the "
                       f"{int(npages[run_file[r]])} pages of i_size {int(size[run_file[r]])}")
    later = np.ones(total, bool)
    later[run_start[:-1]] = False
    overlap = np.zeros(total, bool)
    overlap[1:] = (page[1:] <= end[:-1]) & later[1:]
    if overlap.any():
        raise _Invalid(f"file {int(run_file[_first(overlap)])}: runs must be sorted, disjoint and not adjacent")
    if not set(map(type, paths)) <= {str}:
        raise _Invalid(f"files.path[{next(i for i, p in enumerate(paths) if not isinstance(p, str))}]: "
                       "not a string")
    exact = files.get("path_bytes", [])
    _need(isinstance(exact, list), "files.path_bytes must be a list of [row, base64]")
    joined = "".join(paths)
    if joined.isascii() and not exact:  # the common case: one encode, no object per row
        blob, path_lengths = joined.encode("ascii"), np.fromiter(map(len, paths), I64, n)
    else:
        raw = [_raw_text(p, f"files.path[{i}]") for i, p in enumerate(paths)]
        for pair in exact:
            _need(isinstance(pair, list) and len(pair) == 2 and _is_int(pair[0], 0, n)
                  and isinstance(pair[1], str), "files.path_bytes must be a list of [row, base64]")
            try:
                raw[pair[0]] = base64.b64decode(pair[1], validate=True)
            except ValueError:
                raise _Invalid(f"files.path_bytes: the bytes of row {pair[0]} are not base64") from None
        blob, path_lengths = b"".join(raw), np.fromiter(map(len, raw), I64, n)
    return dict(subvol=subvol, ino=ino, size=size, path_blob=blob,
                path_start=prefix(path_lengths), run_start=run_start,
                run_page=page, run_count=count)


def _raw_text(text: str, where: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (\udcff) in the JSON text
        raise _Invalid(f"{where}: not valid Unicode text (give the raw name in path_bytes)") from None


def _identity(fs: dict | None) -> FilesystemIdentity | None:
    if fs is None:
        return None
    return FilesystemIdentity(fs["type"], fs["fsid"], fs["fsid_source"], fs["generation"], fs["sectorsize"])


def load_residency(path: str | os.PathLike, *, fsid: str | None = None, page_size: int | None = None) -> Residency:
    """Read and check a residency document.

    Raises ``ResidencyError`` (one line naming the file, and the column and
    row or byte offset) when it is unreadable, truncated, not valid, of a
    newer schema version, or, where given, of another ``fsid`` or
    ``page_size``.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ResidencyError(f"{name}: cannot read residency: {exc}") from None
    try:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            what = "truncated" if exc.pos >= len(text.rstrip()) else "not JSON"
            raise _Invalid(f"{what} at byte {exc.pos}: {exc.msg}") from None
        _check_header(doc)
        _check_identity(doc, fsid, page_size)
        columns = _file_columns(doc.get("files"), doc["page_size"])
        roots = tuple(_raw_path(r, "path", "roots") for r in doc["roots"])
        subvolumes = tuple(SubvolumeEntry(s["id"], _raw_path(s, "path", "subvolumes")) for s in doc["subvolumes"])
    except _Invalid as exc:
        raise ResidencyError(f"{name}: {exc}") from None
    return Residency(
        **columns, kind=doc["kind"], captured_at=doc["captured_at"], page_size=doc["page_size"],
        filesystem=_identity(doc["filesystem"]), roots=roots, subvolumes=subvolumes,
        files=doc["counts"]["files"], unreadable=doc["counts"]["unreadable"], notes=list(doc.get("notes", [])),
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
