"""The mirror's engine, under the HTTP layer: store access off the event loop, group
commit of received events, and the per-subject documents, cached per version.

* **Reads** run on a small thread pool, each thread with its own connection to
  the store (SQLite WAL: readers never wait for the writer).
* **Writes** (``POST /pith/{code}/events``) pass stage 1 under the mirror's
  trusted keys *before* anything is stored (network input, issue 15), then go
  to one writer thread that commits whatever has queued up in one transaction
  (group commit: one fsync for many events; ``synchronous=FULL``, so a commit
  that returned survives a crash). Only then is the client answered.
* **Documents** (state, bundle, event list, page) are cached per subject and
  version (:mod:`.cache`, :mod:`._storeview`): a change made by another worker
  process or by ``pith-graph store import`` beside the server is seen on the
  next request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import json
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, NamedTuple, TypeVar

import msgspec

from pith_graph import codes
from pith_graph.canonical import canonical_json, compact_json_parsed, loads, sha256_hex
from pith_graph.cli._common import trusted_ring
from pith_graph.ed25519 import Verifier
from pith_graph.events import MAX_EVENT_BYTES, CheckedEvent, check_event
from pith_graph.keys import KeyRing
from pith_graph.merge import MergeResult
from pith_graph.mirror._storeview import ChangeWatch, StoreView
from pith_graph.mirror.cache import DEFAULT_CAPACITY, VersionedCache
from pith_graph.mirror.keyfile import MirrorKey
from pith_graph.mirror.page import render_page
from pith_graph.mirror.peers import list_peers
from pith_graph.models import MERGE_VERSION
from pith_graph.store import EventStore, SQLiteBackend
from pith_graph.store._export import signed
from pith_graph.timestamps import parse_timestamp

__all__ = [
    "DEFAULT_NAME",
    "Document",
    "Mirror",
    "MirrorConfig",
    "PostOutcome",
    "Rejected",
    "SubjectState",
    "check_config",
]

_T = TypeVar("_T")

DEFAULT_NAME: Final = "pith-graph mirror"
#: Most events one group commit writes.
MAX_BATCH: Final = 256
#: ``built_at`` of a bundle whose events carry no readable ``created_at``.
_EPOCH: Final = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class MirrorConfig:
    """Everything a server process needs; JSON-serialisable so that ``--workers`` processes get the same."""

    db: str
    base_url: str
    name: str = DEFAULT_NAME
    trusted_keys: str | None = None
    mirror_key: str | None = None
    peers: tuple[str, ...] = ()
    #: Largest POST body (issue 15: a whole event is at most 1 MiB).
    max_body: int = MAX_EVENT_BYTES
    #: Seconds a client may take to send a POST body.
    body_timeout: float = 10.0
    read_threads: int = 4
    cache_capacity: int = DEFAULT_CAPACITY

    def to_json(self) -> str:
        """The configuration as JSON text."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MirrorConfig:
        """The configuration :meth:`to_json` wrote."""
        values = json.loads(text)
        values["peers"] = tuple(values.get("peers") or ())
        return cls(**values)

    def url(self, path: str) -> str:
        """An absolute URL of this mirror."""
        return self.base_url.rstrip("/") + path


@dataclass(frozen=True, slots=True)
class Document:
    """Bytes ready to serve, with their strong entity tag (without quotes)."""

    body: bytes
    etag: str


@dataclass(frozen=True, slots=True)
class SubjectState:
    """A subject's merged state under the mirror's keys, and each unit's verdict in it."""

    subject: str
    document: Document
    applied: frozenset[str]
    reasons: Mapping[str, str]
    forked: frozenset[str]

    @property
    def state_sha256(self) -> str:
        """The state's ``state_sha256``."""
        return self.document.etag

    def status(self, uid: str) -> tuple[str, str | None]:
        """What became of a unit: (``applied`` | ``pending`` | ``forked`` | ``not_applied`` | ``invalid``, reason)."""
        if uid in self.applied:
            return codes.MIRROR_APPLIED, None
        reason = self.reasons.get(uid)
        if reason == codes.REASON_MISSING_PREV_EVENT:
            return codes.MIRROR_PENDING, reason
        if reason is not None:
            return codes.MIRROR_INVALID, reason
        if uid in self.forked:
            return codes.MIRROR_FORKED, None
        return codes.MIRROR_NOT_APPLIED, None


class Rejected(Exception):
    """A received event failed stage 1 under the mirror's keys (nothing was stored)."""

    def __init__(self, reason: str, event_id: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_id = event_id


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """What ``POST /pith/{code}/events`` did with an event that passed stage 1."""

    event_id: str
    new: bool
    status: str
    reason: str | None
    applied: bool
    state_sha256: str

    def to_json(self) -> bytes:
        """The response body."""
        body = {
            "event_id": self.event_id,
            "status": self.status,
            "applied": self.applied,
            "state_sha256": self.state_sha256,
            "stored": "new" if self.new else "already_held",
            "reason": self.reason,
        }
        return json.dumps(body).encode("utf-8")


class _Recorder:
    """A :class:`pith_graph.ed25519.SignatureCache` that remembers nothing old and keeps what is verified now.

    Stage 1 of a POST verifies the signature once; the writer stores that verdict
    in the store's signature cache, so the replay after the commit does not verify it again.
    """

    def __init__(self) -> None:
        self.verdicts: list[tuple[bytes, bytes, bytes, bool]] = []

    def lookup(self, public_key: bytes, signature: bytes, message: bytes) -> bool | None:
        return None

    def record(self, public_key: bytes, signature: bytes, message: bytes, valid: bool) -> None:
        self.verdicts.append((public_key, signature, message, valid))


class _Submission(NamedTuple):
    subject: str
    tree: Any
    #: The stage-1 outcome (valid): its facts and fragments are what the store keeps.
    checked: CheckedEvent
    verdicts: list[tuple[bytes, bytes, bytes, bool]]
    future: concurrent.futures.Future[tuple[bool, int]]


class GroupCommitWriter:
    """One thread that stores received events, committing what has queued up in one transaction.

    A submission resolves to whether its copy was new; it resolves only after
    its transaction committed (``synchronous=FULL``). Within a batch and against
    what is held, a unit is stored once: a copy of a unit of which a copy passing
    stage 1 is held is reported as held, not stored (issue 15, copy amplification).
    """

    def __init__(self, db: str, ring: KeyRing) -> None:
        self._db = db
        self._ring = ring
        self._queue: queue.Queue[_Submission | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pith-mirror-writer", daemon=True)
        self._failure: BaseException | None = None
        self.batches = 0
        self.committed = 0

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)

    def submit(
        self, subject: str, tree: Any, checked: CheckedEvent, verdicts: list[tuple[bytes, bytes, bytes, bool]]
    ) -> concurrent.futures.Future[tuple[bool, int]]:
        """Queue an event that passed stage 1; once committed, the future says whether it was new,
        and the store's largest event seq after the commit."""
        future: concurrent.futures.Future[tuple[bool, int]] = concurrent.futures.Future()
        if self._failure is not None:
            future.set_exception(self._failure)
        else:
            self._queue.put(_Submission(subject, tree, checked, verdicts, future))
        return future

    def _run(self) -> None:
        try:
            store = EventStore(self._db, create=False)
        except BaseException as exc:  # nothing can be stored: every submission fails, none hangs
            self._fail_all(exc)
            return
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < MAX_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    batch.append(more)
                try:
                    results = self._commit(store, batch)
                    seq = store.backend.store_sequence()[0]
                except BaseException as exc:
                    for submission in batch:
                        submission.future.set_exception(exc)
                else:
                    for submission, new in zip(batch, results, strict=True):
                        submission.future.set_result((new, seq))
        finally:
            store.close()

    def _fail_all(self, exc: BaseException) -> None:
        self._failure = exc
        while True:
            submission = self._queue.get()
            if submission is None:
                return
            submission.future.set_exception(exc)

    def _commit(self, store: EventStore, batch: list[_Submission]) -> list[bool]:
        # The store's rule (docs/merge-v1.md, "A unit is stored once") for the whole batch in one
        # durable transaction: a copy of a unit of which a copy valid under the mirror's keys is
        # held, or comes earlier in the batch, is held and not stored (issue 15, copy
        # amplification). Stage 1 ran and passed for every submission: its outcome is handed
        # over, not recomputed, and its key verdict is kept, so the replay after this commit
        # checks and writes nothing.
        results = store.add_copies(
            [(s.subject, s.tree) for s in batch],
            trusted_keys=self._ring,
            keep_invalid=False,
            checked=[s.checked for s in batch],
        )
        # The signature verdicts stage 1 found, for replays under other keys: a derived cache,
        # written by this thread only and without an fsync of its own (see _relaxed).
        for submission in batch:
            for verdict in submission.verdicts:
                store.cache.record(*verdict)
        with _relaxed(store):
            store.cache.flush()
        new = [result.status == codes.STORE_NEW for result in results]
        self.batches += 1
        self.committed += sum(new)
        return new


@contextlib.contextmanager
def _relaxed(store: EventStore) -> Iterator[None]:
    """Writes of derived caches only (signature verdicts, facts, key verdicts) without their own fsync.

    WAL with ``synchronous=NORMAL``: a crash may lose the last of these writes,
    never corrupt the file, and they are recomputed from the stored events when
    missing. Events are always committed with ``synchronous=FULL``.
    """
    if not isinstance(store.backend, SQLiteBackend):  # PostgreSQL: cache writes never wait for a WAL flush
        yield
        return
    conn = store.backend.conn
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        conn.execute("PRAGMA synchronous=FULL")


def _built_at(events: list[Any]) -> str:
    """The latest ``created_at`` among a bundle's events: ``built_at`` is a function of what is
    stored, so every worker and every rebuild serves the same bytes (and the same ETag)."""
    latest: tuple[tuple[int, int], str] | None = None
    for event in events:
        created = event.get("created_at") if isinstance(event, dict) else None
        instant = parse_timestamp(created) if isinstance(created, str) else None
        if instant is not None and (latest is None or instant > latest[0]):
            latest = (instant, created)  # type: ignore[assignment]
    return _EPOCH if latest is None else latest[1]


def check_config(config: MirrorConfig) -> None:
    """Raise the one-line error a server with ``config`` would fail with: store, trusted keys, mirror key."""
    trusted_ring(config.trusted_keys)
    if config.mirror_key:
        MirrorKey.from_file(config.mirror_key)
    EventStore(config.db, create=False).close()


class Mirror:
    """A running mirror over one store: what the routes call. Create it, then ``await start()``."""

    def __init__(self, config: MirrorConfig) -> None:
        self.config = config
        self.ring = trusted_ring(config.trusted_keys)
        self.key = MirrorKey.from_file(config.mirror_key) if config.mirror_key else None
        EventStore(config.db, create=False).close()  # fail now on a missing or foreign file
        self.view = StoreView()
        self.watch = ChangeWatch(config.db)
        self.cache = VersionedCache(config.cache_capacity)
        self.writer = GroupCommitWriter(config.db, self.ring)
        self._local = threading.local()
        self._readers = concurrent.futures.ThreadPoolExecutor(
            config.read_threads, thread_name_prefix="pith-mirror-read"
        )
        self._wanted = 0
        self._applied = -1
        self._sync_lock: asyncio.Lock | None = None

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer and read the store's subjects."""
        self._sync_lock = asyncio.Lock()
        self.writer.start()
        await self.sync(force=True)

    async def stop(self) -> None:
        """Commit what is queued, then stop the threads."""
        await asyncio.get_running_loop().run_in_executor(None, self.writer.stop)
        self._readers.shutdown(wait=True)
        self.watch.close()

    # --- the store, off the event loop ---------------------------------------------

    def _store(self) -> EventStore:
        store: EventStore | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = EventStore(self.config.db, create=False)
            # Reader threads write only derived caches (a replay keeps facts and key
            # verdicts): no fsync of their own, as in _relaxed.
            if isinstance(store.backend, SQLiteBackend):
                store.backend.conn.execute("PRAGMA synchronous=NORMAL")
        return store

    async def off(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn(*args)`` on a store thread."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, functools.partial(fn, *args))

    async def sync(self, *, force: bool = False) -> None:
        """Bring :attr:`view` up to the store's latest commit (cheap when nothing was committed).

        A request that finds the store changed, or another request's refresh still
        running, waits for a refresh that started after it arrived.
        """
        if self.watch.changed() or force:
            self._wanted += 1
        if self._applied >= self._wanted:
            return
        assert self._sync_lock is not None, "Mirror.start() was not awaited"
        async with self._sync_lock:
            if self._applied >= self._wanted:
                return
            target = self._wanted
            view = self.view
            delta = await self.off(lambda: self._store().backend.changes(view.events_seq, view.items_seq))
            view.apply(delta)
            self._applied = target

    async def subject(self, code: str) -> str | None:
        """The held subject of a 26-character code, as of the latest commit."""
        await self.sync()
        return self.view.subject(code)

    # --- documents -----------------------------------------------------------------

    def _replay(self, subject: str) -> MergeResult:
        return self._store().replay(subject, trusted_keys=self.ring)

    def _compute_state(self, subject: str) -> SubjectState:
        result = self._replay(subject)
        state = result.state
        forked = frozenset(uid for fork in state.equivocations for uid in fork["event_ids"])
        return SubjectState(
            subject,
            Document(state.to_json(), state.state_sha256),
            frozenset(state.applied_event_ids),
            dict(result.reasons),
            forked,
        )

    async def state(self, subject: str) -> SubjectState:
        """The subject's state under the mirror's keys (cached per version)."""
        version = self.view.version(subject)
        return await self.cache.get(
            ("state", subject), version, lambda: self.off(self._compute_state, subject)
        )

    def _compute_bundle(self, subject: str) -> Document:
        bundle = self._store().export_bundle(subject, trusted_keys=self.ring, built_at=_EPOCH)
        built_at = bundle["built_at"] = _built_at(bundle["events"])
        code = subject.rsplit(":", 1)[1]
        hint = self.mirror_hint(code)
        hints = [h for h in bundle["mirror_hints"] if h != hint] + [hint]
        ordered: dict[str, Any] = {}
        for name, value in bundle.items():
            if name == "state":  # the registry's key order: links just before the embedded state
                ordered["links"] = self.links(code)
            ordered[name] = hints if name == "mirror_hints" else value
        if self.key is not None:
            ordered = signed(ordered, self.key, built_at)
            digest = ordered["bundle_signature"]["bundle_sha256"]
        else:
            digest = sha256_hex(canonical_json(ordered))
        return Document(compact_json_parsed(ordered), digest)

    async def bundle(self, subject: str) -> Document:
        """The subject's bundle in the registry's shape, naming and signed by this mirror (cached per version)."""
        version = self.view.version(subject)
        return await self.cache.get(
            ("bundle", subject), version, lambda: self.off(self._compute_bundle, subject)
        )

    def _compute_events(self, subject: str, state: SubjectState) -> Document:
        stored = self._store().events(subject, trusted_keys=self.ring)
        listed = []
        for copy in stored:
            status, reason = state.status(copy.unit_id)
            listed.append(
                {
                    "event_id": copy.unit_id,
                    "copy_sha256": copy.digest,
                    "event_type": copy.event_type,
                    "status": status,
                    "reason": reason if reason is not None else copy.reason,
                    "applied": copy.applied,
                    # This copy's own stage-1 verdict: a forged copy of a valid unit never reads as valid.
                    "copy_reason": copy.copy_reason,
                    "event": msgspec.Raw(copy.body),
                }
            )
        document = {
            "events_type": "pith_open_graph_events",
            "pith_number": subject,
            "merge_version": MERGE_VERSION,
            "state_sha256": state.state_sha256,
            "trusted_key_ids": [key.key_id for key in self.ring],
            "events": listed,
        }
        body = msgspec.json.encode(document)
        return Document(body, hashlib.sha256(body).hexdigest())

    async def events(self, subject: str) -> Document:
        """Every stored copy of the subject with its verdict (cached per version)."""
        version = self.view.version(subject)
        state = await self.state(subject)
        return await self.cache.get(
            ("events", subject), version, lambda: self.off(self._compute_events, subject, state)
        )

    def _compute_page(self, subject: str, state: SubjectState) -> Document:
        code = subject.rsplit(":", 1)[1]
        links = {**self.links(code), "events": self.config.url(f"/api/pith-number/{code}/events.json")}
        body = render_page(
            loads(state.document.body), ring=self.ring, mirror_name=self.config.name, links=links
        )
        return Document(body, hashlib.sha256(body).hexdigest())

    async def page(self, subject: str) -> Document:
        """The subject's page for people (cached per version)."""
        version = self.view.version(subject)
        state = await self.state(subject)
        return await self.cache.get(
            ("page", subject), version, lambda: self.off(self._compute_page, subject, state)
        )

    def _peers(self) -> list[tuple[str, str]]:
        listed = {url.rstrip("/"): "" for url in self.config.peers}
        for peer in list_peers(self._store()):
            if not listed.get(peer.url):  # a --peer has no name: the log's is kept
                listed[peer.url] = peer.name
        return list(listed.items())

    async def peers(self) -> list[tuple[str, str]]:
        """(base URL, name) of the peers this mirror knows: ``--peer`` ones first, then those it
        follows (``pith-graph mirror peers add``, the store's peer log); a name may be empty."""
        return await self.off(self._peers)

    def links(self, code: str) -> dict[str, str]:
        """The bundle's ``links`` for this mirror."""
        return {
            "resolver": self.config.url(f"/pith/{code}"),
            "bundle": self.config.url(f"/pith/{code}/bundle.json"),
            "state": self.config.url(f"/pith/{code}/state.json"),
            "well_known_bundle": self.config.url(f"/.well-known/pith/{code}/bundle.json"),
        }

    def mirror_type(self) -> str:
        """``https`` or ``http``, from the base URL."""
        return "https" if self.config.base_url.startswith("https:") else "http"

    def mirror_hint(self, code: str) -> dict[str, Any]:
        """This mirror as a bundle's ``mirror_hints`` item."""
        links = self.links(code)
        return {
            "mirror_type": self.mirror_type(),
            "name": self.config.name,
            "base_url": self.config.base_url.rstrip("/"),
            "bundle_url": links["bundle"],
            "state_url": links["state"],
            "well_known_bundle_url": links["well_known_bundle"],
            "status": "mirror",
        }

    # --- receiving events ----------------------------------------------------------

    def _stage1(self, subject: str, tree: Any) -> tuple[CheckedEvent, list[tuple[bytes, bytes, bytes, bool]]]:
        recorder = _Recorder()
        checked = check_event(tree, subject=subject, keyring=self.ring, verifier=Verifier(cache=recorder))
        if checked.reason is not None:
            raise Rejected(checked.reason, checked.unit_id)
        return checked, recorder.verdicts

    async def _sync_to(self, seq: int) -> None:
        """Bring :attr:`view` at least to event ``seq`` (one refresh serves every request of a batch)."""
        while self.view.events_seq < seq:
            await self.sync(force=True)

    async def post(self, subject: str, tree: Any) -> PostOutcome:
        """Stage 1 under the mirror's keys, then store (durably) and report; :class:`Rejected` stores nothing."""
        checked, verdicts = await self.off(self._stage1, subject, tree)
        uid = checked.unit_id
        new, seq = await asyncio.wrap_future(self.writer.submit(subject, tree, checked, verdicts))
        await self._sync_to(seq)
        state = await self.state(subject)
        status, reason = state.status(uid)
        return PostOutcome(uid, new, status, reason, status == codes.MIRROR_APPLIED, state.state_sha256)
