"""Real HTTP peers on 127.0.0.1 for the mirror tests (no mocks).

* :class:`FaultPeer`: the standard library's threading HTTP server, serving
  per-path behaviours: a document (with ETag and gzip on request), a status with
  ``Retry-After``, a hang, a body cut short, garbage, an oversized body.
* :class:`FeedPeer`: uvicorn serving a small Starlette app over a real store
  file: the change feed (:func:`pith_graph.mirror.feed.changes`, mounted as the
  server will mount it) and ``/pith/{code}/bundle.json`` exported from the store
  with a strong ETag, optionally slowed down.

Every wait is bounded: hangs end when the peer stops, at the latest after
:data:`HANG_LIMIT` seconds.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pith_graph.mirror.feed import changes
from pith_graph.store import EventStore

HANG_LIMIT = 20.0
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
#: The registry's published bundle (byte for byte), as the peers serve it, and its subject.
BUNDLE = (FIXTURES / "bundle-AG3PAJ22.json").read_bytes()
CODE = "AG3PAJ22332P5QMVIKKH75CXNK"
SUBJECT = f"pith:2026:{CODE}"


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- behaviours of FaultPeer ------------------------------------------------------


@dataclass
class Serve:
    """200 with ``body`` (a strong ETag from its sha256; 304 on a match), gzip-encoded if asked."""

    body: bytes
    gzip: bool = False
    content_type: str = "application/json"
    etag: bool = True

    def __post_init__(self) -> None:
        # Compressed once, here: compressing a large body per request would stall the answer.
        self.wire = gzip.compress(self.body) if self.gzip else self.body
        self.tag = '"' + hashlib.sha256(self.body).hexdigest() + '"'


@dataclass
class Status:
    """``status`` with an optional ``Retry-After``, for the first ``times`` requests; then ``then``."""

    status: int
    retry_after: str | None = None
    times: int = 1_000_000
    then: Any = None


@dataclass
class Hang:
    """Accept the request and never answer (until the peer stops)."""


@dataclass
class Cut:
    """Announce ``length`` bytes, send the first ``sent`` of ``body``, close the connection."""

    body: bytes
    sent: int


@dataclass
class Stream:
    """200 without Content-Length: ``total`` bytes in chunks (an oversized body that says nothing up front)."""

    total: int
    chunk: int = 64 << 10


@dataclass
class Announce:
    """200 announcing ``length`` bytes in Content-Length, then sending nothing more than ``sent``."""

    length: int
    sent: bytes = b"{"


@dataclass
class FaultPeer:
    """A real HTTP server on 127.0.0.1; ``routes`` maps a path (without query) to a behaviour."""

    routes: dict[str, Any] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    statuses: list[tuple[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                peer.hits[path] = peer.hits.get(path, 0) + 1
                behaviour = peer.routes.get(path)
                peer._answer(self, path, behaviour)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _send(
        self, handler: BaseHTTPRequestHandler, path: str, status: int, body: bytes, headers: Mapping[str, str]
    ) -> None:
        self.statuses.append((path, status))
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _answer(self, handler: BaseHTTPRequestHandler, path: str, behaviour: Any) -> None:
        if behaviour is None:
            self._send(handler, path, 404, b'{"error":"not_found"}', {"Content-Type": "application/json"})
        elif isinstance(behaviour, Serve):
            tag = behaviour.tag
            if behaviour.etag and handler.headers.get("If-None-Match") == tag:
                self._send(handler, path, 304, b"", {"ETag": tag})
                return
            body = behaviour.wire
            headers = {"Content-Type": behaviour.content_type}
            if behaviour.etag:
                headers["ETag"] = tag
            if behaviour.gzip:
                headers["Content-Encoding"] = "gzip"
            self._send(handler, path, 200, body, headers)
        elif isinstance(behaviour, Status):
            if behaviour.times > 0:
                behaviour.times -= 1
                headers = {"Content-Type": "application/json"}
                if behaviour.retry_after is not None:
                    headers["Retry-After"] = behaviour.retry_after
                self._send(handler, path, behaviour.status, b'{"error":"unavailable"}', headers)
            else:
                self._answer(handler, path, behaviour.then)
        elif isinstance(behaviour, Hang):
            self._stop.wait(HANG_LIMIT)
        elif isinstance(behaviour, Cut):
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(behaviour.body)))
            handler.end_headers()
            handler.wfile.write(behaviour.body[: behaviour.sent])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
        elif isinstance(behaviour, Stream):
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.close_connection = True
            sent = 0
            try:
                while sent < behaviour.total and not self._stop.is_set():
                    handler.wfile.write(b" " * behaviour.chunk)
                    sent += behaviour.chunk
            except OSError:
                pass  # the client hung up: what a size cap does
        elif isinstance(behaviour, Announce):
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(behaviour.length))
            handler.end_headers()
            handler.wfile.write(behaviour.sent)
            handler.close_connection = True
        else:
            raise AssertionError(f"unknown behaviour {behaviour!r}")

    def __enter__(self) -> FaultPeer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def bundle_path(code: str) -> str:
    return f"/pith/{code}/bundle.json"


def well_known_path(code: str) -> str:
    return f"/.well-known/pith/{code}/bundle.json"


# --- FeedPeer: the feed endpoint and bundles over a real store, under uvicorn --------


def feed_app(db: Path | str, *, bundle_delay: float = 0.0, trusted_keys: Any = None) -> Starlette:
    """The feed (as the server mounts it) and bundles exported from the store at ``db``."""
    stores = threading.local()

    def store() -> EventStore:
        if not hasattr(stores, "store"):
            stores.store = EventStore(db, create=False)
        opened: EventStore = stores.store
        return opened

    def export(code: str) -> bytes | None:
        matching = [s for s in store().subjects() if s.endswith(":" + code)]
        if not matching:
            return None
        bundle = store().export_bundle(
            matching[0], trusted_keys=trusted_keys, built_at="2026-06-01T00:00:00Z"
        )
        return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode()

    async def bundle(request: Request) -> Response:
        if bundle_delay:
            await asyncio.sleep(bundle_delay)
        body = await run_in_threadpool(export, request.path_params["code"])
        if body is None:
            return JSONResponse({"error": "not_found", "message": "no such subject"}, status_code=404)
        tag = '"' + hashlib.sha256(body).hexdigest() + '"'
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers={"ETag": tag})
        return Response(body, media_type="application/json", headers={"ETag": tag})

    app = Starlette(
        routes=[
            Route("/api/mirror/changes", changes, methods=["GET"]),
            Route("/pith/{code}/bundle.json", bundle, methods=["GET"]),
        ]
    )
    app.state.pith_db = str(db)
    app.state.pith_trusted_keys = trusted_keys
    return app


class FeedPeer:
    """uvicorn in a thread on 127.0.0.1 serving :func:`feed_app` (``port``: a fixed one, e.g. reserved first)."""

    def __init__(self, db: Path | str, *, port: int | None = None, **options: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            feed_app(db, **options), host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FeedPeer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


# --- the CLI as a subprocess ---------------------------------------------------------


#: ``pith-graph`` as a command line, for a process of its own.
PITH_GRAPH = (sys.executable, "-m", "pith_graph")


def sync_args(url: str, db: Path | str, keys: Path, *extra: str) -> list[str]:
    """``mirror sync URL --db DB --trusted-keys KEYS EXTRA``: the arguments after ``pith-graph``."""
    return ["mirror", "sync", url, "--db", str(db), "--trusted-keys", str(keys), *extra]


def run_cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``pith-graph ARGV`` in a subprocess (stdout, stderr as text)."""
    return subprocess.run(
        [*PITH_GRAPH, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: str) -> str:
    """The single stderr line of a failed command, checked: exit 2, no traceback, the stable code."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"pith-graph: error[{code}]: "), lines[0]
    return lines[0]


def output_document(result: subprocess.CompletedProcess[str], command: str) -> dict[str, Any]:
    """The one ``--json`` document a command printed, its pith-graph/1 envelope checked against the
    process: ``format``, ``command``, ``exit_code`` (the real exit code) and ``ok``."""
    document: dict[str, Any] = json.loads(result.stdout)
    assert (document["format"], document["command"]) == ("pith-graph/1", command), result.stdout[:300]
    assert (document["exit_code"], document["ok"]) == (result.returncode, result.returncode == 0)
    return document


def snapshot(db: Path) -> dict[str, Any]:
    """Everything a store holds, as comparable values (absent file: empty)."""
    if not db.exists():
        return {}
    with EventStore(db, create=False) as store:
        return {
            subject: (
                sorted((row.unit_id, row.digest, row.body) for row in store.backend.event_rows(subject)),
                store.backend.items(subject),
            )
            for subject in store.subjects()
        }


@contextmanager
def bounded(seconds: float) -> Iterator[Callable[[], bool]]:
    """A deadline for a polling loop: ``while alive(): ...``."""
    deadline = time.monotonic() + seconds
    yield lambda: time.monotonic() < deadline
