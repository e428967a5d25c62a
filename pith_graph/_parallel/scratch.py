"""The private scratch directory through which stage-1 helpers read a bundle and return their results.

Bytes cross between processes through files there, never through the pool's
pipes: a pipe carries 64 KiB per system call, and each call waits for the GIL,
which the merge holds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Final

from pith_graph._parallel.pool import may_start_processes

__all__ = ["SCRATCH_MIN_BYTES", "ScratchCopy", "scratch_copy"]

#: The bundle's copy and the helpers' results take at most about this many times its size.
_SCRATCH_FACTOR: Final = 3
#: Scratch directories are named ``pith-graph-<pid>-<random>``.
_SCRATCH_PREFIX: Final = "pith-graph-"


def _sweep_scratch(root: str | None) -> None:
    """Remove the scratch directories of rebuilds whose process is gone (killed by a
    signal, which skips the clean-up): this user's only, named after a dead process.

    POSIX only: elsewhere ``os.kill(pid, 0)`` is not a liveness probe (on
    Windows it terminates the process).
    """
    if os.name != "posix":
        return
    root = root or tempfile.gettempdir()
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_SCRATCH_PREFIX):
            continue
        pid = entry.name[len(_SCRATCH_PREFIX) :].partition("-")[0]
        try:
            if not pid.isdigit() or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:  # alive under another user, or unreadable
            continue


def _scratch_root(size: int) -> str | None:
    """Where helpers exchange files: memory-backed when the system has room there
    (a container's /dev/shm may hold only 64 MB), else the default temporary directory."""
    shm = "/dev/shm"
    try:
        if os.access(shm, os.W_OK | os.X_OK) and shutil.disk_usage(shm).free > _SCRATCH_FACTOR * size:
            return shm
    except OSError:
        pass
    return None


#: Bundles smaller than this are not copied for helpers: they hold too few events
#: for helpers to pay (:data:`PARALLEL_MIN_EVENTS` events take several MB).
SCRATCH_MIN_BYTES: Final = 1 << 20


class ScratchCopy:
    """A private scratch directory holding a copy of a bundle's bytes, for helper processes.

    A thread writes the copy (a file write releases the GIL) while this process
    splits the bundle, so the copy costs this process almost nothing;
    :meth:`ready` waits for it. Helpers write their results into the same
    directory. :meth:`close` removes it all; use it as a context manager.
    """

    def __init__(self, directory: str, data: bytes) -> None:
        self.directory = directory
        self.path = os.path.join(directory, "bundle.json")
        self._error: BaseException | None = None
        self._writing = threading.Event()
        self._thread = threading.Thread(
            target=self._write, args=(data,), name="pith-graph-scratch", daemon=True
        )
        self._thread.start()
        # Wait until the thread is about to write, which releases the GIL: otherwise it
        # might only get the GIL back after the split's long decode, which never yields it.
        self._writing.wait()

    def _write(self, data: bytes) -> None:
        try:
            with open(self.path, "wb") as handle:
                self._writing.set()
                handle.write(data)
        except (
            BaseException
        ) as exc:  # no room after all (or anything else): stage 1 runs in the calling process
            self._error = exc  # never a partial copy taken for a whole one
        finally:
            self._writing.set()

    def ready(self) -> bool:
        """Wait until the copy is written; False when it could not be."""
        self._thread.join()
        return self._error is None

    def close(self) -> None:
        """Remove the directory and everything in it (after the copy is written)."""
        self._thread.join()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ScratchCopy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def scratch_copy(data: bytes, workers: int, *, min_bytes: int = SCRATCH_MIN_BYTES) -> ScratchCopy | None:
    """Start copying a bundle's bytes to a private scratch directory for ``workers - 1`` helpers.

    None when no helper will run (one worker, a bundle under
    ``min_bytes``, by default :data:`SCRATCH_MIN_BYTES`; no processes allowed
    here) or no directory can be made.
    Directories left by rebuilds killed by a signal are swept first.
    """
    if workers <= 1 or len(data) < min_bytes or not may_start_processes():
        return None
    root = _scratch_root(len(data))
    _sweep_scratch(root)
    try:
        directory = tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-", dir=root)
    except OSError:
        return None
    try:
        return ScratchCopy(directory, data)
    except BaseException as exc:  # no thread can be started here, or an interrupt
        shutil.rmtree(directory, ignore_errors=True)
        if isinstance(exc, RuntimeError):
            return None
        raise
