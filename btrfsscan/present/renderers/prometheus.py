"""The report's totals in the Prometheus text exposition format.

For node_exporter's textfile collector: write the output to
``<dir>/btrfsscan.prom`` (atomically: a temporary file, then rename). Every
sample is labelled by ``fsid``; model samples also by ``model``. Models that
do not apply to the filesystem (``rfc_as_posted`` on DUP, several devices or
page size != sector size) get no page samples, only
``btrfsscan_model_applicable 0``. The models are those of the registry, in
its order. Per-subvolume samples carry ``subvolume`` (the id) and ``path``
(from the top level, ``.`` for it; bytes that are not UTF-8 as U+FFFD):
each subvolume's files and page cache, and, for the models with figures per
subvolume (the cache-unit designs), its share of what the model saves.
Content-keyed models add the pages whose content is unknown, labelled by
``source`` (``csum_tree``, ``data``). ``btrfsscan_scan_timestamp_seconds`` and
``btrfsscan_scan_duration_seconds`` say when the scan ran and how long it
took (measured by the analysis layer; a working set has none);
``btrfsscan_report_path_info`` names each path of ``report --path`` (the
figures then count only the files under them). Label values
and HELP texts are escaped as the text exposition format wants.
"""

from __future__ import annotations

from typing import IO

from ...cache.report import PageCacheReport
from ...format.constants import ObjectId
from ...names import name_text
from ..document import CommandOutput

#: (name, help) of every metric, in output order.
METRICS = (
    ("btrfsscan_page_cache_pages", "Pages the page cache holds, by model (every regular file read once; for live and --resident, the working set)."),
    ("btrfsscan_page_cache_bytes", "Bytes the page cache holds, by model (every regular file read once; for live and --resident, the working set)."),
    ("btrfsscan_page_cache_saved_pages", "Pages a model saves compared with the per-inode page cache."),
    ("btrfsscan_page_cache_saved_bytes", "Bytes a model saves compared with the per-inode page cache."),
    ("btrfsscan_page_cache_saved_ratio", "Fraction of the per-inode page cache a model saves (0..1)."),
    ("btrfsscan_model_applicable", "1 if the model applies to this filesystem, else 0."),
    ("btrfsscan_model_unknown_pages", "Pages a content-keyed model could not identify (cached per inode), by source."),
    ("btrfsscan_subvolume_saved_pages", "A subvolume's fair share of the pages a model saves."),
    ("btrfsscan_subvolume_files", "Directory entries of regular files in a subvolume (hardlinks once per link)."),
    ("btrfsscan_subvolume_inodes", "Regular-file inodes of a subvolume."),
    ("btrfsscan_subvolume_page_cache_pages", "Pages the per-inode page cache holds for a subvolume's files."),
    ("btrfsscan_subvolume_exclusive_pages", "Pages of a subvolume's files no other subvolume maps."),
    ("btrfsscan_subvolume_shared_pages", "Pages of a subvolume's files another subvolume maps too."),
    ("btrfsscan_page_size_bytes", "Page size the models were computed at."),
    ("btrfsscan_regular_files", "Directory entries of regular files (hardlinks once per link)."),
    ("btrfsscan_regular_inodes", "Regular-file inodes."),
    ("btrfsscan_report_partial", "1 if the scan skipped something (see its warnings), else 0."),
    ("btrfsscan_report_path_info", "1 for each path the figures are restricted to (report --path); none: every file."),
    ("btrfsscan_scan_timestamp_seconds", "When the scan started, in seconds since the Unix epoch."),
    ("btrfsscan_scan_duration_seconds", "How long the scan took, in seconds."),
)


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_value(value: object) -> str:
    return _escape_help(name_text(str(value))).replace('"', '\\"')


def _labels(**labels: object) -> str:
    """``{k="v",...}``, each value valid UTF-8 (names may hold any byte) with backslash, quote and newline escaped."""
    return "{" + ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items()) + "}"


def _subvolume_path(subvol_id: int, path: str | None) -> str:
    return "." if subvol_id == ObjectId.FS_TREE and not path else path or ""


def _number(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def prometheus_text(report: PageCacheReport) -> str:
    """Every metric of ``METRICS`` for ``report``, with HELP and TYPE lines, ending in a newline."""
    fsid = report.filesystem.fsid
    paths = {sv.id: _subvolume_path(sv.id, sv.path) for sv in report.subvolumes}
    samples: dict[str, list[tuple[str, float | int]]] = {name: [] for name, _ in METRICS}
    for name, m in report.totals.models.items():
        labels = _labels(fsid=fsid, model=name)
        samples["btrfsscan_model_applicable"].append((labels, bool(m.applicable)))
        if m.pages is None:
            continue
        samples["btrfsscan_page_cache_pages"].append((labels, m.pages))
        samples["btrfsscan_page_cache_bytes"].append((labels, m.bytes))
        samples["btrfsscan_page_cache_saved_pages"].append((labels, m.saved_pages))
        samples["btrfsscan_page_cache_saved_bytes"].append((labels, m.saved_bytes))
        samples["btrfsscan_page_cache_saved_ratio"].append((labels, (m.saved_pct or 0.0) / 100.0))
        if m.content_source:
            samples["btrfsscan_model_unknown_pages"].append(
                (_labels(fsid=fsid, model=name, source=m.content_source), m.unknown_pages))
        for sv in m.subvolumes or ():
            samples["btrfsscan_subvolume_saved_pages"].append(
                (_labels(fsid=fsid, model=name, subvolume=sv.id, path=paths.get(sv.id, "")), round(sv.saved_pages, 3)))
    for sv in report.subvolumes:
        labels = _labels(fsid=fsid, subvolume=sv.id, path=paths[sv.id])
        samples["btrfsscan_subvolume_files"].append((labels, sv.files))
        samples["btrfsscan_subvolume_inodes"].append((labels, sv.inodes))
        samples["btrfsscan_subvolume_page_cache_pages"].append((labels, sv.per_inode_pages))
        samples["btrfsscan_subvolume_exclusive_pages"].append((labels, sv.exclusive_pages))
        samples["btrfsscan_subvolume_shared_pages"].append((labels, sv.shared_pages))
    fs = _labels(fsid=fsid)
    if report.scan is not None:
        samples["btrfsscan_scan_timestamp_seconds"].append((fs, report.scan.started_at))
        samples["btrfsscan_scan_duration_seconds"].append((fs, report.scan.seconds))
    samples["btrfsscan_page_size_bytes"].append((fs, report.page_size))
    samples["btrfsscan_regular_files"].append((fs, report.totals.files))
    samples["btrfsscan_regular_inodes"].append((fs, report.totals.inodes))
    samples["btrfsscan_report_partial"].append((fs, bool(report.partial)))
    for path in report.paths or ():
        samples["btrfsscan_report_path_info"].append((_labels(fsid=fsid, path=path), 1))
    lines = []
    for name, help_text in METRICS:
        lines.append(f"# HELP {name} {_escape_help(help_text)}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples[name])
    return "\n".join(lines) + "\n"


def render(output: CommandOutput, stream: IO[str]) -> None:
    """Every report document's metrics, one filesystem after the other."""
    for document in output.documents:
        stream.write(prometheus_text(document.subject))
    stream.flush()
