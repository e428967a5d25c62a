"""The generated parts of docs/cli.md: every command with its arguments, and every code.

``python -m pith_graph.cli._doc docs/cli.md`` rewrites the parts between the
``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` markers from the
argument parser and :mod:`pith_graph.codes`; the rest of the file is written by
hand. tests/cli/test_cli_doc.py fails when the file is not what this writes.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from pith_graph import codes

__all__ = ["CODE_FAMILIES", "arguments", "codes_of", "commands", "render_codes", "render_commands", "update"]

#: The families of codes, by the prefix of their names in :mod:`pith_graph.codes`.
CODE_FAMILIES: Final = (
    ("REASON_", "Reasons an event is invalid (`reason`, part of the hashed state)"),
    ("P_", "Problem codes (`problems[].code` in a report)"),
    ("E_", "Error codes (`error[CODE]` on stderr, `error.code` in JSON)"),
    ("STORE_", "Store statuses (`status` of `store append`, `counts` of `store import`)"),
    ("NET_", "Why an event received over the network was not stored"),
    ("MIRROR_", "What `POST /pith/{code}/events` reports of an event it holds (`status`)"),
)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {choice.dest: choice.help or "" for choice in action._choices_actions}
    return {}


def commands(
    parser: argparse.ArgumentParser, prefix: str = "pith-graph"
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """Every leaf command: its full name, its one-line help and its parser."""
    helps = _helps(parser)
    for name, sub in _subparsers(parser).items():
        full = f"{prefix} {name}"
        if _subparsers(sub):
            yield from commands(sub, full)
        else:
            yield full, helps.get(name, ""), sub


def arguments(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    """Each argument of a command as it is written, and its help (``--help`` left out)."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        metavar = action.metavar if isinstance(action.metavar, str) else None
        if action.option_strings:
            takes = "" if action.nargs == 0 else f" {metavar or action.dest.upper()}"
            yield ", ".join(action.option_strings) + takes, action.help or ""
        else:
            name = metavar or action.dest.upper()
            suffix = "..." if action.nargs in ("+", "*") else ""
            yield (f"[{name}]" if action.nargs == "?" else name + suffix), action.help or ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_commands(parser: argparse.ArgumentParser) -> str:
    """The commands section: a heading per command, its help, a table of its arguments."""
    out: list[str] = []
    for name, help_text, sub in commands(parser):
        out += [f"### `{name}`", "", _cell(help_text) + ".", "", "| argument | meaning |", "|---|---|"]
        out += [f"| `{argument}` | {_cell(meaning)} |" for argument, meaning in arguments(sub)]
        out.append("")
    return "\n".join(out)


def codes_of(prefix: str) -> list[str]:
    """Every code of a family (:data:`CODE_FAMILIES`); reasons in check order, the others sorted."""
    names = [name for name in vars(codes) if name.startswith(prefix) and name.isupper()]
    values = {getattr(codes, name) for name in names}
    found = sorted(value for value in values if isinstance(value, str))
    if prefix == "REASON_":
        return sorted(found, key=codes.root_cause_rank)
    return found


def render_codes() -> str:
    """The codes section: one table per family, every code of :mod:`pith_graph.codes` with its meaning."""
    out: list[str] = []
    for prefix, title in CODE_FAMILIES:
        out += [f"### {title}", "", "| code | meaning |", "|---|---|"]
        out += [f"| `{code}` | {_cell(codes.MEANINGS.get(code, ''))} |" for code in codes_of(prefix)]
        out.append("")
    return "\n".join(out)


def _replace(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"docs/cli.md has no generated:{name} markers")
    return pattern.sub(lambda m: m.group(1) + "\n" + body + "\n" + m.group(2), text)


def update(text: str, parser: argparse.ArgumentParser) -> str:
    """``text`` (docs/cli.md) with its generated parts written afresh."""
    return _replace(_replace(text, "commands", render_commands(parser)), "codes", render_codes())


def main(argv: list[str]) -> int:
    """Rewrite the generated parts of the file named (docs/cli.md)."""
    from pith_graph.cli import build_parser

    path = Path(argv[0])
    path.write_text(update(path.read_text(encoding="utf-8"), build_parser()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
