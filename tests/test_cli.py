"""The CLI through real subprocesses: output bytes, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pith_graph.testing import History, TestKey

FIXTURES = Path(__file__).parent / "fixtures"
BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"
SEEDS = sorted(p for p in FIXTURES.glob("*.json") if "speccheck" not in p.name)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pith_graph", *args], capture_output=True, timeout=120, cwd=cwd)


def embedded_state_bytes() -> bytes:
    """The embedded state exactly as the registry wrote it, cut from the file text."""
    text = BUNDLE.read_bytes()
    start = text.index(b'"state":{') + len(b'"state":')
    end = text.index(b',"bundle_signature":')
    return text[start:end]


def test_state_prints_the_registry_bytes() -> None:
    result = run("state", str(BUNDLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout == embedded_state_bytes() + b"\n"
    assert result.stderr == b""


def test_state_pretty_is_the_same_document() -> None:
    result = run("state", str(BUNDLE), "--pretty")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads(embedded_state_bytes())


def test_verify_all_seeds_ok_and_kinds_reported() -> None:
    result = run("verify", "--json", *map(str, SEEDS))
    assert result.returncode == 0, result.stdout
    kinds = {Path(r["source"]).name: r["kind"] for r in json.loads(result.stdout)}
    assert kinds == {
        "bundle-AG3PAJ22.json": "bundle",
        "graph-GFHD7S67.json": "graph_snapshot",
        "record-GFHD7S67.json": "record",
        "record-NE7W423I.json": "record",
        "state-SGRHL77B.json": "state",
    }


def test_verify_a_directory_with_workers_gives_the_serial_reports(tmp_path: Path) -> None:
    """``verify --workers N DIR``: every document under the directory, one process each, reports in order."""
    (tmp_path / "nested").mkdir()
    for i, seed in enumerate(SEEDS):
        (tmp_path / ("nested" if i % 2 else ".") / seed.name).write_bytes(seed.read_bytes())
    tampered = json.loads(BUNDLE.read_bytes())
    tampered["events"][1]["payload"]["verdict_id"] = "forged"
    (tmp_path / "nested" / "tampered.json").write_text(json.dumps(tampered))
    files = sorted(str(p) for p in tmp_path.rglob("*.json"))
    serial = run("verify", "--json", "--workers", "1", *files)
    assert serial.returncode == 1, serial.stderr
    assert len(json.loads(serial.stdout)) == len(SEEDS) + 1
    for workers in ("1", "2"):
        result = run("verify", "--json", "--workers", workers, "--progress", str(tmp_path))
        assert result.returncode == 1, result.stderr
        assert result.stdout == serial.stdout
        assert f"{len(files)}/{len(files)}".encode() in result.stderr
    plain = run("verify", "--workers", "2", str(tmp_path))
    assert plain.returncode == 1 and b"tampered.json: bundle: FAILED" in plain.stdout


def test_verify_with_workers_stops_at_a_document_it_cannot_read(tmp_path: Path) -> None:
    for seed in SEEDS[:3]:
        (tmp_path / seed.name).write_bytes(seed.read_bytes())
    (tmp_path / "zz-not-pith.json").write_text('{"hello": "world"}')
    for workers in ("1", "2"):
        result = run("verify", "--workers", workers, str(tmp_path))
        assert result.returncode == 2
        assert result.stdout == b""
        [line] = result.stderr.decode().splitlines()
        assert line.startswith("pith-graph: error[not_a_pith_document]: ") and "zz-not-pith.json" in line


def test_verify_tampered_bundle_exits_1(tmp_path: Path) -> None:
    bundle = json.loads(BUNDLE.read_bytes())
    bundle["events"][1]["payload"]["verdict_id"] = "forged"
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(bundle))
    result = run("verify", str(path))
    assert result.returncode == 1
    assert b"content_hash_mismatch" in result.stdout
    assert b"state_mismatch" in result.stdout


def test_trusted_keys_file_and_trust_bundle_keys(tmp_path: Path) -> None:
    key = TestKey("cli-signer")
    history = History.new(key)
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps(history.bundle([history.event("mirror_hint", payload={"url": "https://m.example"})])))
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(history.trusted()))

    untrusted = json.loads(run("state", str(bundle)).stdout)
    assert untrusted["valid_event_count"] == 0
    assert {e["reason"] for e in untrusted["invalid_events"]} == {"unknown_key"}
    trusted = run("state", str(bundle), "--trusted-keys", str(keys))
    opted_in = run("state", str(bundle), "--trust-bundle-keys")
    assert json.loads(trusted.stdout)["valid_event_count"] == 2
    assert trusted.stdout == opted_in.stdout


def test_inspect_summarises(tmp_path: Path) -> None:
    result = run("inspect", str(BUNDLE))
    assert result.returncode == 0
    assert b"events: 2" in result.stdout and b"pith:2026:AG3PAJ22332P5QMVIKKH75CXNK" in result.stdout


@pytest.mark.parametrize(
    ("content", "args", "code"),
    [
        (None, ["state", "/nonexistent/bundle.json"], "io_error"),
        (b"not json", ["state"], "not_json"),
        (b'{"a":1,"a":2}', ["verify"], "duplicate_key"),
        (b"[NaN]", ["verify"], "non_finite_number"),
        (b'"\\ud800"', ["verify"], "lone_surrogate"),
        (b"\xff\xfe", ["verify"], "invalid_utf8"),
        (b"[" * 100 + b"]" * 100, ["verify"], "too_deep"),
        (b'{"hello": "world"}', ["verify"], "not_a_pith_document"),
        (b'{"hello": "world"}', ["state"], "not_a_pith_document"),
        (b'{"bundle_type": "pith_open_graph_bundle"}', ["state"], "bad_shape"),
        (None, ["frobnicate"], "usage"),
        (None, ["state"], "usage"),
    ],
)
def test_unusable_input_is_one_line_and_exit_2(tmp_path: Path, content: bytes | None, args: list[str], code: str) -> None:
    if content is not None:
        path = tmp_path / "input.json"
        path.write_bytes(content)
        args = [*args, str(path)]
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"pith-graph: error[{code}]: ")
    assert b"Traceback" not in result.stderr


def test_bad_trusted_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"key_id": "x", "public_key_hex": "00"}]))
    result = run("state", str(BUNDLE), "--trusted-keys", str(keys))
    assert result.returncode == 2
    assert result.stderr.decode().startswith("pith-graph: error[bad_key]: ")
