"""The event store on PostgreSQL against SQLite (issue 20): import and replay throughput, as ratios of one run.

For one bundle of ``n`` events (the harness's, :mod:`benchmarks.generate`), each
backend gets a fresh store and runs, alternating backend by backend so that the
machine's noise weighs on both alike:

* ``import``: :meth:`EventStore.import_bundle` of the whole bundle (one transaction);
* ``state first``: the first :meth:`EventStore.state` (facts and key verdicts kept by the import);
* ``state warm``: the same again (best of ``repeat``);
* ``small imports``: ``small`` two-event bundles (record_created + one event, about
  the registry's shape), imported one at a time: one durable commit each.

Each figure is events (or bundles) per second; the ratio is PostgreSQL's over
SQLite's (above 1: PostgreSQL is faster). The server comes from
``PITH_GRAPH_BENCH_POSTGRES``, else the tests' ``PITH_GRAPH_TEST_POSTGRES``, else
``postgresql://postgres@127.0.0.1:5432/postgres``;
a fresh database is created for the run and dropped after it. Without a server
the rows say why they are missing.

``python -m benchmarks.backends [--sizes 1000,10000] [--small 200]`` (``make bench-store``)
runs only these rows and writes ``benchmarks/results-store.json``; ``make bench``
runs them for its sizes up to :data:`MAX_EVENTS` inside ``results.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final

from benchmarks.generate import DATA_DIR, ensure_bundle, trusted_entries
from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey

__all__ = ["MAX_EVENTS", "compare", "postgres_database", "table_lines"]

SERVER_ENV: Final = "PITH_GRAPH_BENCH_POSTGRES"
TEST_SERVER_ENV: Final = "PITH_GRAPH_TEST_POSTGRES"
DEFAULT_SERVER: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS: Final = Path(__file__).resolve().parent / "results-store.json"
#: Largest bundle ``make bench`` compares the backends on (the import of 100k events takes minutes on each).
MAX_EVENTS: Final = 10_000
#: Events POSTed to the mirror servers.
DEFAULT_POSTS: Final = 400
#: Small bundles imported one at a time.
DEFAULT_SMALL: Final = 200
_BACKENDS: Final = ("sqlite", "postgresql")


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh database on the benchmark server for this run (dropped afterwards), or None without a server."""
    server = os.environ.get(SERVER_ENV) or os.environ.get(TEST_SERVER_ENV) or DEFAULT_SERVER
    try:
        import psycopg

        admin = psycopg.connect(server, autocommit=True, connect_timeout=5)
    except Exception as exc:  # no driver or no server: the rows say so
        print(f"no PostgreSQL for the store benchmark at {server}: {exc}", file=sys.stderr)
        yield None
        return
    name = f"pith_graph_bench_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        parts = urllib.parse.urlsplit(server)
        try:
            yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def _fresh(backend: str, database: str, tmp: Path, label: str) -> str:
    """The ``--db`` of an empty store: a new SQLite file, or a new schema in the run's database."""
    if backend == "sqlite":
        return str(tmp / f"{label}.sqlite")
    import psycopg

    schema = f"bench_{label}_{secrets.token_hex(4)}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    query = urllib.parse.urlencode({"options": f"-csearch_path={schema}"})
    return f"{database}?{query}"


def _seconds(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _import_each(store: EventStore, bundles: list[dict[str, Any]], keys: list[dict[str, Any]]) -> None:
    for bundle in bundles:
        store.import_bundle(bundle, trusted_keys=keys)


def small_bundles(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``count`` two-event bundles of distinct subjects, and the keys that sign them (deterministic)."""
    registry = TestKey("bench-small-registry", key_id="bench-small-registry", signer_id="pith.science")
    bundles = []
    for i in range(count):
        history = History.new(registry, arxiv_id=f"2601.{10000 + i:05d}")
        bundles.append(history.bundle([history.event("graph_snapshot", payload={"nodes": list(range(40))})]))
    return bundles, [registry.entry()]


def compare(path: Path, subject: str, database: str | None, *, repeat: int, small: int) -> dict[str, Any]:
    """Every figure for the bundle at ``path`` and ``small`` small bundles, on both backends."""
    if database is None:
        return {"skipped": f"no PostgreSQL server ({SERVER_ENV})"}
    keys = trusted_entries()
    n = 0
    out: dict[str, Any] = {"repeat": repeat, "small_bundles": small}
    figures: dict[str, dict[str, float]] = {b: {} for b in _BACKENDS}
    states: dict[str, bytes] = {}
    bundles, small_keys = small_bundles(small)
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(repeat):
            for backend in _BACKENDS:
                with EventStore(_fresh(backend, database, Path(tmp), f"{backend}_{round_}_big")) as big:
                    t_import, result = _seconds(partial(big.import_bundle, path, trusted_keys=keys))
                    n = len(result.appends)
                    t_first, _ = _seconds(partial(big.state, subject, trusted_keys=keys))
                    t_warm, state = _seconds(partial(big.state, subject, trusted_keys=keys))
                    states[backend] = state.to_json()
                with EventStore(_fresh(backend, database, Path(tmp), f"{backend}_{round_}_small")) as many:
                    t_small, _ = _seconds(partial(_import_each, many, bundles, small_keys))
                for key, value in (
                    ("import_s", t_import),
                    ("state_first_s", t_first),
                    ("state_warm_s", t_warm),
                    ("small_s", t_small),
                ):
                    figures[backend][key] = min(figures[backend].get(key, value), value)
    if states["sqlite"] != states["postgresql"]:
        raise AssertionError("the backends disagree on the state")
    out["events"] = n
    for backend, f in figures.items():
        out[backend] = {
            **f,
            "import_events_per_s": n / f["import_s"],
            "state_first_events_per_s": n / f["state_first_s"],
            "state_warm_events_per_s": n / f["state_warm_s"],
            "small_bundles_per_s": small / f["small_s"] if small else 0.0,
        }
    lite, pg = out["sqlite"], out["postgresql"]
    out["ratios"] = {
        name: pg[name] / lite[name] if lite[name] else 0.0
        for name in (
            "import_events_per_s",
            "state_first_events_per_s",
            "state_warm_events_per_s",
            "small_bundles_per_s",
        )
    }
    return out


def table_lines(figures: dict[str, Any]) -> list[str]:
    """Rows for the benchmark table."""
    if "skipped" in figures:
        return [f"  store backends: skipped ({figures['skipped']})"]
    lite, pg, r = figures["sqlite"], figures["postgresql"], figures["ratios"]
    rows = [
        ("import (one bundle)", "import_events_per_s", "ev/s"),
        ("state, first", "state_first_events_per_s", "ev/s"),
        ("state, warm", "state_warm_events_per_s", "ev/s"),
        (f"import {figures['small_bundles']} small bundles", "small_bundles_per_s", "bundles/s"),
    ]
    return [
        f"  store {name:28} SQLite {lite[key]:9.0f} {unit:9}  PostgreSQL {pg[key]:9.0f} {unit:9}  PostgreSQL/SQLite {r[key]:.2f}"
        for name, key, unit in rows
    ]


def post_lines(figures: dict[str, Any]) -> list[str]:
    """The POST row for the benchmark table."""
    if "skipped" in figures:
        return [f"  POST, two servers on PostgreSQL: skipped ({figures['skipped']})"]
    lite, pg = figures["sqlite_one_server"], figures["postgresql_two_servers"]
    return [
        f"  POST {figures['events']} events, {figures['clients']} clients: one server on SQLite"
        f" {lite['events_per_s']:7.0f} ev/s, two servers on PostgreSQL {pg['events_per_s']:7.0f} ev/s;"
        f" ratio {figures['ratio']:.2f}"
    ]


def main(argv: list[str] | None = None) -> int:
    """Run only the store-backend rows (``make bench-store``)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.backends", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--sizes", default="1000,10000", help="comma-separated event counts (default 1000,10000)"
    )
    parser.add_argument(
        "--small", type=int, default=DEFAULT_SMALL, help="small bundles imported one at a time"
    )
    parser.add_argument("--repeat", type=int, default=2, help="rounds per backend (the best is kept)")
    parser.add_argument(
        "--posts", type=int, default=DEFAULT_POSTS, help="events POSTed to the servers (0: no POST row)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where generated bundles are cached")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"by_size": {}}
    with postgres_database() as database:
        for n in (int(s) for s in args.sizes.split(",")):
            print(f"measuring the store backends on {n} events ...", file=sys.stderr, flush=True)
            path = ensure_bundle(n, data_dir=args.data_dir)
            subject = json.loads(path.read_bytes())["pith_number"]
            figures = compare(path, subject, database, repeat=args.repeat, small=args.small)
            results["by_size"][str(n)] = figures
            print(f"== {n} events ==")
            print("\n".join(table_lines(figures)))
        if args.posts:
            print(
                "measuring POSTs to two servers on PostgreSQL, one on SQLite ...", file=sys.stderr, flush=True
            )
            results["posts"] = posts = two_server_posts(database, count=args.posts)
            print("\n".join(post_lines(posts)))
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


# --- several servers, one database (issue 20, item 4) -----------------------------------------

#: The key that signs the POST workload's subject and events (trusted by the servers).
_POST_REGISTRY: Final = TestKey("bench-post-registry", key_id="bench-post-registry", signer_id="pith.science")
_POST_AUTHOR: Final = TestKey("bench-post-author", key_id="bench-post-author", signer_id="author.example")


def _post_all(
    urls: list[str], subject: str, events: list[dict[str, Any]], clients: int
) -> tuple[float, list[int]]:
    """POST every event, ``clients`` at a time, client ``i`` to server ``i % len(urls)``; seconds and statuses."""
    import httpx

    code = subject.rsplit(":", 1)[1]
    statuses: list[int] = [0] * len(events)

    def send(client_index: int) -> None:
        url = urls[client_index % len(urls)]
        with httpx.Client(base_url=url, timeout=httpx.Timeout(60.0)) as client:
            for i in range(client_index, len(events), clients):
                answer = client.post(
                    f"/pith/{code}/events",
                    content=json.dumps(events[i]).encode(),
                    headers={"content-type": "application/json"},
                )
                statuses[i] = answer.status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return time.perf_counter() - start, statuses


def two_server_posts(database: str | None, *, count: int, clients: int = 8) -> dict[str, Any]:
    """POST throughput of two ``serve`` processes on one PostgreSQL store against one on an SQLite file.

    The same ``count`` signed events (one subject, independent streams) go to a fresh
    store of each kind; every answer must be 201 and every event stored.
    """
    try:
        # The server (issue 16) may be missing from a tree this module is run in.
        start_serve: Any = importlib.import_module("pith_graph.mirror._process").start_serve
    except ImportError:
        return {"skipped": "no mirror server (pith_graph.mirror) in this tree"}
    if database is None:
        return {"skipped": f"no PostgreSQL server ({SERVER_ENV})"}
    history = History.new(_POST_REGISTRY, arxiv_id="2601.09999")
    events = [
        history.event("author_attestation", key=_POST_AUTHOR, target=f"bench-{i}", payload={"i": i})
        for i in range(count)
    ]
    out: dict[str, Any] = {"events": count, "clients": clients}
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.json"
        keys.write_text(json.dumps([_POST_REGISTRY.entry(signer_id="pith.science"), _POST_AUTHOR.entry()]))
        for label, servers in (("sqlite_one_server", 1), ("postgresql_two_servers", 2)):
            db = _fresh("sqlite" if servers == 1 else "postgresql", database, Path(tmp), f"posts_{servers}")
            with EventStore(db) as store:
                store.import_bundle(history.bundle([]), trusted_keys=[_POST_REGISTRY.entry()])
            started = [start_serve(db, "--trusted-keys", str(keys)) for _ in range(servers)]
            try:
                seconds, statuses = _post_all([s.url for s in started], history.subject, events, clients)
            finally:
                for served in started:
                    served.stop()
            with EventStore(db, create=False) as store:
                stored = {e.unit_id for e in store.events(history.subject)}
            if statuses != [201] * count or not {e["event_id"] for e in events} <= stored:
                raise AssertionError(f"{label}: not every POST was stored ({sorted(set(statuses))})")
            out[label] = {"seconds": seconds, "events_per_s": count / seconds}
    out["ratio"] = out["postgresql_two_servers"]["events_per_s"] / out["sqlite_one_server"]["events_per_s"]
    return out


if __name__ == "__main__":
    sys.exit(main())
