"""Two mirrors on loopback converge: post an event to one, sync the other, compare state_sha256.

Run from a checkout (after ``make install``)::

    .venv/bin/python examples/two_mirrors.py

It builds a test record signed by a throwaway registry key, imports it into two
fresh stores, starts ``pith-graph serve`` on each (127.0.0.1, ports chosen by
the system), posts one signed event to the first, runs ``pith-graph mirror
sync`` for the second against the first, and prints both mirrors'
``state_sha256`` as served at ``/pith/{code}/state.json``: equal.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from pith_graph.mirror._process import start_serve
from pith_graph.testing import History, TestKey

REGISTRY = TestKey("example-registry", signer_id="pith.science")
AUTHOR = TestKey("example-author")


def pith_graph(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pith_graph", *args], capture_output=True, text=True, timeout=120
    )


def state_sha256(url: str, code: str) -> str:
    body = httpx.get(f"{url}/pith/{code}/state.json", timeout=30).content
    return (
        str(json.loads(body)["state_sha256"])
        + f"  (sha256 of the bytes served: {hashlib.sha256(body).hexdigest()[:16]}...)"
    )


def main() -> int:
    history = History.new(REGISTRY, arxiv_id="2601.04242")
    code = history.subject.rsplit(":", 1)[1]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        keys = work / "trusted-keys.json"
        keys.write_text(json.dumps([REGISTRY.entry(signer_id="pith.science"), AUTHOR.entry()]))
        bundle = work / "record.json"
        bundle.write_text(json.dumps(history.bundle()))
        dbs = [work / "first.sqlite", work / "second.sqlite"]
        for db in dbs:
            result = pith_graph("store", "import", str(bundle), "--db", str(db), "--trusted-keys", str(keys))
            if result.returncode != 0:
                raise SystemExit(result.stderr)
        servers = [start_serve(db, "--trusted-keys", str(keys), startup_s=60) for db in dbs]
        try:
            first, second = (server.url for server in servers)
            event = history.event(
                "author_attestation", key=AUTHOR, target="author", payload={"note": "hello"}
            )
            posted = httpx.post(
                f"{first}/pith/{code}/events",
                content=json.dumps(event),
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            print(f"POST {first}/pith/{code}/events -> {posted.status_code} {posted.json().get('status')}")
            print(f"before sync: first  {state_sha256(first, code)}")
            print(f"             second {state_sha256(second, code)}")
            synced = pith_graph("mirror", "sync", first, "--db", str(dbs[1]), "--trusted-keys", str(keys))
            print(synced.stdout.strip().splitlines()[-1] if synced.stdout.strip() else synced.stderr.strip())
            a, b = state_sha256(first, code), state_sha256(second, code)
            print(f"after sync:  first  {a}")
            print(f"             second {b}")
            print("equal" if a == b else "DIFFERENT")
            return 0 if a == b else 1
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    sys.exit(main())
