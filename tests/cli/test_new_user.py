"""Issue 18, "What a new user hits": each numbered item reproduced through the CLI
(real subprocesses) or the library call the user made, and the clean behaviour now."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import pith_graph
from pith_graph.proofs import make_proofs
from pith_graph.testing import History, TestKey
from tests.helpers import FIXTURES

PACKAGE = Path(pith_graph.__path__[0])
BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"
RECORD = FIXTURES / "record-GFHD7S67.json"
STATE = FIXTURES / "state-SGRHL77B.json"
SUBJECT = "pith:2026:AG3PAJ22332P5QMVIKKH75CXNK"


def run(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pith_graph", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def one_error_line(result: subprocess.CompletedProcess[bytes], code: str) -> str:
    """The one stderr line of a failed command, checked: exit 2, ``error[code]``, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pith-graph: error[{code}]: "), result.stderr
    return lines[0]


def forked_history() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A bundle where one event has a bad signature (the root cause) and the next one in its
    stream is therefore prev_event_invalid; the downstream event's id sorts first."""
    alice = TestKey("ux-alice")
    for attempt in range(50):
        history = History.new(TestKey("ux-registry", signer_id="registry.example"))
        root = history.event("citation_signature", key=alice, target="citation:1", payload={"n": attempt})
        other = history.event("citation_signature", key=alice, target="citation:9", payload={"x": attempt})
        root = {
            **root,
            "signature": {**root["signature"], "signature_b64": other["signature"]["signature_b64"]},
        }
        child = history.event(
            "citation_signature", key=alice, target="citation:1", prev_event=root["event_id"]
        )
        if child["event_id"] < root["event_id"]:
            return history.bundle([root, child]), history.trusted()
    raise AssertionError("no ordering found")  # pragma: no cover


def equivocating_history() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """A bundle whose author forked a stream (two events after the same predecessor), the keys
    that trust it, and the equivocation proof of that fork (made by the library)."""
    author = TestKey("ux-forker")
    history = History.new(TestKey("ux-registry", signer_id="registry.example"))
    forks = [
        history.event("graph_snapshot", key=author, target="graph", payload={"graph_snapshot": {"v": n}})
        for n in (1, 2)
    ]
    bundle, keys = history.bundle(forks), history.trusted()
    [proof] = make_proofs(bundle, trusted_keys=keys)
    return bundle, keys, json.loads(json.dumps(proof))


# --- 1. verify keeps going past a bad file ------------------------------------------------


def test_1_verify_reports_every_file_and_json_is_complete(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_bytes(BUNDLE.read_bytes())
    (tmp_path / "truncated.json").write_bytes(BUNDLE.read_bytes()[:300])
    (tmp_path / "other.json").write_text('{"hello": "world"}')
    result = run("verify", "--json", str(tmp_path))
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert (document["format"], document["command"], document["exit_code"], document["ok"]) == (
        "pith-graph/1",
        "verify",
        2,
        False,
    )
    by_name = {Path(r["source"]).name: r for r in document["documents"]}
    assert by_name["good.json"]["ok"] and by_name["good.json"]["usable"]
    assert [p["code"] for p in by_name["truncated.json"]["problems"]] == ["not_json"]
    assert [p["code"] for p in by_name["other.json"]["problems"]] == ["not_a_pith_document"]
    assert not by_name["other.json"]["usable"]
    assert len(result.stderr.decode().splitlines()) == 2  # one line per unusable file


# --- 2. a documented, versioned JSON output; reasons, root cause first -------------------------


def test_2_invalid_events_carry_their_reason_root_cause_first(tmp_path: Path) -> None:
    bundle, keys = forked_history()
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    verify = run("verify", "--json", "--trusted-keys", str(tmp_path / "keys.json"), str(tmp_path / "b.json"))
    assert verify.returncode == 1
    [report] = json.loads(verify.stdout)["documents"]
    reasons = [p["reason"] for p in report["problems"] if p["code"] == "invalid_event"]
    assert reasons == ["bad_signature", "prev_event_invalid"]
    assert all(p["reason"] is None for p in report["problems"] if p["code"] != "invalid_event")
    many = run(
        "verify-many", "--json", "--trusted-keys", str(tmp_path / "keys.json"), str(tmp_path / "b.json")
    )
    assert many.returncode == 1 and json.loads(many.stdout)["documents"][0]["problems"] == report["problems"]
    line = run("verify-many", "--trusted-keys", str(tmp_path / "keys.json"), str(tmp_path / "b.json")).stdout
    assert b"first: error: invalid_event" in line and b"bad_signature" in line
    state = json.loads(
        run("state", "--json", "--trusted-keys", str(tmp_path / "keys.json"), str(tmp_path / "b.json")).stdout
    )
    assert [e["reason"] for e in state["invalid_events"]] == ["bad_signature", "prev_event_invalid"]
    assert state["format"] == "pith-graph/1" and state["command"] == "state"


def test_2_inspect_and_store_commands_have_json_output(tmp_path: Path) -> None:
    inspect = json.loads(run("inspect", "--json", str(BUNDLE)).stdout)
    assert (inspect["format"], inspect["kind"], inspect["summary"]["events"]) == ("pith-graph/1", "bundle", 2)
    db = str(tmp_path / "s.sqlite")
    imported = run("store", "import", "--json", "--db", db, str(BUNDLE))
    assert imported.returncode == 0, imported.stderr
    [entry] = json.loads(imported.stdout)["bundles"]
    assert entry["subject"] == SUBJECT and entry["counts"] == {"new": 2, "duplicate": 0, "stored_invalid": 0}
    log = json.loads(run("store", "log", "--json", "--db", db, SUBJECT).stdout)
    assert [e["applied"] for e in log["events"]] == [True, True] and log["command"] == "store log"
    synced = json.loads(run("store", "sync", "--json", "--db", str(tmp_path / "t.sqlite"), db).stdout)
    assert synced["sources"] == [{"source": db, "events_added": 2, "items_added": 9, "events_refused": 0}]


# --- 3. one clean line for every error ------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="writes to /dev/full (Linux)")
def test_3_a_full_disk_on_output_is_one_line() -> None:
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "pith_graph", "state", str(BUNDLE)],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    assert result.returncode == 2
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("pith-graph: error[output_error]: <stdout>: ")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="writes to /dev/full (Linux)")
@pytest.mark.parametrize("args", [["--version"], ["state", "--help"]], ids=["version", "help"])
@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["unbuffered", "buffered"])
def test_3_help_and_version_into_a_full_disk_are_one_line(args: list[str], unbuffered: str) -> None:
    """argparse prints these itself and swallowed the write error: exit 0 and nothing said
    (unbuffered), or the interpreter's "Exception ignored" and exit 120 (buffered)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "-m", "pith_graph", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=120,
            env=env,
        )
    [line] = result.stderr.decode().splitlines()
    assert (result.returncode, line) == (
        2,
        "pith-graph: error[output_error]: <stdout>: cannot write the output: No space left on device",
    )


def test_3_a_closed_pipe_on_output_is_one_line() -> None:
    reader, writer = os.pipe()
    os.close(reader)  # the reader went away (`| head` that exited)
    try:
        closed = subprocess.run(
            [sys.executable, "-m", "pith_graph", "state", str(BUNDLE)],
            stdout=writer,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    finally:
        os.close(writer)
    assert closed.returncode == 2 and b"Traceback" not in closed.stderr
    assert closed.stderr.decode().startswith("pith-graph: error[output_error]: <stdout>: ")


@pytest.mark.parametrize(
    "options",
    [["--jobs", "-1"], ["--timeout", "-5"], ["--timeout", "nan"], ["--impl", "nonexistent-binary-ux18"]],
    ids=["jobs", "timeout", "timeout-nan", "impl"],
)
def test_3_and_11_bad_option_values_are_usage_errors(tmp_path: Path, options: list[str]) -> None:
    impl = [] if "--impl" in options else ["--impl", sys.executable]
    line = one_error_line(run("vectors", "run", str(tmp_path), *impl, *options), "usage")
    assert options[0] in line


#: Where a member is removed rather than given the wrong type.
MISSING = object()
PROOF = "proof"  # a seed made by equivocating_history(): no proof is among the fixtures


@pytest.mark.parametrize(
    ("seed", "change"),
    [
        (BUNDLE, {"state": [1]}),
        (BUNDLE, {"events": 5, "public_keys": "k"}),
        (RECORD, {"receipt": "x"}),
        (FIXTURES / "graph-GFHD7S67.json", {"claims": "s", "paper": 3}),
        (STATE, {"applied_event_ids": 5}),
        (PROOF, {"events": "s"}),
        (PROOF, {"events": [1, "x"], "public_key": [], "prev_event": 7}),
        (PROOF, {"events": MISSING}),
        (PROOF, {"public_key": MISSING, "signer_id": MISSING}),
    ],
    ids=[
        "bundle-state",
        "bundle-events",
        "record-receipt",
        "snapshot-claims",
        "state-applied",
        "proof-events",
        "proof-members",
        "proof-no-events",
        "proof-no-key",
    ],
)
def test_3_malformed_documents_of_every_kind(
    tmp_path: Path, seed: Path | str, change: dict[str, Any]
) -> None:
    if seed == PROOF:
        _, keys, document = equivocating_history()
        (tmp_path / "keys.json").write_text(json.dumps(keys))
        trust = ["--trusted-keys", str(tmp_path / "keys.json")]
        intact = tmp_path / "intact.json"
        intact.write_text(json.dumps(document))
        # The unchanged proof verifies: what fails below fails because of the change.
        assert run("verify", *trust, str(intact)).returncode == 0
    else:
        document, trust = json.loads(Path(seed).read_bytes()), []
    for name, value in change.items():
        if value is MISSING:
            del document[name]
        else:
            document[name] = value
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    inspect = run("inspect", str(path))
    assert inspect.returncode == 0 and inspect.stderr == b"", inspect.stderr
    verify = run("verify", *trust, str(path))
    assert verify.returncode in (1, 2) and b"Traceback" not in verify.stderr
    if verify.returncode == 2:
        one_error_line(verify, "bad_shape")
    if seed == PROOF:
        assert inspect.stdout.startswith(f"{path}: equivocation_proof".encode()), inspect.stdout
        assert verify.returncode == 1 and b"proof_invalid" in verify.stdout, verify.stdout


# --- 5. big integers -------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["4300", "640", "0"])
def test_5_big_integers_one_rule_whatever_the_interpreter_limit(tmp_path: Path, limit: str) -> None:
    bundle = json.loads(BUNDLE.read_bytes())
    text = json.dumps(bundle).replace('"events": [', '"big": ' + "9" * 4301 + ', "events": [', 1)
    (tmp_path / "long.json").write_text(text)
    exact = json.dumps(bundle).replace('"events": [', '"big": -' + "9" * 640 + ', "events": [', 1)
    (tmp_path / "exact.json").write_text(exact)
    env = {"PYTHONINTMAXSTRDIGITS": limit}
    line = one_error_line(run("state", str(tmp_path / "long.json"), env=env), "integer_too_long")
    assert "long.json" in line and "sys." not in line and "set_int_max_str_digits" not in line
    state = run("state", str(tmp_path / "exact.json"), env=env)
    assert state.returncode == 0 and state.stdout == run("state", str(BUNDLE)).stdout


# --- 6. the corpus ships ----------------------------------------------------------------------


def test_6_vectors_path_points_at_the_shipped_corpus() -> None:
    result = run("vectors", "path")
    assert result.returncode == 0
    corpus = Path(result.stdout.decode().strip())
    assert (corpus / "index.json").is_file() and corpus.is_relative_to(PACKAGE)
    inputs = Path(run("vectors", "path", "--inputs").stdout.decode().strip())
    assert any(inputs.glob("*.json"))


# --- 7. progress by events, on request or on a terminal only --------------------------------------


def test_7_progress_counts_events() -> None:
    shown = run("state", "--progress", str(BUNDLE))
    assert shown.returncode == 0 and b"2/2 events" in shown.stderr
    verify = run("verify", "--progress", "--workers", "1", str(BUNDLE), str(RECORD))
    assert b"(2/2 events)" in verify.stderr and b"2/2" in verify.stderr
    assert run("state", str(BUNDLE)).stderr == b""  # not a terminal: nothing drawn


def test_7_store_replays_show_the_events_they_check(tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    assert run("store", "import", "--db", db, str(BUNDLE)).returncode == 0
    # Under other keys than at import, every copy's key checks run again: counted.
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps([*json.loads(BUNDLE.read_bytes())["public_keys"], TestKey("ux-other").entry()])
    )
    state = run("store", "state", "--db", db, "--progress", "--trusted-keys", str(keys), SUBJECT)
    assert state.returncode == 0 and b"2/2 events" in state.stderr
    assert run("store", "export", "--db", db, SUBJECT).stderr == b""


# --- 8. --version, stdin, short Pith Numbers, help ------------------------------------------------


def test_8_version_and_stdin() -> None:
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith(b"pith-graph ")
    data = BUNDLE.read_bytes()
    assert run("state", "-", stdin=data).stdout == run("state", str(BUNDLE)).stdout
    assert run("inspect", "-", stdin=data).stdout.startswith(b"<stdin>: bundle")
    verified = run("verify", "-", stdin=data)
    assert verified.returncode == 0 and verified.stdout.startswith(b"<stdin>: bundle: OK")
    line = one_error_line(run("state", "-", stdin=b"{"), "not_json")
    assert "<stdin>" in line


def test_8_stdin_for_verify_many_and_proof(tmp_path: Path) -> None:
    """``-`` was a missing file for these two (``error[io_error]: -: no such file or directory``,
    ``cannot read -``). For verify-many it is one bundle, reported in its place."""
    data = BUNDLE.read_bytes()
    many = run("verify-many", str(BUNDLE), "-", str(RECORD), stdin=data)
    assert many.returncode == 2, many.stderr
    assert many.stdout.decode().splitlines() == [
        f"{BUNDLE}: OK (2 events, 0 invalid, 0 forks)",
        "<stdin>: OK (2 events, 0 invalid, 0 forks)",
        f"{RECORD}: ERROR [not_a_pith_document] expected a bundle (pith_open_graph_bundle), but this is a record",
    ]
    assert many.stderr.decode().splitlines()[-1] == "3 bundle(s): 2 ok, 0 with problems, 1 unusable"
    [report] = json.loads(run("verify-many", "--json", "-", stdin=data).stdout)["documents"]
    assert (report["source"], report["ok"], report["facts"]["events"]) == ("<stdin>", True, 2)
    assert run("verify-many", "-", stdin=RECORD.read_bytes()).stdout.startswith(
        b"<stdin>: ERROR [not_a_pith_document]"
    )
    bundle, keys, proof = equivocating_history()
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    trust = ["--trusted-keys", str(tmp_path / "keys.json")]
    made = run("proof", *trust, "-", stdin=json.dumps(bundle).encode())
    assert made.returncode == 0, made.stderr
    assert made.stdout == run("proof", *trust, str(tmp_path / "b.json")).stdout
    assert [json.loads(line) for line in made.stdout.splitlines()] == [proof]
    assert made.stderr == b"<stdin>: 1 equivocation proof(s)\n"
    line = one_error_line(run("proof", "-", stdin=b"{"), "not_json")
    assert line.startswith("pith-graph: error[not_json]: <stdin>: not JSON: ")


@pytest.mark.parametrize(
    "argv",
    [
        ("verify-many", "--trusted-keys", "-", "-"),
        ("verify", "-", "-"),
    ],
)
def test_8_stdin_named_twice_is_a_usage_error(argv: tuple[str, ...]) -> None:
    """Standard input can be read once: the second ``-`` read nothing and was reported as
    ``not_json`` (or as a bundle that is not JSON)."""
    line = one_error_line(run(*argv, stdin=b"[]"), "usage")
    assert (
        line
        == "pith-graph: error[usage]: <stdin>: - is named more than once; standard input can be read once"
    )


def test_9_an_unreadable_file_is_named_where_the_format_says(tmp_path: Path) -> None:
    """``pith-graph: error[CODE]: FILE: message`` for every command; state, inspect, store and
    proof said ``error[io_error]: cannot read FILE: ...``, the file inside the message."""
    missing = str(tmp_path / "nope.json")
    db = str(tmp_path / "s.sqlite")
    for command in (
        ["state", missing],
        ["inspect", missing],
        ["proof", missing],
        ["store", "import", "--db", db, missing],
        ["store", "sync", "--db", db, missing],
        ["store", "append", "--db", db, missing],
        ["state", "--trusted-keys", missing, str(BUNDLE)],
    ):
        line = one_error_line(run(*command), "io_error")
        assert line.startswith(f"pith-graph: error[io_error]: {missing}: "), (command, line)
        assert line.count(missing) == 1 and line.endswith("No such file or directory"), (command, line)
    for name in ("verify", "verify-many"):  # these said it right already
        line = one_error_line(run(name, missing), "io_error")
        assert line == f"pith-graph: error[io_error]: {missing}: no such file or directory"


def test_8_subjects_by_short_number_and_alias(tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    assert run("store", "import", "--db", db, "-", stdin=BUNDLE.read_bytes()).returncode == 0
    full = run("store", "state", "--db", db, SUBJECT).stdout
    for name in (
        "pith:AG3PAJ22",
        "AG3PAJ22332P",
        "pith:ag3paj22332p5qmv",
        "2603.28768",
        "2603.28768v2",
        "10.48550/arxiv.2603.28768",
    ):
        assert run("store", "state", "--db", db, name).stdout == full, name
    assert (
        run("store", "log", "--db", db, "2603.28768").stdout
        == run("store", "log", "--db", db, SUBJECT).stdout
    )
    assert json.loads(run("store", "export", "--db", db, "pith:AG3PAJ22").stdout)["pith_number"] == SUBJECT
    one_error_line(run("store", "state", "--db", db, "pith:ZZZZZZZZ"), "store_unknown_subject")


def test_8_help_says_what_trusting_bundle_keys_means() -> None:
    text = run("store", "state", "--help").stdout.decode()
    assert "SUBJECT" in text and "arXiv id" in text
    assert "the store holds for the subject lists" not in text and "unsafe" in text


# --- 9. messages name the file and read well ----------------------------------------------------


def test_9_messages_name_the_file(tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite")
    line = one_error_line(run("store", "sync", "--db", db, str(BUNDLE), str(RECORD)), "not_a_pith_document")
    assert str(RECORD) in line and "got not" not in line and "this is a record" in line
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": "unterminated')
    for command in ("state", "inspect"):
        line = one_error_line(run(command, str(bad)), "not_json")
        assert str(bad) in line and "at at" not in line and "line 1, column" in line
    duplicate = tmp_path / "dup.json"
    duplicate.write_text('{"x": [{"k": 1}, {"k": 2}],\n  "y": {"k": 1,\n  "k": 2}}')
    line = one_error_line(run("inspect", str(duplicate)), "duplicate_key")
    assert "'k' at line 3, column 3" in line and str(duplicate) in line


# --- 11. verify-many counts what it cannot use; trusted keys that trust nothing ------------------


def test_11_verify_many_exits_2_for_records_and_states(tmp_path: Path) -> None:
    result = run("verify-many", str(BUNDLE), str(RECORD), str(STATE))
    assert result.returncode == 2
    assert result.stderr.decode().splitlines()[-1] == "3 bundle(s): 1 ok, 0 with problems, 2 unusable"
    assert b"ERROR [not_a_pith_document]" in result.stdout


def test_11_an_empty_trusted_keys_file_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text("[]")
    for command in (["state", str(BUNDLE)], ["verify", str(BUNDLE)], ["verify-many", str(BUNDLE)]):
        line = one_error_line(run(*command, "--trusted-keys", str(keys)), "bad_key")
        assert str(keys) in line


# --- 12. the size is checked before reading ---------------------------------------------------------


def test_12_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate((1 << 30) + 1)  # sparse: no disk used
    code = (
        "import resource, sys\n"
        "from pith_graph.cli import main\n"
        "status = main(['inspect', sys.argv[1]])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(huge)], capture_output=True, timeout=120)
    one_error_line(result, "too_large")
    assert int(result.stdout) < 512 * 1024  # KiB: far below the 1 GiB a read would take


#: How the command is started: the console script (made by the install from [project.scripts]),
#: and ``python -m`` of the package and of its cli.
ENTRIES = {
    "script": [str(Path(sys.executable).parent / "pith-graph")],
    "-m pith_graph": [sys.executable, "-m", "pith_graph"],
    "-m pith_graph.cli": [sys.executable, "-m", "pith_graph.cli"],
}
#: When Ctrl-C is sent: milliseconds after the start, or once an import is reported done.
CTRL_C_POINTS: list[int | str] = [0, 5, 10, 20, 50, "pith_graph._startup", "msgspec", "pith_graph.store"]
_IMPORT_TIME = b"import time:"


def _signal_state(pid: int) -> tuple[str, bool]:
    """The process's state letter and whether it catches SIGINT (a handler installed), from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    caught = int(fields["SigCgt"].strip(), 16) >> (signal.SIGINT - 1) & 1
    return fields["State"].split()[0], bool(caught)


def _imported(stderr: bytes) -> set[str]:
    """The modules ``PYTHONPROFILEIMPORTTIME`` reported imported (each line is written once one is done)."""
    return {
        line.rsplit(b"|", 1)[1].strip().decode()
        for line in stderr.splitlines()
        if line.startswith(_IMPORT_TIME)
    }


def _ctrl_c_at(entry: list[str], point: int | str) -> tuple[str, int, str]:
    """Start ``verify --workers 2``, freeze it (SIGSTOP) at ``point``, see how far it got, press
    Ctrl-C (SIGINT to its process group), let it go on: (phase, exit code, stderr without the
    import-time lines). Frozen, the process cannot move on between the look and the signal."""
    process = subprocess.Popen(
        [*entry, "verify", "--workers", "2", str(BUNDLE)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert process.stderr is not None
    fd = process.stderr.fileno()
    os.set_blocking(fd, False)
    seen = bytearray()

    def drain() -> None:
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(fd, 1 << 16):
                seen.extend(chunk)

    try:
        deadline = time.monotonic() + 60
        if isinstance(point, int):
            time.sleep(point / 1000)
        else:
            while point not in _imported(bytes(seen)) and time.monotonic() < deadline:
                assert process.poll() is None, "finished before it could be interrupted"
                drain()
                time.sleep(0.001)
        os.kill(process.pid, signal.SIGSTOP)
        state, caught = _signal_state(process.pid)
        while state != "T" and time.monotonic() < deadline:
            state, caught = _signal_state(process.pid)
        assert state == "T", f"not stopped ({state}): finished before it could be interrupted"
        drain()  # everything it wrote before it stopped
        if "pith_graph._startup" in _imported(bytes(seen)):
            phase = "package"  # the package's handler is in place (the console script's even before)
        else:
            phase = "interpreter" if caught else "before any handler"
        os.killpg(process.pid, signal.SIGINT)
        os.kill(process.pid, signal.SIGCONT)
        with contextlib.suppress(BlockingIOError):
            process.wait(timeout=120)
        os.set_blocking(fd, True)
        seen.extend(process.stderr.read())
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stderr.close()
    lines = [line for line in bytes(seen).splitlines(keepends=True) if not line.startswith(_IMPORT_TIME)]
    return phase, process.returncode, b"".join(lines).decode(errors="replace")


#: The module whose import installs the handler, by entry: the console script's own module, or
#: the package's first (``python -m`` imports the package before anything of it runs).
HANDLER_MODULE = {"script": "_pith_graph_command", "-m pith_graph": "pith_graph._startup"}
HANDLER_MODULE["-m pith_graph.cli"] = HANDLER_MODULE["-m pith_graph"]


def _imports(command: list[str]) -> list[str]:
    """The modules ``command`` imports, in the order each import was done (``PYTHONPROFILEIMPORTTIME``)."""
    result = subprocess.run(
        command, capture_output=True, timeout=120, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(_IMPORT_TIME)]
    return [line.rsplit(b"|", 1)[1].strip().decode() for line in lines]


@pytest.mark.parametrize("name", list(ENTRIES))
def test_3_nothing_but_the_interpreters_own_start_up_comes_before_the_ctrl_c_handler(name: str) -> None:
    """Issue 18 item 3: the handler is in place before the package or any dependency is imported.
    What was imported before it is what a bare interpreter imports to start (``site``, and
    runpy's modules for ``python -m``): the window where Ctrl-C is Python's own is the
    interpreter's start-up, never this project's imports. (Before, ``pith_graph._startup``
    imported ``typing`` and ``threading`` first, and the console script the whole package.)"""
    imported = _imports([*ENTRIES[name], "--version"])
    handler = HANDLER_MODULE[name]
    assert handler in imported, imported
    before = set(imported[: imported.index(handler)])
    bare = [sys.executable, "-c", "pass"] if name == "script" else [sys.executable, "-m", "this"]
    interpreter = set(_imports(bare)) - {"this"}
    assert "site" in interpreter and "pith_graph" not in interpreter  # the baseline is a real one
    assert before - interpreter <= {"_pith_graph_command"}, sorted(before - interpreter)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("entry", list(ENTRIES.values()), ids=list(ENTRIES))
def test_3_ctrl_c_while_the_command_starts_is_one_line_and_130(entry: list[str]) -> None:
    """Issue 18 item 3: Ctrl-C 0.1-0.3 s into a command landed in the middle of its imports
    (a traceback, exit -2). Pressed at several points of the start-up, from the first
    millisecond to the package's imports, the outcome depends only on how far the process got:

    * before the interpreter installed any SIGINT handler: the kernel ends the process (exit
      -2, which a shell shows as 130), and nothing is printed: no code had run, there is
      nothing a program can do earlier;
    * once this project's handler is in place (the console script's module installs it
      before it imports the package; ``python -m`` gets it from ``pith_graph._startup``,
      the package's first import): exactly one line, ``pith-graph: interrupted``, exit 130;
    * in between, the interpreter is still starting (``site`` and other packages' ``.pth``
      files, runpy, finding the entry module; the test above shows nothing else is imported
      before the handler): Python's own default applies, a KeyboardInterrupt.
    """
    phases = []
    for point in CTRL_C_POINTS:
        phase, code, stderr = _ctrl_c_at(entry, point)
        phases.append(phase)
        where = f"Ctrl-C at {point!r} ({phase}): exit {code}, stderr {stderr[-600:]!r}"
        if phase == "package":
            assert (code, stderr) == (130, "pith-graph: interrupted\n"), where
        elif phase == "before any handler":
            assert (code, stderr) == (-signal.SIGINT, ""), where
        else:
            assert (code, stderr) == (130, "pith-graph: interrupted\n") or "KeyboardInterrupt" in stderr, (
                where
            )
    assert phases[-3:] == ["package"] * 3  # the import points: the strict case is always exercised
