"""``pith-graph serve`` as a child process: start it, learn where it listens, stop it.

For tests, benchmarks and examples that need a real mirror on loopback. Every
wait is bounded; the first stdout line of ``serve`` names its address.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["ServeProcess", "start_serve"]

#: What ``serve`` prints first (see pith_graph/mirror/_cli.py).
_BANNER: Final = "pith-graph mirror: http://"


@dataclass
class ServeProcess:
    """A running ``pith-graph serve``: its process, base URL and store file."""

    process: subprocess.Popen[bytes]
    url: str
    db: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Stop it (SIGTERM: gracefully; SIGKILL: as in a crash), reap it, return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode


def start_serve(db: str | os.PathLike[str], *options: str, startup_s: float = 30.0) -> ServeProcess:
    """Start ``pith-graph serve --db DB --port 0 OPTIONS`` and wait until ``GET /`` answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pith_graph", "serve", "--db", os.fspath(db), "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], startup_s)
    line = process.stdout.readline().decode() if ready else ""
    if not line.startswith(_BANNER):
        process.kill()
        _, err = process.communicate(timeout=startup_s)
        raise RuntimeError(f"pith-graph serve did not start: {line!r} {err.decode(errors='replace')[-2000:]}")
    served = ServeProcess(process, line.split()[2], Path(db))
    deadline = time.monotonic() + startup_s
    while True:
        try:
            with urllib.request.urlopen(served.url + "/", timeout=startup_s) as answer:
                if answer.status == 200:
                    return served
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            served.stop(signal.SIGKILL)
            raise RuntimeError("pith-graph serve did not answer in time")
        time.sleep(0.1)
