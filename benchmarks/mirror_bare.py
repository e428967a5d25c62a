"""The yardstick of the hot ``GET state.json`` benchmark: a bare Starlette route serving fixed bytes from memory.

Run by uvicorn exactly as ``pith-graph serve`` runs the mirror (same server, same
settings), so the ratio between the two is what the mirror's own work costs:
store lookups, cache checks, headers. The bytes come from the file named by
``PITH_GRAPH_BARE_BODY``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["BODY_ENV", "app"]

BODY_ENV: Final = "PITH_GRAPH_BARE_BODY"
_BODY: Final = Path(os.environ[BODY_ENV]).read_bytes() if BODY_ENV in os.environ else b"{}"


async def state(request: Request) -> Response:
    """The same bytes every time."""
    return Response(_BODY, media_type="application/json")


app = Starlette(routes=[Route("/pith/{code}/state.json", state, methods=["GET"])])
