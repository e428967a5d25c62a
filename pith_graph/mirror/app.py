"""The mirror's HTTP surface: a small Starlette app of routes (docs/mirror.md).

Every answer that is not a document is a JSON error ``{"error", "message"}``
with a stable code (:mod:`pith_graph.codes`) and the right status; a stack trace
never leaves the process. Documents carry strong ETags (``state_sha256``,
``bundle_sha256``, or the sha256 of the bytes) and answer ``If-None-Match`` with
``304``; GETs are public (``Access-Control-Allow-Origin: *``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from pith_graph import codes
from pith_graph.canonical import loads
from pith_graph.errors import InputError, PithGraphError, StoreError
from pith_graph.identifiers import short_pith_number
from pith_graph.mirror.feed import changes
from pith_graph.mirror.openapi import openapi_document
from pith_graph.mirror.service import Document, Mirror, MirrorConfig, Rejected
from pith_graph.models import MERGE_VERSION

__all__ = ["CONFIG_ENV", "app_from_environment", "create_app"]

#: The environment variable through which ``pith-graph serve`` hands its configuration
#: (JSON, :meth:`MirrorConfig.to_json`) to every worker process.
CONFIG_ENV: Final = "PITH_GRAPH_MIRROR_CONFIG"
#: A Pith Number's code: 26 characters of RFC 4648 base32.
_CODE_RE: Final = re.compile(r"[A-Z2-7]{26}")
JSON: Final = "application/json"
#: Documents change when events arrive: caches may keep them but must revalidate (cheap: ETag).
_DOCUMENT_CACHE: Final = "public, no-cache"
_PUBLIC: Final = {"Access-Control-Allow-Origin": "*"}
_LOG: Final = logging.getLogger("pith_graph.mirror")
#: The resolve query's alias kinds.
_RESOLVE_KINDS: Final = ("arxiv", "doi", "short")
_MAX_QUERY_VALUE: Final = 256


class HttpError(Exception):
    """An error answer: status, stable code, one-line message."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """The JSON error body every failure gets."""
    body = {"error": code, "message": message, **extra}
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})


def _matches(header: bytes | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, RFC 9110 §13.1.2)."""
    if header is None:
        return False
    for candidate in header.decode("latin-1").split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == f'"{etag}"':
            return True
    return False


class _Prepared(Response):
    """A response whose header block was built once, for a cached document (the hot path)."""

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]], status_code: int = 200) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        self.raw_headers = raw_headers


@functools.lru_cache(maxsize=4096)
def _document_headers(
    etag: str, length: int, media_type: str
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """The header blocks of a document: for 200 and for 304."""
    common = [
        (b"etag", f'"{etag}"'.encode()),
        (b"cache-control", _DOCUMENT_CACHE.encode()),
        (b"access-control-allow-origin", b"*"),
    ]
    full = [(b"content-length", str(length).encode()), (b"content-type", media_type.encode()), *common]
    return full, common


def _header(request: Request, name: bytes) -> bytes | None:
    """One request header, read from the ASGI scope (cheaper than building ``request.headers``)."""
    for key, value in request.scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def document_response(request: Request, document: Document, media_type: str = JSON) -> Response:
    """A cached document, or ``304`` when the client holds it already."""
    full, common = _document_headers(document.etag, len(document.body), media_type)
    if _matches(_header(request, b"if-none-match"), document.etag):
        return _Prepared(b"", common, 304)
    return _Prepared(document.body, full)


def _json(value: Any, *, status: int = 200, public: bool = True) -> Response:
    headers = {"Cache-Control": "no-cache", **(_PUBLIC if public else {})}
    return Response(msgspec.json.encode(value), status_code=status, media_type=JSON, headers=headers)


def _mirror(request: Request) -> Mirror:
    mirror: Mirror = request.app.state.mirror
    return mirror


async def _subject(request: Request, mirror: Mirror) -> str:
    """The held subject the path's ``{code}`` names; 404 for a malformed code or one not held."""
    code = request.path_params["code"]
    if not _CODE_RE.fullmatch(code):
        raise HttpError(
            404, codes.E_NOT_FOUND, "not a Pith Number code (26 characters of base32, A-Z and 2-7)"
        )
    subject = await mirror.subject(code)
    if subject is None:
        raise HttpError(
            404, codes.E_STORE_UNKNOWN_SUBJECT, f"this mirror holds no record with the code {code}"
        )
    return subject


# --- routes ---------------------------------------------------------------------


async def state_json(request: Request) -> Response:
    """``GET /pith/{code}/state.json``."""
    mirror = _mirror(request)
    state = await mirror.state(await _subject(request, mirror))
    return document_response(request, state.document)


async def bundle_json(request: Request) -> Response:
    """``GET /pith/{code}/bundle.json`` and ``/.well-known/pith/{code}/bundle.json``."""
    mirror = _mirror(request)
    return document_response(request, await mirror.bundle(await _subject(request, mirror)))


async def events_json(request: Request) -> Response:
    """``GET /api/pith-number/{code}/events.json``."""
    mirror = _mirror(request)
    return document_response(request, await mirror.events(await _subject(request, mirror)))


async def page(request: Request) -> Response:
    """``GET /pith/{code}``: the page for people."""
    mirror = _mirror(request)
    page = await mirror.page(await _subject(request, mirror))
    return document_response(request, page, "text/html; charset=utf-8")


async def resolve(request: Request) -> Response:
    """``GET /api/pith-number/resolve?arxiv=|doi=|short=[&json=true]``."""
    params = request.query_params
    named = [kind for kind in _RESOLVE_KINDS if kind in params]
    if len(named) != 1:
        raise HttpError(400, codes.E_BAD_QUERY, "name exactly one of arxiv=, doi=, short=")
    kind = named[0]
    value = params[kind].strip()
    if not value or len(value) > _MAX_QUERY_VALUE:
        raise HttpError(
            400, codes.E_BAD_QUERY, f"{kind}= needs a value of 1 to {_MAX_QUERY_VALUE} characters"
        )
    as_json = params.get("json", "false").lower()
    if as_json not in ("true", "false", "1", "0"):
        raise HttpError(400, codes.E_BAD_QUERY, "json= is true or false")
    mirror = _mirror(request)
    await mirror.sync()
    found = mirror.view.resolve(kind, value)
    if not found:
        raise HttpError(404, codes.E_NOT_FOUND, f"this mirror holds no record for {kind}={value}")
    if len(found) > 1:
        raise HttpError(
            409, codes.E_AMBIGUOUS, f"{kind}={value} names {len(found)} records: {', '.join(found[:10])}"
        )
    subject = found[0]
    code = subject.rsplit(":", 1)[1]
    links = mirror.links(code)
    if as_json in ("true", "1"):
        return _json(
            {
                "pith_number": subject,
                "short_pith_number": short_pith_number(subject),
                "query": {kind: value},
                "urls": {
                    "page": links["resolver"],
                    "bundle": links["bundle"],
                    "state": links["state"],
                    "well_known_bundle": links["well_known_bundle"],
                    "events": mirror.config.url(f"/api/pith-number/{code}/events.json"),
                },
            }
        )
    return RedirectResponse(
        links["resolver"], status_code=302, headers={"Cache-Control": "no-cache", **_PUBLIC}
    )


def _manifest_entry(base_url: str, *, name: str, status: str, public_key: Any = None) -> dict[str, Any]:
    """A mirror as an item of a manifest's ``mirrors`` (FORMAT-FACTS, "The mirror manifest")."""
    base = base_url.rstrip("/")
    return {
        "name": name or base,
        "mirror_type": "https" if base.startswith("https:") else "http",
        "base_url": base,
        "bundle_pattern": f"{base}/pith/{{suffix}}/bundle.json",
        "state_pattern": f"{base}/pith/{{suffix}}/state.json",
        "well_known_pattern": f"{base}/.well-known/pith/{{suffix}}/bundle.json",
        "public_key": public_key,
        "status": status,
    }


async def manifest(request: Request) -> Response:
    """``GET /pith-mirrors.json``: this mirror and the peers it knows, in the registry's manifest shape."""
    mirror = _mirror(request)
    base = mirror.config.base_url.rstrip("/")
    this = _manifest_entry(
        base,
        name=mirror.config.name,
        status="mirror",
        public_key=None
        if mirror.key is None
        else mirror.key.public_entry(url=f"{base}/pith-signing-key.json"),
    )
    # issue 17 item 4: the peers it was started with (--peer), then those it follows (the peer log).
    peers = [_manifest_entry(url, name=name, status="peer") for url, name in await mirror.peers()]
    return _json(
        {
            "manifest_type": "pith_mirror_manifest",
            "manifest_version": "1.0",
            "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "merge_version": MERGE_VERSION,
            "mirrors": [this, *peers],
            "notes": (
                "Any conforming mirror may host the same Pith Open Graph bundles. Current state is computed by "
                "deterministic merge, not by trusting this manifest."
            ),
        }
    )


async def signing_key(request: Request) -> Response:
    """``GET /pith-signing-key.json``: the public entry of the mirror's key."""
    mirror = _mirror(request)
    if mirror.key is None:
        raise HttpError(
            404, codes.E_NO_MIRROR_KEY, "this mirror signs nothing (it was started without --mirror-key)"
        )
    return _json(mirror.key.public_entry(url=mirror.config.url("/pith-signing-key.json")))


async def openapi(request: Request) -> Response:
    """``GET /openapi.json``."""
    return _json(openapi_document(_mirror(request).config.base_url))


async def index(request: Request) -> Response:
    """``GET /``: what this is and where to look."""
    mirror = _mirror(request)
    await mirror.sync()
    return _json(
        {
            "name": mirror.config.name,
            "merge_version": MERGE_VERSION,
            "subjects": len(mirror.view.by_code),
            "manifest": mirror.config.url("/pith-mirrors.json"),
            "openapi": mirror.config.url("/openapi.json"),
        }
    )


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` (never read to the end)."""
    declared = request.headers.get("content-length")
    too_large = HttpError(
        413, codes.E_TOO_LARGE, f"an event is at most {limit} bytes", headers={"Connection": "close"}
    )
    if declared is not None:
        if not declared.isdigit():
            raise HttpError(400, codes.E_BAD_QUERY, "Content-Length is not a number")
        if int(declared) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError as exc:
        raise HttpError(
            408,
            codes.E_REQUEST_TIMEOUT,
            f"the body did not arrive within {timeout:g} s",
            headers={"Connection": "close"},
        ) from exc
    return b"".join(chunks)


async def post_event(request: Request) -> Response:
    """``POST /pith/{code}/events``: one signed event (docs/mirror.md, "Receiving events")."""
    mirror = _mirror(request)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != JSON:
        raise HttpError(415, codes.E_UNSUPPORTED_MEDIA_TYPE, "send the event as application/json")
    subject = await _subject(request, mirror)
    body = await _read_body(request, mirror.config.max_body, mirror.config.body_timeout)
    try:
        tree = loads(body, max_bytes=mirror.config.max_body)
    except InputError as exc:
        raise HttpError(400, exc.code, exc.message) from exc
    if not isinstance(tree, dict):
        raise HttpError(400, codes.E_SHAPE, "an event is a JSON object")
    try:
        outcome = await mirror.post(subject, tree)
    except Rejected as exc:
        return error_response(
            422,
            exc.reason,
            f"the event fails merge-v1 stage 1 ({exc.reason}) under this mirror's trusted keys; nothing was stored",
            event_id=exc.event_id,
        )
    return Response(
        outcome.to_json(),
        status_code=201 if outcome.new else 200,
        media_type=JSON,
        headers={"Cache-Control": "no-store"},
    )


# --- errors -----------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(
            405, codes.E_METHOD_NOT_ALLOWED, f"{request.method} is not allowed here", dict(exc.headers or {})
        )
    if exc.status_code == 404:
        return error_response(404, codes.E_NOT_FOUND, "no such document on this mirror")
    return error_response(exc.status_code, codes.E_BAD_QUERY, str(exc.detail), dict(exc.headers or {}))


async def _pith_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PithGraphError)
    if isinstance(exc, StoreError):
        if exc.code == codes.E_STORE_UNKNOWN_SUBJECT:
            return error_response(404, exc.code, exc.message)
        if exc.code == codes.E_STORE_BUSY:
            return error_response(503, exc.code, "the store is busy; try again", {"Retry-After": "1"})
        _LOG.error("store error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(500, exc.code, "the mirror's store failed; the operator has been told")
    if isinstance(exc, InputError):
        return error_response(400, exc.code, exc.message)
    _LOG.error("error on %s %s: %s", request.method, request.url.path, exc)
    return error_response(500, exc.code, "the mirror failed to answer; the operator has been told")


async def _unexpected(request: Request, exc: Exception) -> Response:
    _LOG.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, codes.E_INTERNAL, "the mirror failed to answer; the operator has been told")


ROUTES: Final = [
    Route("/", index, methods=["GET"]),
    Route("/pith/{code}/state.json", state_json, methods=["GET"]),
    Route("/pith/{code}/bundle.json", bundle_json, methods=["GET"]),
    Route("/.well-known/pith/{code}/bundle.json", bundle_json, methods=["GET"]),
    Route("/pith/{code}/events", post_event, methods=["POST"]),
    Route("/pith/{code}", page, methods=["GET"]),
    Route("/api/pith-number/resolve", resolve, methods=["GET"]),
    Route("/api/pith-number/{code}/events.json", events_json, methods=["GET"]),
    Route("/pith-mirrors.json", manifest, methods=["GET"]),
    Route("/pith-signing-key.json", signing_key, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    # issue 17's change feed (pith_graph/mirror/feed.py), over this mirror's store and keys.
    Route("/api/mirror/changes", changes, methods=["GET"]),
]


def create_app(config: MirrorConfig) -> Starlette:
    """The ASGI app of a mirror over ``config.db`` (opens the store now: a bad file fails here)."""
    mirror = Mirror(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await mirror.start()
        try:
            yield
        finally:
            await mirror.stop()

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HttpError: _http_error,
        HTTPException: _starlette_error,
        PithGraphError: _pith_error,
        Exception: _unexpected,
    }
    app = Starlette(routes=ROUTES, exception_handlers=handlers, lifespan=lifespan)
    app.state.mirror = mirror
    return app


def app_from_environment() -> Starlette:
    """The app of a ``pith-graph serve`` worker process (configuration in :data:`CONFIG_ENV`)."""
    return create_app(MirrorConfig.from_json(os.environ[CONFIG_ENV]))
