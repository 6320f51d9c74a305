"""HTML: the page-cache report as one self-contained page (``report --format html``, ``report --html FILE``).

Input: the report documents' JSON (``Document.json()``, what ``report
--json`` writes, one per filesystem); output: one page, a section per
filesystem. The page lays out the figures the documents carry and computes
none: the headline, the designs side by side,
the subvolume sharing matrix (``sharing_matrix``), a treemap of the cache by
directory (``by_dir``), the pages by kind, and the top extents and files.
Models are taken from ``totals.models`` whatever they are, with the title
the registry gives each, so a new model appears without a change here. A document with ``workload`` (``live``) shows
it as one more table.

Charts are plotly.js figures (the ``plotly`` package's bundled
``plotly.min.js``, embedded once); every script, style and figure is inline,
so the page requests nothing when opened: it works offline and attached to a
ticket. Charts stay bounded whatever the filesystem (the treemap shows the
document's ``by_dir`` entries, already at most ``top`` per directory; the
matrix at most ``MATRIX_LIMIT`` subvolumes).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from typing import IO

from ...errors import BtrfsScanError
from ..document import CommandOutput
from ..units import human_bytes, human_count, human_pct, with_copies
from ..views.report import KIND_TITLES

#: Subvolumes shown in the sharing matrix (those with the most distinct pages).
MATRIX_LIMIT = 60
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["sendDataToCloud"]}
_FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 13}
_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1.5em; color: #1d2330; background: #fff; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #dde; }
p.headline { font-size: 1.15em; line-height: 1.5; } .muted { color: #667; }
dl.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: .6em; }
dl.figures div { background: #f3f5fa; border-radius: 6px; padding: .5em .8em; }
dl.figures dt { font-size: .8em; color: #556; } dl.figures dd { margin: 0; font-size: 1.2em; font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: .9em; margin: .5em 0; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid #e4e6ee; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.chart { width: 100%; min-height: 380px; } .warn { color: #8a4b00; }
"""


class PlotlyMissing(BtrfsScanError):
    """``--html`` without the optional plotly dependency."""


def plotly_js() -> str:
    """plotly.js (the bundle shipped in the ``plotly`` package), or one clear error when it is missing."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise PlotlyMissing("the html format (report --html) needs plotly: pip install 'btrfsscan[html]'") from None
    return get_plotlyjs()


def check() -> None:
    """Called before anything is read: plotly is installed."""
    plotly_js()


def _e(text: Any) -> str:
    return html.escape("-" if text is None else str(text))


def _model_title(name: str, figures: Mapping[str, Any]) -> str:
    return str(figures.get("title") or name)


def _subvol_label(sid: int, path: str | None) -> str:
    return "(top level)" if sid == 5 and not path else (path or f"subvolume {sid}")


class _Page:
    """Collects sections and figures; figures are drawn by one inline script once plotly.js is loaded."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures: list[dict[str, Any]] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def chart(self, data: list[dict[str, Any]], layout: dict[str, Any], height: int = 420) -> None:
        div = f"chart-{len(self.figures)}"
        layout = {"font": _FONT, "height": height, "margin": {"l": 60, "r": 20, "t": 30, "b": 60}, **layout}
        self.figures.append({"id": div, "data": data, "layout": layout})
        self.add(f'<div class="chart" id="{div}"></div>')

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool]) -> None:
        cls = [' class="n"' if n else "" for n in numeric]
        head = "".join(f"<th{c}>{_e(h)}</th>" for h, c in zip(headers, cls))
        body = "".join("<tr>" + "".join(f"<td{c}>{_e(v)}</td>" for v, c in zip(row, cls)) + "</tr>" for row in rows)
        self.add(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _headline(page: _Page, doc: Mapping[str, Any]) -> None:
    totals, models = doc["totals"], doc["totals"]["models"]
    se = models.get("shared_extent", {})
    today = totals["per_inode"]["bytes"]
    if totals["inodes"] == 0:
        text = "No regular files: nothing would be cached."
    else:
        lead = _framing(doc)[0].format(size=human_bytes(today))
        text = (f"{lead}; a shared-extent cache would need "
                f"{human_bytes(se.get('bytes'))} — {human_bytes(se.get('saved_bytes'))} "
                f"({human_pct(se.get('saved_pct'))}) saved.")
    page.add(f'<p class="headline" id="headline">{_e(text)}</p>')
    cells = [("cache today (per inode)", human_bytes(today))]
    cells += [(f"{_model_title(n, m)}", human_bytes(m["bytes"]) if m.get("applicable") else "does not apply")
              for n, m in models.items() if n != "per_inode"]
    cells += [("regular files", human_count(totals["files"])), ("inodes", human_count(totals["inodes"])),
              ("subvolumes", human_count(len(doc["subvolumes"]))), ("page size", human_bytes(doc["page_size"]))]
    page.add('<dl class="figures">' + "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in cells)
             + "</dl>")
    fs = doc["filesystem"]
    notes = [f"Note: {n}." for n in fs.get("notes", [])]
    if doc.get("partial"):
        notes.append(f"Partial result: {len(doc['warnings'])} warning(s); the figures cover only what could be read.")
    for line in notes + [f"Warning: {w}" for w in doc.get("warnings", [])]:
        page.add(f'<p class="warn">{_e(line)}</p>')


def _models_chart(page: _Page, doc: Mapping[str, Any]) -> None:
    page.add("<h2>Every cache design side by side</h2>")
    models = doc["totals"]["models"]
    names = list(models)
    titles = [_model_title(n, models[n]) for n in names]
    applicable = [bool(models[n].get("applicable")) and models[n].get("bytes") is not None for n in names]
    bar = {
        "type": "bar", "x": titles, "y": [models[n]["bytes"] if ok else 0 for n, ok in zip(names, applicable)],
        "text": [f"{human_bytes(models[n]['bytes'])}<br>{human_pct(models[n]['saved_pct'])} saved" if ok
                 else "does not apply" for n, ok in zip(names, applicable)],
        "textposition": "outside", "hoverinfo": "x+text", "cliponaxis": False,
        "marker": {"color": ["#9aa3b5" if n == "per_inode" else "#2a9d62" for n in names]},
    }
    page.chart([bar], {"yaxis": {"title": {"text": "page cache (bytes)"}, "rangemode": "tozero"}, "showlegend": False})
    rows = [(t, human_count(m["pages"]), human_bytes(m["bytes"]), human_bytes(m["saved_bytes"]), human_pct(m["saved_pct"]),
             "yes" if m.get("applicable") else f"no: {m.get('reason')}") for t, m in zip(titles, models.values())]
    page.table(("design", "pages", "cache", "saved", "saved %", "applies"), rows, (False, True, True, True, True, False))


def _present(page: _Page, doc: Mapping[str, Any], field: str, what: str, hint: str = "") -> Mapping[str, Any] | None:
    """``doc[field]`` when it holds something to draw; otherwise the page says it is absent."""
    value = doc.get(field)
    if value and any(value.get(k) for k in ("subvolumes", "entries")):
        return value
    page.add(f'<p class="muted" id="no-{field}">This report carries no {_e(what)} (<code>{field}</code>{hint}): '
             "nothing to draw.</p>")
    return None


def _matrix_chart(page: _Page, doc: Mapping[str, Any]) -> None:
    page.add("<h2>Cache shared between subvolumes</h2>")
    matrix = _present(page, doc, "sharing_matrix", "sharing matrix")
    if matrix is None:
        return
    ids, cells = matrix["subvolumes"], matrix["shared_pages"]
    shown = sorted(range(len(ids)), key=lambda i: (-cells[i][i], ids[i]))[:MATRIX_LIMIT]
    shown.sort(key=lambda i: ids[i])
    paths = {s["id"]: s["path"] for s in doc["subvolumes"]}
    labels = [_subvol_label(ids[i], paths.get(ids[i])) for i in shown]
    P = doc["page_size"]
    z = [[cells[i][j] * P for j in shown] for i in shown]
    text = [[f"{labels[a]} and {labels[b]}: {human_bytes(z[a][b])}" if a != b else
             f"{labels[a]}: {human_bytes(z[a][b])} of distinct disk pages" for b in range(len(shown))]
            for a in range(len(shown))]
    if len(shown) < len(ids):
        page.add(f'<p class="muted">The {len(shown)} of {len(ids)} subvolumes mapping the most pages.</p>')
    page.add('<p class="muted">Each cell: the page cache a shared-extent cache holds once for both subvolumes '
             "(distinct disk pages both map); the diagonal: all distinct disk pages the subvolume maps.</p>")
    heat = {"type": "heatmap", "x": labels, "y": labels, "z": z, "text": text, "hoverinfo": "text",
            "colorscale": [[0, "#f4f6fb"], [1, "#16407a"]], "colorbar": {"title": {"text": "bytes"}}}
    side = max(380, min(900, 120 + 28 * len(shown)))
    page.chart([heat], {"xaxis": {"type": "category", "tickangle": -35, "automargin": True},
                        "margin": {"l": 60, "r": 20, "t": 30, "b": 60},
                        "yaxis": {"type": "category", "autorange": "reversed", "automargin": True}}, height=side + 100)


def _treemap(page: _Page, doc: Mapping[str, Any]) -> None:
    page.add("<h2>Where in the tree the cache lives</h2>")
    by_dir = _present(page, doc, "by_dir", "figures by directory", "; <code>report --by-dir DEPTH</code>")
    if by_dir is None:
        return
    P = doc["page_size"]
    model = by_dir.get("saving_model", "shared_extent")
    title = _model_title(model, doc["totals"]["models"].get(model, {}))
    page.add(f'<p class="muted">Area: the page cache today; colour: the share a {_e(title)} saves. '
             f"Directories down to {by_dir['depth']} levels below each subvolume"
             + (f", the {by_dir['top']} largest of each directory (the others as one box)" if by_dir.get("top") else "")
             + ". Click a box to zoom in.</p>")
    ids, parents, labels, values, colours, hover = ["all"], [""], ["all subvolumes"], [doc["totals"]["per_inode"]["pages"]], [
        doc["totals"]["models"].get(model, {}).get("saved_pct") or 0.0], ["all subvolumes"]
    paths = {s["id"]: s["path"] for s in doc["subvolumes"]}
    for n, e in enumerate(by_dir["entries"]):
        if e["kind"] == "subvolume":
            label = _subvol_label(e["subvol"], paths.get(e["subvol"]))
        elif e["kind"] == "directory":
            label = e["relpath"].rsplit("/", 1)[-1]
        elif e["kind"] == "rest":
            label = f"({e['folded']} more)"
        else:
            label = "(unreachable)"
        ids.append(str(n))
        parents.append("all" if e["parent"] is None else str(e["parent"]))
        labels.append(label)
        values.append(e["pages"]["per_inode"])
        colours.append(e["saved_pct"])
        shared = e["pages"].get(model)
        hover.append(f"{e['path'] or label}<br>{human_count(e['files'])} files<br>today {human_bytes(e['pages']['per_inode'] * P)}"
                     f"<br>{title} {human_bytes(None if shared is None else shared * P)} ({human_pct(e['saved_pct'])} saved)")
    tree = {"type": "treemap", "ids": ids, "parents": parents, "labels": labels, "values": values,
            "branchvalues": "total", "hovertext": hover, "hovertemplate": "%{hovertext}<extra></extra>", "maxdepth": 3,
            "marker": {"colors": colours, "colorscale": [[0, "#e3e6ee"], [0.5, "#a6d8a8"], [1, "#11703a"]], "cmin": 0, "cmax": 100,
                       "colorbar": {"title": {"text": "saved %"}}}}
    page.chart([tree], {"margin": {"l": 10, "r": 10, "t": 30, "b": 10}}, height=620)


def _kinds_chart(page: _Page, doc: Mapping[str, Any]) -> None:
    page.add("<h2>Today's page cache by kind of page</h2>")
    kinds = doc["by_kind"]
    names = list(kinds)
    labels = [KIND_TITLES.get(k, (k, ""))[0] for k in names]
    bar = {"type": "bar", "orientation": "h", "y": labels, "x": [kinds[k]["bytes"] for k in names],
           "text": [human_bytes(kinds[k]["bytes"]) for k in names], "textposition": "auto",
           "hovertext": [KIND_TITLES.get(k, ("", k))[1] for k in names],
           "hovertemplate": "%{y}: %{text}<br>%{hovertext}<extra></extra>",
           "marker": {"color": "#3b6fb6"}}
    page.chart([bar], {"xaxis": {"title": {"text": "bytes"}}, "yaxis": {"autorange": "reversed"},
                       "margin": {"l": 130, "r": 20, "t": 20, "b": 50}}, height=340)


def _tables(page: _Page, doc: Mapping[str, Any]) -> None:
    page.add("<h2>Subvolumes (under the shared-extent cache)</h2>")
    P = doc["page_size"]
    page.table(("id", "path", "files", "cache today", "exclusive", "shared", "saved (share)"),
               [(s["id"], _subvol_label(s["id"], s["path"]), human_count(s["files"]), human_bytes(s["per_inode_pages"] * P),
                 human_bytes(s["exclusive_pages"] * P), human_bytes(s["shared_pages"] * P),
                 human_bytes(round(s["saved_pages"] * P))) for s in doc["subvolumes"]],
               (True, False, True, True, True, True, True))
    page.add("<h2>Most shared extents</h2>")
    page.table(("logical", "size", "refs", "subvols", "cached once", "saved", "for example"),
               [(e["logical"], human_bytes(e["disk_num_bytes"]), human_count(e["references"]),
                 human_count(e["subvolume_count"]), human_bytes(e["cached_pages"] * P), human_bytes(e["saved_bytes"]),
                 "; ".join(e["paths"]) or "-") for e in doc["top_extents"]],
               (True, True, True, True, True, True, False))
    page.add("<h2>Files saving the most (fair share)</h2>")
    page.table(("path", "subvol", "size", "links", "pages", "shared pages", "saved (share)"),
               [(with_copies(f["path"] if f["path"] is not None else f"<subvol {f['subvol']} ino {f['ino']}>",
                             f["snapshot_copies"]), f["subvol"],
                 human_bytes(f["size"]), human_count(f["nlink"]), human_count(f["pages"]),
                 human_count(f["shared_pages"]), human_bytes(f["saved_bytes"])) for f in doc["top_files"]],
               (False, True, True, True, True, True, True))
    workload = doc.get("workload")
    if isinstance(workload, Mapping):
        page.add("<h2>Workload</h2>")
        page.table(("", ""), [(k, json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v)
                              for k, v in workload.items()], (False, False))


def _framing(doc: Mapping[str, Any]) -> tuple[str, str]:
    """(the headline's baseline, ``{size}`` the per-inode cache; what the figures are of, under the title):
    every file read once, or the working set ``workload`` names (captured by ``live``, or modelled reads)."""
    workload = doc.get("workload")
    if not isinstance(workload, Mapping):
        return ("Reading every file once caches {size} today",
                "what the page cache holds after every regular file is read once")
    if workload.get("kind") == "workload":
        return ("The given reads bring {size} of these files into the page cache",
                "what the given reads bring into the page cache (readahead ignored), and each design over those pages")
    at = workload.get("captured_at")
    return (f"The page cache held {{size}} of these files at {at}",
            f"what the page cache held at {at}, and each design over the same pages")


def _section(page: _Page, doc: Mapping[str, Any]) -> None:
    fs = doc["filesystem"]
    name = fs.get("label") or fs["fsid"]
    what = _framing(doc)[1]
    page.add(f'<section><h1>Page cache of {_e(name)}</h1>'
             f'<p class="muted">fsid {_e(fs["fsid"])} · {_e(", ".join(fs["profiles"]["data"]) or "-")} data · '
             f'{human_count(fs["num_devices"])} device(s) · {_e(what)}</p>')
    _headline(page, doc)
    _models_chart(page, doc)
    _matrix_chart(page, doc)
    _treemap(page, doc)
    _kinds_chart(page, doc)
    _tables(page, doc)
    page.add("</section>")


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no closing tag, no comment opener)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render_page(documents: Sequence[Mapping[str, Any]], script: str | None = None) -> str:
    """One self-contained page for the report documents' JSON (one section each); ``script`` defaults to
    plotly's bundle."""
    script = script if script is not None else plotly_js()
    page = _Page()
    for doc in documents:
        _section(page, doc)
    draw = ("const figures = JSON.parse(document.getElementById('figures').textContent);\n"
            f"const config = {_script_json(PLOTLY_CONFIG)};\n"
            "for (const f of figures) Plotly.newPlot(f.id, f.data, f.layout, config);\n")
    title = ", ".join(d["filesystem"].get("label") or d["filesystem"]["fsid"] for d in documents) or "no filesystem"
    script = script.replace("</script", "<\\/script")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>btrfsscan: page cache of {_e(title)}</title><style>{_STYLE}</style>"
            f"<script>{script}</script></head><body>\n"
            + "\n".join(page.parts)
            + f'\n<script type="application/json" id="figures">{_script_json(page.figures)}</script>'
            f"\n<script>{draw}</script>\n</body></html>\n")


def render(output: CommandOutput, stream: IO[str]) -> None:
    stream.write(render_page([document.json() for document in output.documents]))
    stream.flush()
