"""``GET /openapi.json``: the mirror's routes as an OpenAPI 3.1 document (docs/mirror.md in prose)."""

from __future__ import annotations

from typing import Any, Final

from pith_graph import codes

__all__ = ["openapi_document"]

_EXAMPLE_CODE: Final = "AG3PAJ22332P5QMVIKKH75CXNK"
_CODE: Final = {
    "name": "code",
    "in": "path",
    "required": True,
    "description": "The 26-character base32 part of a Pith Number (pith:YEAR:CODE).",
    "schema": {"type": "string", "pattern": "^[A-Z2-7]{26}$"},
    "example": _EXAMPLE_CODE,
}
_ERROR: Final = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {
            "type": "string",
            "description": "A stable code (pith_graph/codes.py) or a merge-v1 reason code.",
        },
        "message": {"type": "string"},
        "event_id": {"type": "string"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


_NOT_MODIFIED: Final = {"description": "Not modified (If-None-Match named the current ETag)"}
_ETAG: Final = {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}


def _document(summary: str, schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [_CODE, _ETAG],
            "responses": {
                "200": {"description": summary, "content": {media: {"schema": schema}}},
                "304": _NOT_MODIFIED,
                "404": _error("Not a 26-character code, or a record this mirror does not hold"),
            },
        }
    }


def openapi_document(base_url: str) -> dict[str, Any]:
    """The OpenAPI document of a mirror served at ``base_url``."""
    state = {
        "type": "object",
        "required": ["state_type", "pith_number", "state_sha256"],
        "properties": {
            "state_type": {"const": "pith_open_graph_state"},
            "pith_number": {"type": "string"},
            "event_count": {"type": "integer"},
            "valid_event_count": {"type": "integer"},
            "invalid_event_count": {"type": "integer"},
            "equivocation_count": {"type": "integer"},
            "state_sha256": {"type": "string"},
        },
    }
    posted = {
        "type": "object",
        "required": ["event_id", "status", "applied", "state_sha256", "stored"],
        "properties": {
            "event_id": {"type": "string"},
            "status": {
                "enum": [
                    codes.MIRROR_APPLIED,
                    codes.MIRROR_PENDING,
                    codes.MIRROR_FORKED,
                    codes.MIRROR_NOT_APPLIED,
                    codes.MIRROR_INVALID,
                ]
            },
            "applied": {"type": "boolean"},
            "state_sha256": {"type": "string"},
            "stored": {"enum": ["new", "already_held"]},
            "reason": {"type": ["string", "null"]},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pith-graph mirror",
            "version": "1.0",
            "description": "A Pith Open Graph mirror: the registry's URLs, served from a local event store; "
            "every state is recomputed under the mirror's trusted keys (merge-v1).",
        },
        "servers": [{"url": base_url.rstrip("/")}],
        "paths": {
            "/pith/{code}/state.json": _document(
                "The merged state (byte-identical to `pith-graph state`)", state
            ),
            "/pith/{code}/bundle.json": _document(
                "The bundle, state embedded, naming this mirror", {"type": "object"}
            ),
            "/.well-known/pith/{code}/bundle.json": _document("The same bundle", {"type": "object"}),
            "/pith/{code}": _document("The record's page for people", {"type": "string"}, "text/html"),
            "/api/pith-number/{code}/events.json": _document(
                "Every stored copy of the record's events with its verdict", {"type": "object"}
            ),
            "/pith/{code}/events": {
                "post": {
                    "summary": "Send one signed event",
                    "parameters": [_CODE],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "responses": {
                        "201": _json("Stored (new); durable before this answer", posted),
                        "200": _json("Already held", posted),
                        "400": _error("Not JSON, duplicate keys, or not an object"),
                        "404": _error("Not a code, or a record this mirror does not hold"),
                        "408": _error("The body did not arrive in time"),
                        "413": _error("Body over the limit (refused while reading)"),
                        "415": _error("Not application/json"),
                        "422": _error(
                            "Fails merge-v1 stage 1 under the mirror's keys (error = the reason code); nothing stored"
                        ),
                    },
                }
            },
            "/api/pith-number/resolve": {
                "get": {
                    "summary": "Find a record by arXiv id, DOI or short Pith Number",
                    "parameters": [
                        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                        for name in ("arxiv", "doi", "short")
                    ]
                    + [
                        {
                            "name": "json",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": ["true", "false"]},
                        }
                    ],
                    "responses": {
                        "200": _json("With json=true: the Pith Number and its URLs"),
                        "302": {"description": "Without json=true: a redirect to the record's page"},
                        "400": _error("Not exactly one of arxiv=, doi=, short="),
                        "404": _error("No held record matches"),
                        "409": _error("A short form matching several records"),
                    },
                }
            },
            "/pith-mirrors.json": {
                "get": {
                    "summary": "This mirror and its peers (pith_mirror_manifest)",
                    "responses": {"200": _json("The manifest")},
                }
            },
            "/pith-signing-key.json": {
                "get": {
                    "summary": "The mirror key's public entry",
                    "responses": {"200": _json("The key entry"), "404": _error("The mirror has no key")},
                }
            },
            "/api/mirror/changes": {
                "get": {
                    "summary": "The change feed: subjects changed since a cursor (docs/mirror-sync.md)",
                    "parameters": [
                        {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {"200": _json("A page of changes"), "400": _error("A bad cursor or limit")},
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _json("OpenAPI 3.1")}}
            },
        },
        "components": {"schemas": {"Error": _ERROR}},
    }
