"""Real mirrors for the tests: ``pith-graph serve`` started as a subprocess on a free loopback port.

Every wait is bounded (startup, requests, shutdown). Stores are real SQLite
files; signed events come from :mod:`pith_graph.testing` (real Ed25519 keys).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pith_graph.keys import KeyRing
from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey

FIXTURES = Path(__file__).parent.parent / "fixtures"
REGISTRY_BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"
REGISTRY_CODE = "AG3PAJ22332P5QMVIKKH75CXNK"
#: Seconds a server may take to start, and a request to be answered.
STARTUP_S = 30.0
REQUEST_S = 20.0

#: Signs the test subjects' record_created events and receipts (trusted by the test mirrors).
TEST_REGISTRY = TestKey("mirror-registry", key_id="test-mirror-registry", signer_id="registry.example")
#: A second trusted key (an author) and one nobody trusts.
AUTHOR = TestKey("mirror-author", key_id="test-mirror-author", signer_id="author.example")
STRANGER = TestKey("mirror-stranger", key_id="test-mirror-stranger", signer_id="stranger.example")


@dataclass
class Served:
    """A running ``pith-graph serve`` process."""

    process: subprocess.Popen[bytes]
    url: str
    db: Path

    def client(self, **options: Any) -> httpx.Client:
        """An httpx client for this mirror, with explicit timeouts."""
        return httpx.Client(base_url=self.url, timeout=httpx.Timeout(REQUEST_S), **options)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM: graceful; SIGKILL: as in a crash) and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def start_server(db: Path, *options: str) -> Served:
    """Start ``pith-graph serve --db DB --port 0 OPTIONS`` and wait until it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pith_graph", "serve", "--db", str(db), "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_S)
    line = process.stdout.readline().decode() if ready else ""
    if not line.startswith("pith-graph mirror: http://"):
        process.kill()
        _, err = process.communicate(timeout=15)
        raise AssertionError(f"serve did not start: {line!r} {err.decode()[-2000:]}")
    served = Served(process, line.split()[2], db)
    deadline = time.monotonic() + STARTUP_S
    with served.client() as client:
        while True:
            try:
                if client.get("/").status_code == 200:
                    return served
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                served.stop(signal.SIGKILL)
                raise AssertionError("serve did not answer in time")
            time.sleep(0.1)


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
