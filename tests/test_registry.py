"""The cache model registry: every place that lists models follows it, and models that need more inputs.

The model figures themselves are tested in test_cache_models.py against a
brute-force count; here: the shipped JSON Schema defines a model once and
lists exactly the registered ones, the report's JSON, tables and Prometheus
text carry every registered model, and a model whose input a run lacks (or
whose design does not fit the filesystem) is reported as not applicable with
its reason, without being computed.
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
from support import facts

from btrfsscan.cache.analyze import analyze
from btrfsscan.cache.layout import build_layout
from btrfsscan.cache.registry import BASELINE, HEADLINE, MODELS, CacheModel, ModelInputs, evaluate, model
from btrfsscan.model.tables import EXTENT_DTYPE, INODE_DTYPE, FileTables
from btrfsscan.model.versions import versions_of
from btrfsscan.present.views.report import schema

NAMES = [m.name for m in MODELS]


def _tables() -> FileTables:
    """Two 8 KiB files sharing one extent at 1 MiB: 4 pages per inode, 2 cached once."""
    inodes = np.array([(5, ino, 8192, 8192, 1, 0o100644, 0, 0, 0, 0) for ino in (257, 258)], INODE_DTYPE)
    extents = np.array([(5, ino, 0, 8192, 1 << 20, 8192, 0, 8192, 1, 0, bytes(16)) for ino in (257, 258)], EXTENT_DTYPE)
    return FileTables(inodes, extents)


def test_registry_order_and_definitions():
    assert NAMES == ["per_inode", "shared_extent", "shared_extent_compressed", "rfc_as_posted", "overlay_copy_up",
                     "file_fingerprint", "content_dedupe"]
    assert NAMES[0] == BASELINE and HEADLINE in NAMES and len(set(NAMES)) == len(NAMES)
    for m in MODELS:
        assert m.title and m.subject and m.design and "\n" not in m.design, m.name
        assert model(m.name) is m


def test_shipped_schema_defines_a_model_once_and_lists_the_registry():
    shipped = json.loads(resources.files("btrfsscan.present").joinpath("schemas", "report.schema.json").read_text())
    models = shipped["properties"]["totals"]["properties"]["models"]
    assert models["additionalProperties"] == {"$ref": "#/$defs/model"} and "properties" not in models
    assert set(shipped["$defs"]) == {"model", "dir_entry"}
    assert {"title", "design"} <= set(shipped["$defs"]["model"]["required"])
    assert "properties" not in shipped["$defs"]["dir_entry"]["properties"]["pages"]
    derived = schema()["properties"]["totals"]["properties"]["models"]
    assert derived["required"] == NAMES and list(derived["properties"]) == NAMES
    assert all(p["$ref"] == "#/$defs/model" for p in derived["properties"].values())
    assert derived["additionalProperties"] is False
    by_dir_pages = schema()["$defs"]["dir_entry"]["properties"]["pages"]
    assert by_dir_pages["required"] == NAMES and list(by_dir_pages["properties"]) == NAMES
    assert by_dir_pages["additionalProperties"] is False


def test_report_outputs_carry_every_model():
    from test_report_output import make_report, report_json, report_text

    from btrfsscan.present.renderers.prometheus import prometheus_text

    report = make_report()
    models = report_json(report)["totals"]["models"]
    assert list(models) == NAMES
    assert [(m["title"], m["design"]) for m in models.values()] == [(m.title, m.design) for m in MODELS]
    text = report_text(report)
    assert all(m.name in text for m in MODELS)  # the first column (titles may wrap in the design column)
    prom = prometheus_text(report)
    assert all(f'model="{name}"' in prom for name in NAMES)


def _probe(**kw) -> CacheModel:
    calls = kw.pop("calls")

    def pages(inputs: ModelInputs) -> int:
        calls.append(inputs.sources.get("content_hashes"))
        return inputs.result("shared_extent").pages - 1

    return CacheModel(name="probe", title="probe", subject="the probe", design="a test design", pages=pages,
                      order=99, **kw)


def test_a_model_whose_input_is_missing_does_not_apply_and_is_not_computed():
    calls: list = []
    probe = _probe(calls=calls, requires={"content_hashes": "a content hash of every page"})
    inputs = ModelInputs(build_layout(versions_of(_tables()), 4096, 4096), facts(4096))
    result = evaluate(probe, inputs)
    assert (result.pages, result.applicable) == (None, False) and calls == []
    assert result.reason == "needs a content hash of every page, which this run has not"
    given = ModelInputs(inputs.layout, inputs.facts, {"content_hashes": "hashes"})
    assert evaluate(probe, given).pages == 2 - 1 and calls == ["hashes"]  # shared_extent: 2 keys for 4 pages


def test_a_model_that_does_not_fit_gives_its_reason():
    calls: list = []
    probe = _probe(calls=calls, applies=lambda f, page_size: (page_size == f.sectorsize, "needs P == S"))
    inputs = ModelInputs(build_layout(versions_of(_tables()), 16384, 4096), facts(4096))
    assert evaluate(probe, inputs).reason == "needs P == S" and calls == []


@pytest.mark.parametrize("page_size", [4096, 16384])
def test_analyze_runs_every_registered_model(page_size):
    a = analyze(_tables(), page_size, facts(4096))
    assert list(a.models) == NAMES
    assert a.models["per_inode"].pages == 2 * ((8192 + page_size - 1) // page_size)
    assert a.models["rfc_as_posted"].applicable == (page_size == 4096)


@pytest.mark.parametrize("page_size", [4096, 16384])
def test_per_version_pages_sum_to_every_model_total(page_size):
    """The figures by directory come from each model's per-version hook: one copy of every version, weighted
    by its holders, adds up to the model's total (2 files of 8 KiB sharing their extent: 2 pages each at 4 KiB)."""
    from btrfsscan.cache.by_dir import version_pages

    a = analyze(_tables(), page_size, facts(4096))
    pages = version_pages(a)
    assert list(pages) == NAMES
    hooks = {m.name: m.per_version for m in MODELS}
    for name, per_version in pages.items():
        if not a.models[name].applicable or hooks[name] is None:  # no figures by directory: null there
            assert per_version is None, name
            continue
        assert float((per_version * a.layout.weight).sum()) == pytest.approx(a.models[name].pages), name
    if page_size == 4096:
        assert pages["shared_extent"].tolist() == [1.0, 1.0]  # each of the two cached pages split in halves


def test_a_new_model_reaches_by_dir_through_the_registry(monkeypatch):
    """A registered model with ``per_version`` has figures by directory, one without has None: no edit elsewhere."""
    import btrfsscan.cache.analyze as analyze_module
    import btrfsscan.cache.registry as registry
    from btrfsscan.cache.by_dir import version_pages

    half = CacheModel(name="half", title="half", subject="half", design="half of every page", order=98,
                      pages=lambda inputs: inputs.per_inode_pages // 2,
                      per_version=lambda inputs: inputs.layout.npages / 2.0)
    opaque = _probe(calls=[])
    extended = MODELS + (half, opaque)
    monkeypatch.setattr(analyze_module, "MODELS", extended)
    monkeypatch.setattr(registry, "_BY_NAME", {m.name: m for m in extended})
    pages = version_pages(analyze(_tables(), 4096, facts(4096)))
    assert pages["half"].tolist() == [1.0, 1.0] and pages["probe"] is None
