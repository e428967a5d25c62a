"""``python -m benchmarks.mirror`` (part of ``make bench``): ``pith-graph serve`` under load, driven by wrk.

Every figure that has a target is a ratio to a yardstick measured in the same run
on the same machine (docs/performance.md, "The mirror under load"):

* hot ``GET state.json`` (one subject, served from the cache) against a bare
  Starlette route serving the same bytes from memory under the same uvicorn
  settings: requests/s and p99 (target: at least 0.7x);
* ``GET state.json`` across N stored subjects, each requested once (each one a
  replay from the store): requests/s and p99;
* ``POST`` of valid events from 16 concurrent clients: accepted events/s
  against a bare libsodium loop verifying the same events' signatures (target:
  at least 0.3x); the server is SIGKILLed right after the load and every event
  answered ``201`` must be in the store;
* ``GET`` p99 while that POST load runs, beside the same GET on the idle server.

Options: ``--quick`` (short runs, 1,000 subjects), ``--subjects N`` (default
10,000), ``--duration S`` (seconds per timed run, default 8), ``--output FILE``.
Requires Debian's ``wrk``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from benchmarks import profile
from benchmarks.__main__ import machine
from benchmarks.generate import DATA_DIR, registry_key, signer_keys
from benchmarks.mirror_bare import BODY_ENV
from pith_graph import ed25519
from pith_graph.ed25519 import Verifier
from pith_graph.keys import KeyRing
from pith_graph.mirror._process import ServeProcess, start_serve
from pith_graph.store import EventStore, SQLiteBackend
from pith_graph.testing import History, make_event

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = Path(__file__).resolve().parent / "mirror_results.json"
REGISTRY_BUNDLE: Final = ROOT / "examples" / "registry" / "bundle-AG3PAJ22.json"
REGISTRY_CODE: Final = "AG3PAJ22332P5QMVIKKH75CXNK"
#: Concurrent connections of the hot GET and the POST loads (the issue's 16 clients).
CLIENTS: Final = 16
#: Alternating (mirror, bare) runs of the hot GET.
PAIRS: Final = 3
#: (name, figure key, threshold, direction) of the issue-16 targets.
TARGETS: Final = (
    ("hot GET state.json / bare Starlette, requests/s", "hot_ratio", 0.7, ">="),
    ("POST accepted events/s / bare libsodium verification", "post_ratio", 0.3, ">="),
)
_SUBJECTS_FORMAT: Final = 1  # bump when the generated subjects change (invalidates the cache)

# One wrk script for every run. Arguments after "--": a file of requests (one
# "PATH" or "PATH<TAB>BODY" per line; empty: wrk's own URL), a limit of responses
# after which the thread stops (0: none), the method, and a marker file written
# when the limit is reached (wrk's main thread sleeps out -d whatever its threads
# do, so the harness interrupts it then; the elapsed time is measured here).
# Prints one JSON line.
_LUA: Final = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } pith_timespec;
int clock_gettime(int clock, pith_timespec *now);
]]
local function now_us()
  local t = ffi.new("pith_timespec")
  ffi.C.clock_gettime(1, t)  -- CLOCK_MONOTONIC
  return tonumber(t.tv_sec) * 1000000 + tonumber(t.tv_nsec) / 1000
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
local paths, bodies, i, limit, method, marker = nil, nil, 0, 0, "GET", nil
created, ok2xx, seen, started, finished = 0, 0, 0, 0, 0
function init(args)
  started = now_us()
  if args[1] ~= nil and args[1] ~= "" then
    paths, bodies = {}, {}
    for line in io.lines(args[1]) do
      local tab = string.find(line, "\t", 1, true)
      if tab then
        table.insert(paths, string.sub(line, 1, tab - 1)); table.insert(bodies, string.sub(line, tab + 1))
      else
        table.insert(paths, line); table.insert(bodies, false)
      end
    end
  end
  limit = tonumber(args[2] or "0") or 0
  method = args[3] or "GET"
  marker = args[4]
end
function request()
  if paths == nil then return wrk.request() end
  i = i + 1
  if i > #paths then i = 1 end
  if bodies[i] then
    return wrk.format(method, paths[i], {["Content-Type"] = "application/json"}, bodies[i])
  end
  return wrk.format(method, paths[i])
end
function response(status, headers, body)
  seen = seen + 1
  if status == 201 then created = created + 1 end
  if status >= 200 and status < 300 then ok2xx = ok2xx + 1 end
  if limit > 0 and seen == limit then
    finished = now_us()
    local f = io.open(marker, "w"); f:write("done"); f:close()
    wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  local c, o, elapsed = 0, 0, summary.duration
  for _, t in ipairs(threads) do
    c = c + t:get("created"); o = o + t:get("ok2xx")
    if t:get("finished") > 0 then elapsed = t:get("finished") - t:get("started") end
  end
  local e = summary.errors
  io.write(string.format(
    'PITH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"created":%d,"ok2xx":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, elapsed, latency:percentile(50), latency:percentile(99), latency.max, c, o,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk(
    url: str,
    *,
    connections: int,
    duration: float,
    requests: Path | None = None,
    limit: int = 0,
    method: str = "GET",
) -> dict[str, Any]:
    """One wrk run (one thread); its figures, with ``rate`` in requests/s.

    With ``limit``, the run ends when that many responses arrived (or after ``duration``).
    """
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "pith.lua"
        script.write_text(_LUA)
        marker = Path(scratch) / "limit-reached"
        command = [
            "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "20s", "-s", str(script), url,
            "--", str(requests or ""), str(limit), method, str(marker),
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + duration + 300
        while process.poll() is None and time.monotonic() < deadline:
            if marker.exists():
                process.send_signal(signal.SIGINT)  # wrk stops, prints, and runs done()
                break
            time.sleep(0.02)
        stdout, stderr = process.communicate(timeout=300)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr[-2000:]}")
    line = next(line for line in stdout.splitlines() if line.startswith("PITH_RESULT "))
    result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
    result["p99_ms"] = result["p99_us"] / 1000
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def bare_server(body: bytes, directory: Path) -> Iterator[str]:
    """The yardstick: benchmarks.mirror_bare under uvicorn, configured as ``pith-graph serve`` configures it."""
    body_file = directory / "bare-body.json"
    body_file.write_bytes(body)
    port = _free_port()
    command = [
        sys.executable, "-m", "uvicorn", "benchmarks.mirror_bare:app", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "5", "--limit-concurrency", "1024",
        "--h11-max-incomplete-event-size", "16384", "--no-server-header",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, BODY_ENV: str(body_file)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the bare server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


@contextmanager
def serving(db: Path, *options: str) -> Iterator[ServeProcess]:
    served = start_serve(db, *options)
    try:
        yield served
    finally:
        served.stop()


def trusted_file(directory: Path) -> Path:
    """The benchmark mirrors' trusted keys: the registry's, the benchmark registry's and the POST signer's."""
    path = directory / "trusted.json"
    entries = [
        *KeyRing.registry().to_entries(),
        registry_key().entry(signer_id=registry_key().signer_id),
        signer_keys()[0].entry(signer_id=signer_keys()[0].signer_id),
    ]
    path.write_text(json.dumps(entries))
    return path


def _history(index: int) -> History:
    return History.new(
        registry_key(), arxiv_id=f"2601.{index:05d}" if index < 100_000 else f"2602.{index:06d}"
    )


def subjects_store(n: int, keys: Path, data_dir: Path = DATA_DIR) -> tuple[Path, list[str]]:
    """A store of ``n`` subjects (record_created each), cached in ``data_dir``; and their codes."""
    db = data_dir / f"mirror-subjects-{n}-v{_SUBJECTS_FORMAT}.sqlite"
    listing = db.with_suffix(".codes.json")
    if db.exists() and listing.exists():
        return db, json.loads(listing.read_text())
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"generating {n} subjects (once; cached in {data_dir}) ...", file=sys.stderr, flush=True)
    partial = db.with_suffix(".partial")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    ring = KeyRing.from_json(keys.read_bytes())
    codes: list[str] = []
    with EventStore(partial) as store:
        # Generated data, rebuilt if lost: no fsync per subject.
        assert isinstance(store.backend, SQLiteBackend)  # a file made just above
        store.backend.conn.execute("PRAGMA synchronous=OFF")
        for index in range(n):
            history = _history(index)
            store.import_bundle(history.bundle([]), trusted_keys=ring)
            codes.append(history.subject.rsplit(":", 1)[1])
    partial.rename(db)
    listing.write_text(json.dumps(codes))
    return db, codes


def post_workload(
    directory: Path, keys: Path, count: int, subjects: int = CLIENTS
) -> tuple[Path, Path, list[Any]]:
    """A fresh store of ``subjects`` subjects, and ``count`` valid events about them (a requests file for wrk).

    Each event is the root of its own stream (its own target), so every one is
    applied and none waits for another, whatever order the clients send them in.
    """
    db = directory / "post.sqlite"
    signer = signer_keys()[0]
    histories = [_history(900_000 + i) for i in range(subjects)]
    with EventStore(db) as store:
        store.import_bundle(REGISTRY_BUNDLE)
        for history in histories:
            store.import_bundle(history.bundle([]), trusted_keys=KeyRing.from_json(keys.read_bytes()))
    events = []
    lines = []
    for index in range(count):
        history = histories[index % subjects]
        event = make_event(
            signer,
            subject=history.subject,
            event_type="author_attestation",
            target=f"bench-{index}",
            payload={"claim": f"claim {index}", "evidence": "x" * 200},
            created_at=f"2026-06-03T{index // 3600 % 24:02d}:{index // 60 % 60:02d}:{index % 60:02d}Z",
        )
        events.append(event)
        lines.append(f"/pith/{history.subject.rsplit(':', 1)[1]}/events\t{json.dumps(event)}")
    requests = directory / "posts.txt"
    requests.write_text("\n".join(lines) + "\n")
    return db, requests, events


def bare_verification_rate(events: list[Any], repeat: int = 3) -> tuple[float, str]:
    """Events/s of a bare loop verifying the events' signatures (libsodium when installed)."""
    backend = "nacl" if "nacl" in ed25519.available_backends() else ed25519.get_backend("auto").name
    signer = signer_keys()[0]
    triples = [
        (
            signer.public_key,
            base64.b64decode(e["signature"]["signature_b64"]),
            bytes.fromhex(e["content_sha256"]),
        )
        for e in events
    ]
    best = float("inf")
    for _ in range(repeat):
        verifier = Verifier(backend)
        start = time.perf_counter()
        assert all(profile.verify_all(verifier, triples))
        best = min(best, time.perf_counter() - start)
    return len(triples) / best, backend


def stored_units(db: Path) -> set[str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT unit_id FROM events")}


def measure(*, subjects: int, duration: float, posts: int, directory: Path) -> dict[str, Any]:
    """Every figure, in one run."""
    keys = trusted_file(directory)
    out: dict[str, Any] = {"duration_s": duration, "clients": CLIENTS}

    # 1. Hot GET: the mirror and the bare route alternate, PAIRS times each, so that other work
    # on a shared machine weighs on both alike; the best of each, and each pair's ratio, are kept.
    hot_db = directory / "hot.sqlite"
    with EventStore(hot_db) as store:
        store.import_bundle(REGISTRY_BUNDLE)
    path = f"/pith/{REGISTRY_CODE}/state.json"
    mirror_runs: list[dict[str, Any]] = []
    bare_runs: list[dict[str, Any]] = []
    with serving(hot_db, "--trusted-keys", str(keys)) as served:
        body = subprocess.run(["curl", "-sf", served.url + path], capture_output=True, check=True).stdout
        with bare_server(body, directory) as bare:
            for _ in range(PAIRS):
                wrk(served.url + path, connections=CLIENTS, duration=1)  # warm-up
                mirror_runs.append(wrk(served.url + path, connections=CLIENTS, duration=duration))
                wrk(bare + path, connections=CLIENTS, duration=1)
                bare_runs.append(wrk(bare + path, connections=CLIENTS, duration=duration))
    mirror_best = max(mirror_runs, key=lambda r: r["rate"])
    bare_best = max(bare_runs, key=lambda r: r["rate"])
    out["hot"] = {
        "mirror": mirror_best,
        "bare": bare_best,
        "mirror_runs": mirror_runs,
        "bare_runs": bare_runs,
    }
    out["hot_ratio"] = mirror_best["rate"] / bare_best["rate"]
    out["hot_paired_ratios"] = [m["rate"] / b["rate"] for m, b in zip(mirror_runs, bare_runs, strict=True)]
    out["hot_p99_ratio"] = mirror_best["p99_us"] / max(bare_best["p99_us"], 1)

    # 2. Across many subjects, each requested once, on a fresh server (nothing cached in memory).
    db, codes = subjects_store(subjects, keys)
    listing = directory / "subjects.txt"
    listing.write_text("".join(f"/pith/{code}/state.json\n" for code in codes))
    with serving(db, "--trusted-keys", str(keys)) as served:
        spread = wrk(served.url + "/", connections=CLIENTS, duration=600, requests=listing, limit=len(codes))
    out["spread"] = {"subjects": len(codes), **spread}

    # 3 and 4. POST load from 16 clients, with a GET load beside it; then SIGKILL and count.
    post_db, requests, events = post_workload(directory, keys, posts)
    out["bare_verification"], out["bare_backend"] = bare_verification_rate(events)
    with serving(post_db, "--trusted-keys", str(keys)) as served:
        idle = wrk(served.url + path, connections=2, duration=duration)
        getter = subprocess.Popen(
            [sys.executable, "-c", _GET_BESIDE, served.url + path, str(duration)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        post = wrk(
            served.url + "/",
            connections=CLIENTS,
            duration=duration,
            requests=requests,
            limit=len(events),
            method="POST",
        )
        beside_out, _ = getter.communicate(timeout=duration + 300)
        served.stop(signal.SIGKILL)  # at once: what was answered 2xx must already be on disk
    beside = json.loads(beside_out)
    # Each event is offered once, so at least as many are stored as were answered 201.
    stored = len(stored_units(post_db) & {event["event_id"] for event in events})
    out["post"] = {**post, "events_offered": len(events), "stored_after_sigkill": stored}
    out["post_rate"] = post["ok2xx"] / (post["duration_us"] / 1e6)
    out["post_ratio"] = out["post_rate"] / out["bare_verification"]
    out["post_durable"] = stored >= post["created"]
    # What the HTTP stack allows at all: the bare route (no store, no parsing, no signature)
    # against the same verification loop. The POST target cannot be above it.
    out["post_ceiling"] = bare_best["rate"] / out["bare_verification"]
    out["get_idle"] = idle
    out["get_during_post"] = beside
    return out


# The GET load beside the POST load: a second wrk, started from a child so both run at once.
_GET_BESIDE: Final = """
import json, sys
from benchmarks.mirror import wrk
print(json.dumps(wrk(sys.argv[1], connections=2, duration=float(sys.argv[2]))))
"""


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, key, threshold, direction in TARGETS:
        value = results[key]
        met = value >= threshold if direction == ">=" else value <= threshold
        rows.append({"name": name, "value": value, "target": f"{direction} {threshold}", "met": met})
    return rows


def table(results: dict[str, Any]) -> str:
    r = results
    hot, spread, post = r["hot"], r["spread"], r["post"]
    lines = [
        f"== pith-graph serve under wrk ({r['clients']} connections, {r['duration_s']:g} s runs, 1 worker) ==",
        f"  hot GET state.json      mirror {hot['mirror']['rate']:8.0f} req/s  p99 {hot['mirror']['p99_ms']:7.2f} ms",
        f"                          bare   {hot['bare']['rate']:8.0f} req/s  p99 {hot['bare']['p99_ms']:7.2f} ms"
        f"  ratio {r['hot_ratio']:.2f} (pairs: {', '.join(f'{x:.2f}' for x in r['hot_paired_ratios'])})",
        f"  GET {spread['subjects']} subjects once {spread['rate']:8.0f} req/s  p99 {spread['p99_ms']:7.2f} ms"
        f"  (2xx {spread['ok2xx']}, errors {spread['errors']})",
        f"  POST valid events       {r['post_rate']:8.0f} accepted/s  p99 {post['p99_ms']:7.2f} ms"
        f"  (201 {post['created']}, stored after SIGKILL {post['stored_after_sigkill']}, durable {r['post_durable']})",
        f"  bare {r['bare_backend']} verification {r['bare_verification']:8.0f} events/s  ratio {r['post_ratio']:.3f}"
        f" (bare GET route / bare verification: {r['post_ceiling']:.3f})",
        f"  GET p99 idle {r['get_idle']['p99_ms']:.2f} ms, during POST load {r['get_during_post']['p99_ms']:.2f} ms"
        f" ({r['get_during_post']['rate']:.0f} req/s beside it)",
    ]
    for row in r["targets"]:
        lines.append(
            f"  target {row['name']}: {row['value']:.3f} {row['target']}: {'met' if row['met'] else 'MISSED'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mirror", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1,000 subjects, 1,500 posts")
    parser.add_argument(
        "--subjects", type=int, default=None, help="subjects for the spread GET (default 10000)"
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per timed run (default 8)")
    parser.add_argument(
        "--posts", type=int, default=None, help="events offered to the POST load (default 6000)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("benchmarks.mirror: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    subjects = args.subjects or (1000 if args.quick else 10_000)
    duration = args.duration or (3.0 if args.quick else 8.0)
    posts = args.posts or (1500 if args.quick else 6000)
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "machine": machine(),
            **measure(subjects=subjects, duration=duration, posts=posts, directory=Path(tmp)),
        }
    results["targets"] = targets(results)
    print(table(results))
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
