"""The ``schema`` command: the JSON Schema of any command's ``--json`` document, from ``contract.CONTRACTS``."""

from __future__ import annotations

import json

import click

from .contract import CONTRACTS, schema

SCHEMA_HELP = """Print the JSON Schema (draft 2020-12) of COMMAND's --json document (or of the residency file).

\b
""" + "\n".join(f"{c.kind}: {c.description} (schema_version {c.version})" for c in CONTRACTS.values()) + """

Every document carries its schema_version; a change that could break a
reader raises it.
"""


@click.command("schema", help=SCHEMA_HELP)
@click.argument("command", metavar="COMMAND", type=click.Choice(list(CONTRACTS)))
def schema_cmd(command: str) -> None:
    click.echo(json.dumps(schema(command), indent=2, ensure_ascii=False))
