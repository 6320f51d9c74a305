"""`btrfsscan report` end to end: every kernel-made fixture, validated against the shipped schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from support import run

from btrfsscan.present.contract import schema

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FILE_FIXTURES = sorted(p.name for p in (FIXTURES / "files").iterdir() if list(p.glob("dev*.img.xz")))


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(schema("report"))


@pytest.mark.parametrize("page_size", ["4096", "16384", "65536"])
@pytest.mark.parametrize("name", FILE_FIXTURES)
def test_report_json_validates(name, page_size, fixture_images, validator):
    result = run("report", "--json", "--page-size", page_size, *fixture_images("files", name).values())
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, "one filesystem gives exactly one JSON object"
    report = json.loads(lines[0])
    validator.validate(report)
    assert report["schema_version"] == 1 and report["page_size"] == int(page_size)
    models = report["totals"]["models"]
    assert models["per_inode"]["pages"] == report["totals"]["per_inode"]["pages"]
    assert models["shared_extent"]["pages"] <= models["per_inode"]["pages"]
    assert models["shared_extent_compressed"]["pages"] <= models["shared_extent"]["pages"]
    assert sum(kind["pages"] for kind in report["by_kind"].values()) == report["totals"]["per_inode"]["pages"]


def test_report_groups_images_by_filesystem(fixture_images, validator, tmp_path):
    images = [*fixture_images("files", "reflinks").values(), *fixture_images("files", "raid1-files").values()]
    result = run("report", "--json", *images)
    assert result.exit_code == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(reports) == 2
    assert len({r["filesystem"]["fsid"] for r in reports}) == 2
    for report in reports:
        validator.validate(report)
    out = tmp_path / "report.json"
    assert run("report", "--json", "--output", out, *images).stdout == ""
    assert [json.loads(line) for line in out.read_text().splitlines()] == reports


def test_report_prometheus_and_tables(fixture_images):
    images = list(fixture_images("files", "reflinks").values())
    prom = run("report", "--format", "prometheus", *images)
    assert prom.exit_code == 0
    assert 'btrfsscan_page_cache_pages{fsid="' in prom.stdout and 'model="shared_extent"' in prom.stdout
    text = run("report", "--raw", *images)
    assert text.exit_code == 0
    assert text.stdout.startswith("Reading every file once caches")


def test_rfc_not_applicable_on_raid1(fixture_images):
    result = run("report", "--json", *fixture_images("files", "raid1-files").values())
    rfc = json.loads(result.stdout)["totals"]["models"]["rfc_as_posted"]
    assert rfc["applicable"] is False and "device" in rfc["reason"]


def test_schema_command_prints_the_shipped_schema():
    result = run("schema", "report")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == schema("report")
