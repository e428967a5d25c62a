"""The generated parts of docs/cli.md: every command with its arguments, every ``--json``
output's members, and every code.

``python -m pith_graph.cli._doc docs/cli.md`` rewrites the parts between the
``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` markers from the
argument parser, :data:`JSON_OUTPUTS` and :mod:`pith_graph.codes`; the rest of
the file is written by hand. tests/cli/test_cli_doc.py fails when the file is
not what this writes, and checks real ``--json`` output against :data:`JSON_OUTPUTS`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

from pith_graph import codes

__all__ = [
    "CODE_FAMILIES",
    "ENVELOPE",
    "JSON_OUTPUTS",
    "SHARED_SHAPES",
    "Either",
    "Free",
    "Items",
    "Member",
    "Obj",
    "OrNull",
    "Output",
    "Shared",
    "arguments",
    "codes_of",
    "commands",
    "render_codes",
    "render_commands",
    "render_json",
    "update",
]

#: The families of codes, by the prefix of their names in :mod:`pith_graph.codes`.
CODE_FAMILIES: Final = (
    ("REASON_", "Reasons an event is invalid (`reason`, part of the hashed state)"),
    ("P_", "Problem codes (`problems[].code` in a report)"),
    ("E_", "Error codes (`error[CODE]` on stderr, `error.code` in JSON)"),
    ("STORE_", "Store statuses (`status` of `store append`, `counts` of `store import`)"),
    ("NET_", "Why an event received over the network was not stored"),
    ("MIRROR_", "What `POST /pith/{code}/events` reports of an event it holds (`status`)"),
)


# --- JSON output shapes (docs/cli.md, "JSON output"): the one list docs and tests read -----------


@dataclass(frozen=True)
class Member:
    """A member of a JSON object: its name, its shape (None: a value described by ``note`` alone)."""

    name: str
    shape: Shape = None
    note: str = ""


@dataclass(frozen=True)
class Obj:
    """A JSON object with exactly these members (a bare name: a member whose value is not described)."""

    members: tuple[Member, ...]

    def __init__(self, *members: Member | str) -> None:
        object.__setattr__(self, "members", tuple(Member(m) if isinstance(m, str) else m for m in members))


@dataclass(frozen=True)
class Items:
    """A JSON array of ``item``."""

    item: Shape


@dataclass(frozen=True)
class Either:
    """One of ``options`` (an object of one shape or another)."""

    options: tuple[Shape, ...]

    def __init__(self, *options: Shape) -> None:
        object.__setattr__(self, "options", options)


@dataclass(frozen=True)
class OrNull:
    """``shape``, or null."""

    shape: Shape


@dataclass(frozen=True)
class Free:
    """A JSON object whose members vary (named in a note, not checked one by one)."""


@dataclass(frozen=True)
class Shared:
    """A shape of :data:`SHARED_SHAPES`, by name (``report``, ``problem``)."""

    name: str


Shape: TypeAlias = Obj | Items | Either | OrNull | Free | Shared | None


@dataclass(frozen=True)
class Output:
    """What ``command --json`` prints after the :data:`ENVELOPE`: ``shape`` (an object, or either
    of two), and a note."""

    command: str
    shape: Obj | Either
    note: str = ""


#: The members every output document starts with (:func:`pith_graph.cli._output.envelope`);
#: ``error`` is there too when an error stopped the command.
ENVELOPE: Final = Obj("format", "command", "exit_code", "ok")
#: ``error``'s shape (:func:`pith_graph.cli._output.error_member`).
ERROR: Final = Obj("code", "message")

#: Shapes several outputs share, by name, each with what it means.
SHARED_SHAPES: Final[dict[str, tuple[Obj, str]]] = {
    "report": (
        Obj(
            "kind",
            "source",
            "ok",
            "usable",
            Member("problems", Items(Shared("problem"))),
            Member("facts", Free()),
        ),
        "one per document verified. `kind` is `bundle`, `record`, `state`, `graph_snapshot`, "
        "`equivocation_proof`, or `unknown` for a document that could not be read. `usable: false` means the "
        "document could not be read as that kind: its one problem carries the error code (`not_json`, "
        "`too_large`, `not_a_pith_document`, ...). `facts` depend on the kind: for a bundle `pith_number`, "
        "`events`, `valid_events`, `invalid_events`, `equivocations`, `applied_events`, `state_sha256`, "
        "`trusted_keys`; for a record `pith_number`, `canonical_sha256`, `receipt_key`; for a state "
        "`pith_number`, `events`, `state_sha256`; for a graph snapshot `source`, `builder`",
    ),
    "problem": (
        Obj("code", "message", "where", "severity", "reason"),
        "`severity` is `error` or `warning` (warnings do not fail: an unsigned bundle). For an "
        "`invalid_event` problem, `where` is the event id and `reason` its merge-v1 reason; otherwise "
        "`reason` is null. **Root causes come first**: invalid events are listed in merge-v1's check "
        "order, so an event's own defect (`bad_signature`) comes before what it causes downstream "
        "(`prev_event_invalid`)",
    ),
    "error": (ERROR, "the one error that stopped the command (also printed on stderr), or one input's"),
}

_PEER = Obj("url", "name", "added_at", "cursor")

#: Every ``--json`` output: the members after the envelope, per command (``command`` as in the
#: document's ``command`` member). docs/cli.md's table is written from this, and
#: tests/cli/test_cli_doc.py checks real output against it.
JSON_OUTPUTS: Final = (
    Output(
        "verify",
        Obj(
            Member(
                "documents",
                Items(Shared("report")),
                "one per document, in the order given, directories expanded",
            )
        ),
    ),
    Output(
        "verify-many",
        Obj(
            Member(
                "documents",
                Items(Shared("report")),
                "one per bundle; a file that is no bundle gets an unusable report",
            )
        ),
    ),
    Output("inspect", Obj("source", "kind", Member("summary", Free(), "the members shown, unverified"))),
    Output(
        "state",
        Obj(
            "source",
            "pith_number",
            "state_sha256",
            "event_count",
            "valid_event_count",
            "invalid_event_count",
            "equivocation_count",
            "applied_event_count",
            Member("invalid_events", Items(Obj("event_id", "reason")), "root causes first"),
            Member(
                "equivocations",
                Items(Obj("event_ids", "prev_event", "signer_id", "target")),
                "as in the state",
            ),
        ),
        "with `--json`; without, `state` prints the state itself",
    ),
    Output(
        "store import",
        Obj(
            "db",
            Member(
                "bundles",
                Items(
                    Either(
                        Obj(
                            "source",
                            "ok",
                            "subject",
                            Member("counts", Obj("new", "duplicate", "stored_invalid")),
                            "items_added",
                            Member("invalid_events", Items(Obj("unit_id", "digest", "reason"))),
                        ),
                        Obj("source", "ok", Member("error", Shared("error"))),
                    )
                ),
                "one per bundle; the second shape, `ok: false`, for one that could not be used",
            ),
        ),
        "a store error after some batches: exit 2, `error` and the `bundles` committed before it, "
        "in the one document",
    ),
    Output(
        "store log",
        Either(
            Obj("db", Member("subjects", Items(None), "without SUBJECT: every stored subject")),
            Obj(
                "db",
                "subject",
                Member(
                    "events",
                    Items(Obj("unit_id", "digest", "event_type", "applied", "reason", "copy_reason")),
                    "in apply order; `reason` is the unit's merge-v1 reason, `copy_reason` this copy's own "
                    "stage-1 verdict, null when valid",
                ),
            ),
        ),
    ),
    Output(
        "store sync",
        Obj(
            "db",
            Member(
                "sources",
                Items(Obj("source", "events_added", "items_added", "events_refused")),
                "`events_refused`: copies that fail stage 1 under the trusted keys, not stored",
            ),
        ),
    ),
    Output(
        "store check",
        Obj(
            "db",
            Member(
                "mismatches", Items(None), "one line per stored row that does not re-derive, empty when `ok`"
            ),
            Member("checked", Free(), "rows re-derived, by table"),
            Member(
                "ignored",
                Free(),
                "rows kept that no replay reads, such as facts of another rule or key verdicts of unrecorded rings, by table",
            ),
        ),
    ),
    Output(
        "mirror pull",
        Obj(
            "db",
            "source",
            Member(
                "subjects",
                Items(
                    Obj(
                        "wanted",
                        "ok",
                        Member(
                            "admitted",
                            OrNull(
                                Obj(
                                    "subject",
                                    "source",
                                    "events_added",
                                    "duplicates",
                                    Member("rejected", Items(Obj("event_id", "reason"))),
                                    "items_added",
                                    "items_refused",
                                    "peer_state_sha256",
                                    "state_sha256",
                                    Member("notes", Items(Shared("problem"))),
                                    Member("problems", Items(Shared("problem"))),
                                )
                            ),
                        ),
                        Member("failures", Items(None)),
                    )
                ),
                "one per PITH_NUMBER asked; `admitted` is null when no mirror served a usable bundle; "
                "`failures`: one line per mirror passed over",
            ),
        ),
    ),
    Output(
        "mirror sync",
        Obj(
            "db",
            Member(
                "summary",
                Obj(
                    "peer",
                    "rounds",
                    "pages",
                    "subjects_listed",
                    "unchanged",
                    "not_modified",
                    "fetched",
                    "events_added",
                    "rejected",
                    Member("problems", Items(None)),
                    "problem_count",
                    "cursor",
                ),
                "`problems`: the first 100 as one line each; `problem_count` counts all",
            ),
        ),
        "a peer that fails after some pages were done: exit 2, `error` and the `summary` of what was kept, "
        "in the one document",
    ),
    Output("mirror peers add", Obj("db", Member("peer", _PEER))),
    Output("mirror peers list", Obj("db", Member("peers", Items(_PEER), "in the order first added"))),
    Output(
        "keygen",
        Obj(
            Member("out", None, "the key file written"),
            Member("key", Free(), "the public key entry, what `keygen` prints alone without `--json`"),
        ),
        "with `--json`",
    ),
)


def render_shape(shape: Shape) -> str:
    """A shape written compactly: ``{"a", "b": [{"c"}]}``, ``[problem...]``, ``{...}``."""
    if isinstance(shape, Obj):
        return "{" + ", ".join(_render_member(m) for m in shape.members) + "}"
    if isinstance(shape, Items):
        if isinstance(shape.item, Shared):
            return f"[{shape.item.name}...]"
        return "[...]" if shape.item is None else f"[{render_shape(shape.item)}]"
    if isinstance(shape, Either):
        return " or ".join(render_shape(option) for option in shape.options)
    if isinstance(shape, OrNull):
        return f"{render_shape(shape.shape)} or null"
    if isinstance(shape, Shared):
        return shape.name
    return "{...}" if isinstance(shape, Free) else ""


def _render_member(member: Member) -> str:
    return f'"{member.name}"' + (f": {render_shape(member.shape)}" if member.shape is not None else "")


def _render_top(shape: Obj) -> str:
    parts = []
    for member in shape.members:
        text = f"`{member.name}`"
        if member.shape is not None and not isinstance(member.shape, Free):
            text += f": `{render_shape(member.shape)}`"
        parts.append(text + (f" ({member.note})" if member.note else ""))
    return ", ".join(parts)


def render_json() -> str:
    """The JSON-shapes section: the shared shapes, then a table of every command's members."""
    out = ["Shared shapes:", ""]
    for name, (shape, note) in SHARED_SHAPES.items():
        out.append(f"- **{name}**: `{render_shape(shape)}`: {note}.")
    out += ["", "Per command (members after `format`, `command`, `exit_code`, `ok`):", ""]
    out += ["| command | members |", "|---|---|"]
    for output in JSON_OUTPUTS:
        options = output.shape.options if isinstance(output.shape, Either) else (output.shape,)
        members = " **or** ".join(_render_top(option) for option in options if isinstance(option, Obj))
        note = f"; {output.note}" if output.note else ""
        out.append(f"| `{output.command}` | {_cell(members + note)} |")
    return "\n".join(out)


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
    text = _replace(text, "commands", render_commands(parser))
    return _replace(_replace(text, "json", render_json()), "codes", render_codes())


def main(argv: list[str]) -> int:
    """Rewrite the generated parts of the file named (docs/cli.md)."""
    from pith_graph.cli import build_parser

    path = Path(argv[0])
    path.write_text(update(path.read_text(encoding="utf-8"), build_parser()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
