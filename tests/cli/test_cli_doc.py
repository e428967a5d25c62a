"""docs/cli.md lists every command, argument, exit code and code, and never drifts (issue 18)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pith_graph import codes
from pith_graph.cli import EXIT_INTERRUPTED, build_parser
from pith_graph.cli._common import EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE
from pith_graph.cli._doc import CODE_FAMILIES, arguments, codes_of, commands, update

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_generated_parts_are_up_to_date() -> None:
    """Fails when a command, an argument or a code changed without `python -m pith_graph.cli._doc docs/cli.md`."""
    text = CLI_MD.read_text(encoding="utf-8")
    assert update(text, build_parser()) == text


def test_every_code_has_a_meaning_and_a_line() -> None:
    text = CLI_MD.read_text(encoding="utf-8")
    every = [code for prefix, _ in CODE_FAMILIES for code in codes_of(prefix)]
    assert len(every) >= 68 and codes.E_NUMBER_TOO_LONG in every and codes.REASON_BAD_SIGNATURE in every
    for code in every:
        assert codes.MEANINGS.get(code), f"codes.MEANINGS has no line for {code!r}"
        assert re.search(rf"^\| `{re.escape(code)}` \| .+ \|$", text, re.MULTILINE), code


def test_every_exit_code_is_listed() -> None:
    text = CLI_MD.read_text(encoding="utf-8")
    for code in (EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE, EXIT_INTERRUPTED):
        assert re.search(rf"^\| {code} \| .+ \|$", text, re.MULTILINE), code


@pytest.mark.parametrize(
    ("name", "help_text", "parser"), list(commands(build_parser())), ids=lambda v: str(v)
)
def test_every_command_and_argument_has_help(name: str, help_text: str, parser: object) -> None:
    """Issue 18 item 8: help text for every argument, positional ones included."""
    assert f"### `{name}`" in CLI_MD.read_text(encoding="utf-8")
    assert help_text
    for argument, meaning in arguments(parser):  # type: ignore[arg-type]
        assert meaning, f"{name} {argument} has no help"


def test_the_commands_are_all_there() -> None:
    names = {name for name, _, _ in commands(build_parser())}
    assert {
        "pith-graph state",
        "pith-graph verify",
        "pith-graph verify-many",
        "pith-graph inspect",
        "pith-graph store import",
        "pith-graph store log",
        "pith-graph vectors path",
        "pith-graph vectors run",
        "pith-graph proof",
    } <= names


def test_every_json_option_has_its_documented_shape() -> None:
    """Issue 18 item 2: every command's ``--json`` prints a pith-graph/1 document, and docs/cli.md's
    per-command table gives its members (the mirror's commands printed bare lists and objects)."""
    text = CLI_MD.read_text(encoding="utf-8")
    with_json = []
    for name, _, parser in commands(build_parser()):
        options = dict(arguments(parser))
        if "--json" not in options:
            continue
        command = name.removeprefix("pith-graph ")
        with_json.append(command)
        assert "pith-graph/1" in options["--json"], f"{command} --json: {options['--json']!r}"
        assert re.search(rf"^\| `{re.escape(command)}( --json)?` \| .+ \|$", text, re.MULTILINE), command
    assert {"verify", "mirror pull", "mirror sync", "mirror peers list", "keygen"} <= set(with_json)
