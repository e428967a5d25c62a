"""docs/cli.md lists every command, argument, exit code and code, and never drifts (issue 18)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pith_graph import codes
from pith_graph.cli import EXIT_INTERRUPTED, build_parser
from pith_graph.cli._common import EXIT_OK, EXIT_PROBLEMS, EXIT_UNUSABLE
from pith_graph.cli._doc import (
    CODE_FAMILIES,
    ENVELOPE,
    JSON_OUTPUTS,
    SHARED_SHAPES,
    Either,
    Free,
    Items,
    Obj,
    OrNull,
    Output,
    Shape,
    Shared,
    arguments,
    codes_of,
    commands,
    update,
)
from pith_graph.testing import History, TestKey
from tests.mirror.peerlab import FaultPeer, FeedPeer, Serve, bundle_path, output_document, run_cli, sync_args

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


def _json_commands() -> set[str]:
    """Every command that takes ``--json``, as its output's ``command`` member names it."""
    return {
        name.removeprefix("pith-graph ")
        for name, _, parser in commands(build_parser())
        if "--json" in dict(arguments(parser))
    }


def test_every_json_option_has_its_documented_shape() -> None:
    """Issue 18 item 2: every command's ``--json`` prints a pith-graph/1 document, and docs/cli.md's
    per-command table (written from JSON_OUTPUTS) gives its members (the mirror's commands printed
    bare lists and objects)."""
    text = CLI_MD.read_text(encoding="utf-8")
    for name, _, parser in commands(build_parser()):
        options = dict(arguments(parser))
        if "--json" in options:
            assert "pith-graph/1" in options["--json"], f"{name} --json: {options['--json']!r}"
    documented = [output.command for output in JSON_OUTPUTS]
    assert len(documented) == len(set(documented)) and set(documented) == _json_commands()
    assert {"verify", "mirror pull", "mirror sync", "mirror peers list", "keygen", "store check"} <= set(
        documented
    )
    for command in documented:
        assert re.search(rf"^\| `{re.escape(command)}` \| .+ \|$", text, re.MULTILINE), command


# --- real --json output against the documented shapes ------------------------------------------


def _check(value: Any, shape: Shape, path: str, seen: set[str]) -> list[str]:
    """Where ``value`` departs from ``shape`` (empty: it conforms); ``seen`` gets every documented
    place the value shows (an object's member, an alternative taken), so that a test can tell
    which parts of the documentation real output has been checked against."""
    if shape is None:
        return []
    if isinstance(shape, Shared):
        seen.add(f"shared:{shape.name}")
        return _check(value, SHARED_SHAPES[shape.name][0], shape.name, seen)
    if isinstance(shape, Free):
        return [] if isinstance(value, dict) else [f"{path}: not an object: {value!r}"]
    if isinstance(shape, OrNull):
        seen.add(f"{path}?{'null' if value is None else 'value'}")
        return [] if value is None else _check(value, shape.shape, path, seen)
    if isinstance(shape, Items):
        if not isinstance(value, list):
            return [f"{path}: not an array: {value!r}"]
        return [error for item in value for error in _check(item, shape.item, f"{path}[]", seen)]
    if isinstance(shape, Either):
        failures = []
        for index, option in enumerate(shape.options):
            found: set[str] = set()
            errors = _check(value, option, path, found)
            if not errors:
                seen |= found | {f"{path}|{index}"}
                return []
            failures += errors
        return [f"{path}: fits no documented shape: {failures}"]
    if not isinstance(value, dict):
        return [f"{path}: not an object: {value!r}"]
    names = [member.name for member in shape.members]
    if sorted(value) != sorted(names):
        return [f"{path}: members {sorted(value)}, documented {sorted(names)}"]
    errors = []
    for member in shape.members:
        seen.add(f"{path}.{member.name}")
        errors += _check(value[member.name], member.shape, f"{path}.{member.name}", seen)
    return errors


def _places(shape: Shape, path: str) -> set[str]:
    """Every place :func:`_check` marks seen for ``shape`` (shared shapes: by their own name)."""
    if isinstance(shape, Shared):
        return {f"shared:{shape.name}"}
    if isinstance(shape, OrNull):
        return {f"{path}?null", f"{path}?value"} | _places(shape.shape, path)
    if isinstance(shape, Items):
        return _places(shape.item, f"{path}[]")
    if isinstance(shape, Either):
        return {place for i, o in enumerate(shape.options) for place in {f"{path}|{i}"} | _places(o, path)}
    if isinstance(shape, Obj):
        return {
            place
            for m in shape.members
            for place in {f"{path}.{m.name}"} | _places(m.shape, f"{path}.{m.name}")
        }
    return set()


def _document_shape(output: Output) -> Either:
    """The whole document ``output`` documents: the envelope's members, then the command's."""
    options = output.shape.options if isinstance(output.shape, Either) else (output.shape,)
    return Either(*(Obj(*ENVELOPE.members, *option.members) for option in options if isinstance(option, Obj)))


def _shaped_bundle() -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """A bundle with something in every list the outputs have: an author's fork (an equivocation)
    and an event whose signature is another's (invalid), its trusted keys and its subject."""
    author = TestKey("doc-author")
    history = History.new(TestKey("doc-registry", signer_id="registry.example"))
    forks = [
        history.event("graph_snapshot", key=author, target="graph", payload={"graph_snapshot": {"v": n}})
        for n in (1, 2)
    ]
    bad = history.event("author_attestation", key=author, target="author", payload={"ok": 1})
    bad = {**bad, "signature": {**bad["signature"], "signature_b64": forks[0]["signature"]["signature_b64"]}}
    return history.bundle([*forks, bad]), history.trusted(), history.subject


def _real_outputs(tmp: Path) -> dict[str, list[dict[str, Any]]]:
    """Every command with ``--json`` run for real (processes, files, stores, HTTP peers on
    loopback), its documents by command; each envelope checked against its process."""
    bundle, keys, subject = _shaped_bundle()
    (tmp / "b.json").write_text(json.dumps(bundle))
    (tmp / "keys.json").write_text(json.dumps(keys))
    b, trust, db = str(tmp / "b.json"), ["--trusted-keys", str(tmp / "keys.json")], str(tmp / "s.sqlite")
    code = subject.rsplit(":", 1)[1]
    elsewhere = "pith:2026:" + "A" * 26  # a subject no peer serves
    runs: list[tuple[str, list[str]]] = [
        ("verify", ["verify", "--json", *trust, b]),
        ("verify-many", ["verify-many", "--json", *trust, b]),
        ("inspect", ["inspect", "--json", b]),
        ("state", ["state", "--json", *trust, b]),
        ("store import", ["store", "import", "--json", "--db", db, *trust, b, str(tmp / "missing.json")]),
        ("store log", ["store", "log", "--json", "--db", db]),
        ("store log", ["store", "log", "--json", "--db", db, *trust, subject]),
        ("store sync", ["store", "sync", "--json", "--db", str(tmp / "t.sqlite"), *trust, db]),
        ("store check", ["store", "check", "--json", "--db", db]),
        ("keygen", ["keygen", "--json", "--out", str(tmp / "mirror.key")]),
        ("mirror peers add", ["mirror", "peers", "add", "--json", "--db", db, "http://127.0.0.1:9/"]),
        ("mirror peers list", ["mirror", "peers", "list", "--json", "--db", db]),
    ]
    results = [(command, run_cli(*argv)) for command, argv in runs]
    fast = ["--timeout", "1", "--deadline", "10", "--retries", "0"]
    pulled = tmp / "pulled.sqlite"
    with FaultPeer({bundle_path(code): Serve(json.dumps(bundle).encode())}) as peer:
        pull = ["mirror", "pull", "--json", "--db", str(pulled), *trust, *fast, peer.url, subject, elsewhere]
        results.append(("mirror pull", run_cli(*pull)))
    with FeedPeer(db) as peer:
        results.append(
            (
                "mirror sync",
                run_cli(*sync_args(peer.url, tmp / "m.sqlite", tmp / "keys.json", *fast, "--json")),
            )
        )
    documents: dict[str, list[dict[str, Any]]] = {}
    for command, result in results:
        assert result.stdout, (command, result.returncode, result.stderr)
        documents.setdefault(command, []).append(output_document(result, command))
    return documents


def test_real_json_output_has_the_documented_members(tmp_path: Path) -> None:
    """Issue 18 item 2: docs/cli.md's shapes (JSON_OUTPUTS, which writes them) against what each
    command prints: every object with exactly the members documented, nested entries included,
    and every documented member, alternative and entry seen in some real output. (The docs'
    `store sync` entry lacked `events_refused`, `store log`'s lacked `copy_reason`.)"""
    documents = _real_outputs(tmp_path)
    assert set(documents) == _json_commands()
    seen: set[str] = set()
    for output in JSON_OUTPUTS:
        shape = _document_shape(output)
        for document in documents[output.command]:
            errors = _check({k: v for k, v in document.items() if k != "error"}, shape, output.command, seen)
            assert not errors, errors
            if "error" in document:
                assert not _check(document["error"], Shared("error"), "error", seen), document["error"]
        unseen = _places(shape, output.command) - seen
        assert not unseen, f"{output.command}: no real output showed {sorted(unseen)}"
    for name, (shared, _) in SHARED_SHAPES.items():
        assert not _places(shared, name) - seen, name
