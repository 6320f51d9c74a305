"""The report's totals in the Prometheus text exposition format.

For node_exporter's textfile collector: write the output to
``<dir>/btrfsscan.prom`` (atomically: a temporary file, then rename). Every
sample is labelled by ``fsid``; model samples also by ``model``. Models that
do not apply to the filesystem (``rfc_as_posted`` on DUP, several devices or
page size != sector size) get no page samples, only
``btrfsscan_model_applicable 0``. The models are those of the registry, in
its order. Models with per-subvolume figures (the cache-unit designs) add
samples labelled by ``subvol``; content-keyed models the pages whose content
is unknown, labelled by ``source`` (``csum_tree``, ``data``).
"""

from __future__ import annotations

from typing import IO

from ...cache.report import PageCacheReport
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
    ("btrfsscan_page_size_bytes", "Page size the models were computed at."),
    ("btrfsscan_regular_files", "Directory entries of regular files (hardlinks once per link)."),
    ("btrfsscan_regular_inodes", "Regular-file inodes."),
    ("btrfsscan_report_partial", "1 if the scan skipped something (see its warnings), else 0."),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _number(value: float | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def prometheus_text(report: PageCacheReport) -> str:
    """Every metric of ``METRICS`` for ``report``, with HELP and TYPE lines, ending in a newline."""
    fsid = report.filesystem.fsid
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
                (_labels(fsid=fsid, model=name, subvol=sv.id), round(sv.saved_pages, 3)))
    fs = _labels(fsid=fsid)
    samples["btrfsscan_page_size_bytes"].append((fs, report.page_size))
    samples["btrfsscan_regular_files"].append((fs, report.totals.files))
    samples["btrfsscan_regular_inodes"].append((fs, report.totals.inodes))
    samples["btrfsscan_report_partial"].append((fs, bool(report.partial)))
    lines = []
    for name, help_text in METRICS:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples[name])
    return "\n".join(lines) + "\n"


def render(output: CommandOutput, stream: IO[str]) -> None:
    """Every report document's metrics, one filesystem after the other."""
    for document in output.documents:
        stream.write(prometheus_text(document.subject))
    stream.flush()
