"""``pith-graph serve`` and ``pith-graph keygen``: one function per subcommand, registered by the main CLI.

``serve`` checks everything it is given in the command's own process first (the
store, the trusted keys, the mirror key, the address), so bad input is one line
on stderr and exit 2 before any server starts; then uvicorn runs the app in
``--workers`` processes sharing one listening socket and one SQLite file.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Any, Final

import msgspec
import uvicorn

from pith_graph import codes
from pith_graph.cli._common import number_in, positive_int, write_stdout
from pith_graph.cli._output import command_of, emit, envelope
from pith_graph.cli.store import DEFAULT_DB
from pith_graph.errors import InputError
from pith_graph.mirror.app import CONFIG_ENV
from pith_graph.mirror.keyfile import generate_key_file
from pith_graph.mirror.service import DEFAULT_NAME, MirrorConfig, check_config
from pith_graph.store import is_postgres_url, redacted_url

__all__ = ["cmd_keygen", "cmd_serve", "register", "register_keygen", "register_serve"]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8080
#: uvicorn's limits against slow or greedy clients (docs/mirror.md, "Limits").
_KEEP_ALIVE_S: Final = 5
_MAX_CONNECTIONS: Final = 1024
_MAX_HEADER_BYTES: Final = 16 * 1024


_seconds: Final = number_in(float, 0.0, 3600.0, "seconds between 0 and 3600", above_low=True)
_port: Final = number_in(int, 0, 65535, "a port from 0 (any free port) to 65535")


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or a one-line error."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and without it every answer written in two parts waits for a delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", code=codes.E_IO) from exc
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve --db PATH ...``: serve the store as a mirror until interrupted."""
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    local = f"http://{_url_host(args.host)}:{port}"
    config = MirrorConfig(
        db=args.db if is_postgres_url(args.db) else os.path.abspath(args.db),
        base_url=(args.base_url or local).rstrip("/"),
        name=args.name,
        trusted_keys=os.path.abspath(args.trusted_keys) if args.trusted_keys else None,
        mirror_key=os.path.abspath(args.mirror_key) if args.mirror_key else None,
        peers=tuple(args.peer or ()),
        body_timeout=args.body_timeout,
    )
    try:
        check_config(config)
    except BaseException:
        sock.close()
        raise
    os.environ[CONFIG_ENV] = config.to_json()
    server_config = uvicorn.Config(
        "pith_graph.mirror.app:app_from_environment",
        factory=True,
        workers=args.workers,
        log_level=args.log_level,
        access_log=args.log_level == "info",
        timeout_keep_alive=_KEEP_ALIVE_S,
        limit_concurrency=_MAX_CONNECTIONS,
        h11_max_incomplete_event_size=_MAX_HEADER_BYTES,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    # One line a script (or a test) can read: where the mirror listens.
    print(
        f"pith-graph mirror: {local} serving {redacted_url(args.db)} as {config.base_url} ({args.workers} worker(s))",
        flush=True,
    )
    if args.workers == 1:
        server = uvicorn.Server(server_config)
        server.run(sockets=[sock])
        if not server.started:
            raise InputError("the mirror failed to start (see the lines above)", code=codes.E_IO)
    else:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(server_config, sockets=[sock]).run()
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """``keygen --out FILE``: make a mirror key file; print its public entry."""
    key = generate_key_file(Path(args.out), key_id=args.key_id, signer_id=args.signer_id)
    if args.json:
        emit(envelope(command_of(args), 0, ok=True, out=args.out, key=key.public_entry()))
    else:  # the entry itself, ready for a trusted-keys file (as `state` prints the state itself)
        write_stdout(msgspec.json.format(msgspec.json.encode(key.public_entry()), indent=2) + b"\n")
    print(f"wrote {args.out} (mode 0600); serve with --mirror-key {args.out}", file=sys.stderr)
    return 0


def register_serve(subparsers: Any) -> None:
    """Add ``serve`` to the main parser."""
    serve = subparsers.add_parser("serve", help="serve a store as a Pith mirror over HTTP")
    serve.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="DB",
        help=f"SQLite file or postgresql:// URL (default {DEFAULT_DB})",
    )
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}, loopback only)"
    )
    serve.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)"
    )
    serve.add_argument(
        "--trusted-keys", metavar="FILE", help="JSON array of trusted key entries (default: the registry key)"
    )
    serve.add_argument(
        "--base-url", metavar="URL", help="the URL clients reach this mirror at (default: http://HOST:PORT)"
    )
    serve.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help=f"the mirror's name in manifests and hints (default {DEFAULT_NAME!r})",
    )
    serve.add_argument(
        "--mirror-key",
        metavar="FILE",
        help="sign exported bundles with this key (make one with `pith-graph keygen`)",
    )
    serve.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="server processes sharing the store (default 1)",
    )
    serve.add_argument(
        "--peer",
        action="append",
        metavar="URL",
        help="a peer mirror's base URL to list in /pith-mirrors.json (repeatable)",
    )
    serve.add_argument(
        "--body-timeout",
        type=_seconds,
        default=MirrorConfig.body_timeout,
        metavar="S",
        help=f"seconds a client may take to send a POST body (default {MirrorConfig.body_timeout:g})",
    )
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level (info also logs each request)",
    )
    serve.set_defaults(func=cmd_serve)


def register_keygen(subparsers: Any) -> None:
    """Add ``keygen`` to the main parser."""
    keygen = subparsers.add_parser("keygen", help="make a mirror signing key file")
    keygen.add_argument("--out", required=True, metavar="FILE", help="key file to create (never overwritten)")
    keygen.add_argument(
        "--key-id", metavar="ID", help="key id (default: mirror- + the first 12 fingerprint characters)"
    )
    keygen.add_argument(
        "--signer-id",
        default="mirror.local",
        metavar="ID",
        help="who the key signs as (default mirror.local)",
    )
    keygen.add_argument(
        "--json",
        action="store_true",
        help="print one pith-graph/1 JSON document (docs/cli.md) holding the entry, instead of the entry",
    )
    keygen.set_defaults(func=cmd_keygen)


def register(subparsers: Any) -> None:
    """Add ``serve`` and ``keygen``."""
    register_serve(subparsers)
    register_keygen(subparsers)
