"""Real mirrors for the tests: ``pith-graph serve`` started as a subprocess on a free loopback port.

Every wait is bounded (startup, requests, shutdown). Stores are real SQLite
files; signed events come from :mod:`pith_graph.testing` (real Ed25519 keys).
"""

from __future__ import annotations

import hashlib
import json
import select
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from pith_graph.keys import KeyRing
from pith_graph.mirror._process import ServeProcess, start_serve
from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey

FIXTURES = Path(__file__).parent.parent / "fixtures"
REGISTRY_BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"
REGISTRY_CODE = "AG3PAJ22332P5QMVIKKH75CXNK"
#: Seconds a server may take to start, and a request to be answered.
JSON_HEADERS = {"content-type": "application/json"}
STARTUP_S = 30.0
REQUEST_S = 20.0

#: Signs the test subjects' record_created events and receipts (trusted by the test mirrors).
TEST_REGISTRY = TestKey("mirror-registry", key_id="test-mirror-registry", signer_id="pith.science")
#: A second trusted key (an author) and one nobody trusts.
AUTHOR = TestKey("mirror-author", key_id="test-mirror-author", signer_id="author.example")
STRANGER = TestKey("mirror-stranger", key_id="test-mirror-stranger", signer_id="stranger.example")


class Served(ServeProcess):
    """A running ``pith-graph serve`` process, with an httpx client."""

    def client(self, **options: Any) -> httpx.Client:
        """An httpx client for this mirror, with explicit timeouts."""
        return httpx.Client(base_url=self.url, timeout=httpx.Timeout(REQUEST_S), **options)


def start_server(db: Path | str, *options: str) -> Served:
    """Start ``pith-graph serve --db DB --port 0 OPTIONS`` and wait until it answers."""
    served = start_serve(db, *options, startup_s=STARTUP_S)
    return Served(served.process, served.url, served.db)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``pith-graph ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "pith_graph", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def trusted_entries() -> list[dict[str, Any]]:
    """The test mirrors' trusted keys: the real registry key (bound to pith.science) and the test keys."""
    return [
        *KeyRing.registry().to_entries(),
        TEST_REGISTRY.entry(signer_id=TEST_REGISTRY.signer_id),
        AUTHOR.entry(signer_id=AUTHOR.signer_id),
    ]


#: Payload text a page must show as text, never run.
HOSTILE_TITLE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)> & "quotes"'


def title_of(arxiv_id: str) -> str:
    """The title of a test subject's snapshot: the second subject's is hostile markup."""
    return HOSTILE_TITLE if arxiv_id.endswith("2") else f"Test paper {arxiv_id}"


def new_history(arxiv_id: str) -> History:
    """A test subject with a valid record_created by :data:`TEST_REGISTRY`."""
    return History.new(TEST_REGISTRY, arxiv_id=arxiv_id)


@dataclass
class MirrorStore:
    """A store file with the registry's bundle and test subjects, and the trusted-keys file for it."""

    db: Path
    keys: Path
    histories: dict[str, History]

    def serve(self, *options: str) -> Served:
        return start_server(self.db, "--trusted-keys", str(self.keys), *options)


def make_store(directory: Path, arxiv_ids: Sequence[str] = ("2601.00001", "2601.00002")) -> MirrorStore:
    """A fresh store holding the registry bundle and one test subject per arXiv id (record and a snapshot)."""
    db = directory / "mirror.sqlite"
    keys = directory / "trusted.json"
    keys.write_text(json.dumps(trusted_entries()))
    histories: dict[str, History] = {}
    with EventStore(db) as store:
        store.import_bundle(REGISTRY_BUNDLE)
        for arxiv_id in arxiv_ids:
            history = new_history(arxiv_id)
            snapshot = history.event(
                "graph_snapshot",
                payload={
                    "graph_snapshot": {
                        "paper": {"title": title_of(arxiv_id), "authors_text": "A. Author & B. <b>"}
                    }
                },
            )
            store.import_bundle(history.bundle([snapshot], public_keys=[TEST_REGISTRY]))
            histories[arxiv_id] = history
    return MirrorStore(db, keys, histories)


# --- requests and checks shared by the test modules ---------------------------------


def compact(value: Any) -> bytes:
    """How the registry serialises a document (FORMAT-FACTS), with the standard library."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def reference_sha256(value: Any) -> str:
    return hashlib.sha256(
        json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def code_of(number: str) -> str:
    return number.rsplit(":", 1)[1]


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in response.text
    return body


def post(client: httpx.Client, history: History, event: Any, **headers: str) -> httpx.Response:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    return client.post(
        f"/pith/{code_of(history.subject)}/events", content=body, headers={**JSON_HEADERS, **headers}
    )


def stored_units(db: Path, subject: str) -> list[str]:
    """Every stored copy's unit id, read with sqlite3 directly (not through the store)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return sorted(
            row[0] for row in conn.execute("SELECT unit_id FROM events WHERE subject = ?", (subject,))
        )


def attestation(history: History, target: str, **fields: Any) -> dict[str, Any]:
    return history.event("author_attestation", key=AUTHOR, target=target, payload={"claim": target}, **fields)


def raw_request(url: str, head: bytes) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(head)
    return sock


def read_status(sock: socket.socket, timeout: float = 10) -> int:
    ready, _, _ = select.select([sock], [], [], timeout)
    assert ready, "no answer"
    data = sock.recv(65536)
    return int(data.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def mirror_store(tmp_path_factory: pytest.TempPathFactory) -> MirrorStore:
    return make_store(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="module")
def mirror(mirror_store: MirrorStore) -> Iterator[Served]:
    """One server over :func:`mirror_store`, shared by a test module."""
    served = mirror_store.serve()
    try:
        yield served
    finally:
        served.stop()
