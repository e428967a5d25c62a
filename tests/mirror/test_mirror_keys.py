"""``pith-graph keygen``, a mirror that signs its bundles, and ``serve`` refusing bad input (exit 2, one line)."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pith_graph import codes

from .conftest import REGISTRY_CODE, make_store, reference_sha256, run_cli
from .peerlab import one_error_line, output_document


def test_keygen_writes_a_private_file_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "mirror.key"
    made = run_cli("keygen", "--out", str(path), "--key-id", "mirror-test", "--signer-id", "mirror.example")
    assert made.returncode == 0, made.stderr
    entry = json.loads(made.stdout)
    assert entry["key_id"] == "mirror-test" and entry["signer_id"] == "mirror.example"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["key_type"] == "pith_mirror_key"
    assert document["public_key_b64"] == entry["public_key_b64"]
    raw = base64.b64decode(entry["public_key_b64"])
    assert entry["fingerprint_sha256_hex"] == hashlib.sha256(raw).hexdigest()[:32]
    before = path.read_bytes()
    one_error_line(run_cli("keygen", "--out", str(path)), codes.E_IO)
    assert path.read_bytes() == before
    # --json: the same entry inside a pith-graph/1 document; a refusal is one too.
    other = tmp_path / "other.key"
    wrapped = run_cli("keygen", "--out", str(other), "--json")
    document = output_document(wrapped, "keygen")
    assert document["out"] == str(other)
    assert document["key"]["public_key_b64"] == json.loads(other.read_text())["public_key_b64"]
    refused = run_cli("keygen", "--out", str(path), "--json")
    one_error_line(refused, codes.E_IO)
    assert output_document(refused, "keygen")["error"]["code"] == codes.E_IO


def test_a_mirror_key_signs_the_bundle_and_is_published(tmp_path: Path) -> None:
    key_file = tmp_path / "mirror.key"
    assert run_cli("keygen", "--out", str(key_file)).returncode == 0
    public = base64.b64decode(json.loads(key_file.read_text())["public_key_b64"])
    store = make_store(tmp_path, ())
    served = store.serve(
        "--mirror-key", str(key_file), "--name", "Test Mirror", "--base-url", "https://mirror.example/",
        "--peer", "https://peer.example/",
    )  # fmt: skip
    try:
        with served.client() as client:
            response = client.get(f"/pith/{REGISTRY_CODE}/bundle.json")
            published = client.get("/pith-signing-key.json").json()
            manifest = client.get("/pith-mirrors.json").json()
    finally:
        served.stop()
    bundle = response.json()
    signature = bundle.pop("bundle_signature")
    digest = reference_sha256(bundle)
    assert signature["bundle_sha256"] == digest
    assert response.headers["etag"] == f'"{digest}"'
    assert signature["public_key_fingerprint"] == hashlib.sha256(public).hexdigest()[:32]
    Ed25519PublicKey.from_public_bytes(public).verify(
        base64.b64decode(signature["signature_b64"]), bytes.fromhex(digest)
    )
    try:  # and the signature covers the bytes: one changed member fails it
        bundle["built_at"] = "2000-01-01T00:00:00Z"
        Ed25519PublicKey.from_public_bytes(public).verify(
            base64.b64decode(signature["signature_b64"]), bytes.fromhex(reference_sha256(bundle))
        )
        raise AssertionError("a changed bundle still verified")
    except InvalidSignature:
        pass
    assert bundle["links"]["state"] == f"https://mirror.example/pith/{REGISTRY_CODE}/state.json"
    assert bundle["mirror_hints"][-1]["name"] == "Test Mirror"
    assert base64.b64decode(published["public_key_b64"]) == public
    assert published["key_id"] == signature["key_id"]
    entry, peer = manifest["mirrors"]
    assert entry["public_key"]["public_key_b64"] == published["public_key_b64"]
    assert entry["mirror_type"] == "https" and entry["base_url"] == "https://mirror.example"
    assert entry["status"] == "mirror" and peer["status"] == "peer"
    assert peer["state_pattern"] == "https://peer.example/pith/{suffix}/state.json"


def test_serve_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    store = make_store(tmp_path, ())
    one_error_line(run_cli("serve", "--db", str(tmp_path / "missing.sqlite"), "--port", "0"), codes.E_IO)
    not_a_store = tmp_path / "x.sqlite"
    not_a_store.write_bytes(b"not a database at all" * 100)
    result = run_cli("serve", "--db", str(not_a_store), "--port", "0")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    bad_keys = tmp_path / "keys.json"
    bad_keys.write_text('[{"key_id": "x"}]')
    one_error_line(
        run_cli("serve", "--db", str(store.db), "--port", "0", "--trusted-keys", str(bad_keys)),
        codes.E_BAD_KEY,
    )
    no_keys = tmp_path / "none.json"
    no_keys.write_text("[]")  # trusting nothing: every event unknown_key, never what is meant
    line = one_error_line(
        run_cli("serve", "--db", str(store.db), "--port", "0", "--trusted-keys", str(no_keys)),
        codes.E_BAD_KEY,
    )
    assert str(no_keys) in line
    bad_key_file = tmp_path / "bad.key"
    bad_key_file.write_text('{"key_type": "pith_mirror_key"}')
    one_error_line(
        run_cli("serve", "--db", str(store.db), "--port", "0", "--mirror-key", str(bad_key_file)),
        codes.E_BAD_KEY,
    )
    one_error_line(run_cli("serve", "--db", str(store.db), "--port", "70000"), codes.E_USAGE)
    one_error_line(run_cli("serve", "--db", str(store.db), "--workers", "0"), codes.E_USAGE)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        one_error_line(run_cli("serve", "--db", str(store.db), "--port", str(port)), codes.E_IO)
