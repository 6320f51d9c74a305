"""The JSON contract: every command writing JSON has a registered, shipped, valid schema and says so in --help."""

from __future__ import annotations

import json

import jsonschema
import pytest

from btrfsscan.present.cli import COMMANDS
from btrfsscan.present.contract import CONTRACTS, schema
from support import run, validate_documents


def _json_commands() -> list[str]:
    return [name for name, lazy in COMMANDS.items() if any(p.name == "as_json" for p in lazy.load().params)]


def test_every_json_command_has_a_contract_and_every_contract_a_command():
    assert sorted(_json_commands()) == sorted(k for k, c in CONTRACTS.items() if c.command)


@pytest.mark.parametrize("kind", sorted(CONTRACTS))
def test_schema_command_prints_a_valid_strict_schema(kind):
    result = run("schema", kind)
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == schema(kind)
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed["properties"]["schema_version"] == {"const": CONTRACTS[kind].version}
    assert printed["additionalProperties"] is False and "schema_version" in printed["required"]


@pytest.mark.parametrize("kind", sorted(k for k, c in CONTRACTS.items() if c.command))
def test_json_help_says_what_comes_out(kind):
    out = run(kind, "--help").stdout
    assert f"btrfsscan schema {kind}" in " ".join(out.split())
    per_filesystem = "one JSON document per filesystem" in " ".join(out.split())
    assert per_filesystem == CONTRACTS[kind].per_filesystem


def test_schema_rejects_an_unknown_command():
    result = run("schema", "nonsense")
    assert result.exit_code == 2 and "nonsense" in result.stderr


@pytest.mark.parametrize("args, kind", [
    (("ls", "--sample", "-R"), "ls"),
    (("ls", "--sample", "@base/etc"), "ls"),
    (("subvolumes", "--sample"), "subvolumes"),
    (("super", "--sample"), "super"),
    (("super", "--sample", "--all"), "super"),
    (("map", "--sample", "@base/etc/hosts"), "map"),
    (("report", "--sample"), "report"),
])
def test_documents_carry_schema_version_first_and_validate(args, kind):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    for document in validate_documents(kind, result.stdout):
        assert next(iter(document)) == "schema_version"


def test_a_document_breaking_its_schema_is_caught():
    document = json.loads(run("subvolumes", "--sample", "--json").stdout)
    document["subvolumes"][0]["uuid"] = 42
    with pytest.raises(jsonschema.ValidationError):
        validate_documents("subvolumes", json.dumps(document))
    del document["schema_version"]
    with pytest.raises(jsonschema.ValidationError):
        validate_documents("subvolumes", json.dumps({k: v for k, v in document.items()}))


def test_json_and_another_format_conflict():
    result = run("report", "--sample", "--json", "--format", "prometheus")
    assert result.exit_code == 2 and "conflict" in result.stderr and result.stdout == ""


def test_residency_contract_follows_the_writer():
    """The residency file is written by ``live.residency``: its contract and shipped schema carry that version."""
    from btrfsscan.live.residency import SCHEMA_VERSION

    assert CONTRACTS["residency"].version == SCHEMA_VERSION
    assert schema("residency")["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
