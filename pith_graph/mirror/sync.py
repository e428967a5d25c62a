"""``mirror sync``: follow a peer through its change feed, without trusting it.

One round (:func:`sync_once`) reads the peer's feed from the cursor kept for
it (:mod:`pith_graph.mirror.peers`), and for every listed subject whose
``state_sha256`` differs from the local one fetches the bundle (conditional GET
with the ETag kept from last time) and admits it
(:func:`pith_graph.mirror.admit.admit_bundle`: only what passes stage 1 under
the local keys is stored). The cursor advances past a page only after every
subject of the page was committed, so a crash or SIGKILL at any point loses
nothing: the next round reads the same page again, skips what is already equal
and gets ``304`` for bundles already fetched.

A subject whose bundle is unusable (garbage, another subject, a ``4xx``) is a
problem of that round and is passed over: the peer's fault must not stop the
feed. A transient failure (the peer down, slow, ``5xx`` after the client's
retries) ends the round without advancing the cursor past the page.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import urlencode

from pith_graph import codes
from pith_graph.canonical import canonical_json_parsed, sha256_hex
from pith_graph.errors import InputError, PeerError
from pith_graph.identifiers import PITH_NUMBER_RE
from pith_graph.keys import KeyRing
from pith_graph.mirror import peers
from pith_graph.mirror.admit import Admitted, admit_bundle, local_state_sha256, parse_bundle
from pith_graph.mirror.client import Fetched, MirrorClient, full_jitter, parse_json
from pith_graph.mirror.feed import DEFAULT_LIMIT, FEED_TYPE, changes_since
from pith_graph.store import EventStore

__all__ = [
    "FeedPage",
    "HttpPeer",
    "PeerSource",
    "StorePeer",
    "SyncSummary",
    "follow",
    "page_from_dict",
    "sync_once",
]

FEED_PATH: Final = "/api/mirror/changes"
_EPOCH: Final = "1970-01-01T00:00:00Z"
#: Longest cursor a peer may hand out (it is stored and sent back verbatim).
MAX_CURSOR_CHARS: Final = 256
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
#: Problem lines and admissions a summary keeps (the counts go on).
KEPT: Final = 1000


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A page of a peer's feed, checked for shape: (subject, state_sha256) pairs, the next cursor, more."""

    changes: tuple[tuple[str, str | None], ...]
    next: str
    more: bool


@dataclass
class SyncSummary:
    """What one or more rounds against a peer did."""

    peer: str
    rounds: int = 0
    pages: int = 0
    subjects_listed: int = 0
    unchanged: int = 0
    not_modified: int = 0
    fetched: int = 0
    events_added: int = 0
    rejected: int = 0
    #: The first :data:`KEPT` problems (one line each) and admissions; ``problem_count`` counts all,
    #: so that ``--follow`` running for weeks keeps bounded memory.
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    cursor: str | None = None
    admitted: list[Admitted] = field(default_factory=list)

    def problem(self, line: str) -> None:
        """Count a problem, keeping its line while fewer than :data:`KEPT` are kept."""
        self.problem_count += 1
        if len(self.problems) < KEPT:
            self.problems.append(line)

    def admission(self, admitted: Admitted) -> None:
        """Count what an admission did, keeping it while fewer than :data:`KEPT` are kept."""
        self.fetched += 1
        self.events_added += admitted.events_added
        self.rejected += len(admitted.rejected)
        for found in admitted.problems:
            self.problem(f"{admitted.subject}: {found.code}: {found.message} [{found.where}]")
        if len(self.admitted) < KEPT:
            self.admitted.append(admitted)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "peer": self.peer,
            "rounds": self.rounds,
            "pages": self.pages,
            "subjects_listed": self.subjects_listed,
            "unchanged": self.unchanged,
            "not_modified": self.not_modified,
            "fetched": self.fetched,
            "events_added": self.events_added,
            "rejected": self.rejected,
            "problems": self.problems,
            "problem_count": self.problem_count,
            "cursor": self.cursor,
        }

    def line(self) -> str:
        """The one-line summary printed at the end."""
        return (
            f"{self.peer}: {self.subjects_listed} subjects listed, {self.fetched} bundles fetched"
            f" ({self.unchanged} already equal, {self.not_modified} not modified), {self.events_added} events added,"
            f" {self.rejected} rejected, {self.problem_count} problems; cursor {self.cursor or '(start)'}"
        )


def _bad_page(url: str, why: str) -> PeerError:
    return PeerError(f"{url}: not a change-feed page ({why})", code=codes.E_PEER_BAD_ANSWER, url=url)


def page_from_dict(page: Any, *, limit: int, url: str) -> FeedPage:
    """A feed page as received, checked for shape (anything else: ``peer_bad_answer``)."""
    if not isinstance(page, dict) or page.get("feed_type") != FEED_TYPE:
        raise _bad_page(url, f"feed_type is not {FEED_TYPE!r}")
    following, more, listed = page.get("next"), page.get("more"), page.get("changes")
    if (
        not isinstance(following, str)
        or not 0 < len(following) <= MAX_CURSOR_CHARS
        or not following.isprintable()
    ):
        raise _bad_page(url, "next is not a cursor")
    if not isinstance(more, bool) or not isinstance(listed, list) or len(listed) > limit:
        raise _bad_page(url, f"needs a boolean more and a list of at most {limit} changes")
    changes: list[tuple[str, str | None]] = []
    for item in listed:
        subject = item.get("pith_number") if isinstance(item, dict) else None
        digest = item.get("state_sha256") if isinstance(item, dict) else None
        if not isinstance(subject, str) or not PITH_NUMBER_RE.fullmatch(subject):
            raise _bad_page(url, "a change without a Pith Number")
        if digest is not None and not (isinstance(digest, str) and _SHA256_RE.fullmatch(digest)):
            raise _bad_page(url, f"the state_sha256 of {subject} is not a sha256")
        changes.append((subject, digest))
    return FeedPage(tuple(changes), following, more)


def bundle_url(peer: str, subject: str) -> str:
    """The URL of a subject's bundle at a mirror base URL (FORMAT-FACTS: ``/pith/{code}/bundle.json``)."""
    return f"{peer}/pith/{subject.rsplit(':', 1)[1]}/bundle.json"


class PeerSource(Protocol):
    """What a round needs from a peer: its name (a base URL), feed pages and bundles."""

    url: str

    def page(self, after: str | None, limit: int) -> FeedPage:
        """One page of the peer's feed after ``after``."""

    def bundle(self, subject: str, etag: str | None) -> Fetched:
        """The subject's bundle (a 304 when ``etag`` still matches)."""


class HttpPeer:
    """A peer over HTTP: ``GET /api/mirror/changes`` and ``GET /pith/{code}/bundle.json``."""

    def __init__(self, client: MirrorClient, url: str) -> None:
        self.client = client
        self.url = peers.normalise_url(url)

    def page(self, after: str | None, limit: int) -> FeedPage:
        query = {"limit": str(limit)} | ({"after": after} if after else {})
        url = f"{self.url}{FEED_PATH}?{urlencode(query)}"
        return page_from_dict(parse_json(self.client.get(url)), limit=limit, url=url)

    def bundle(self, subject: str, etag: str | None) -> Fetched:
        return self.client.get(bundle_url(self.url, subject), etag=etag)


def _fetch_subject(
    store: EventStore, source: PeerSource, subject: str, ring: KeyRing, summary: SyncSummary
) -> None:
    url = bundle_url(source.url, subject)
    try:
        fetched = source.bundle(subject, peers.etag(store, source.url, subject))
        if fetched.not_modified:
            summary.not_modified += 1
            return
        raw = parse_bundle(fetched.body, subject=subject, url=url)
    except PeerError as exc:
        if exc.transient:
            raise  # the peer is failing now: end the round, keep the cursor
        summary.problem(f"{subject}: {exc.code}: {exc.message}")
        return
    admitted = admit_bundle(store, raw, subject=subject, ring=ring, source=url)
    if fetched.etag:
        peers.set_etag(
            store, source.url, subject, fetched.etag
        )  # after the commit: a 304 then means "already held"
    summary.admission(admitted)


def sync_once(
    store: EventStore,
    source: PeerSource,
    *,
    ring: KeyRing,
    limit: int = DEFAULT_LIMIT,
    max_pages: int | None = None,
    summary: SyncSummary | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SyncSummary:
    """One round against ``source``: every page of its feed from the kept cursor (at most ``max_pages``).

    Raises :class:`PeerError` when the feed is unusable or the peer fails
    transiently; what was committed before stays, with its cursor.
    """
    peer = source.url
    if all(p.url != peer for p in peers.list_peers(store)):
        peers.add_peer(store, peer)
    summary = summary or SyncSummary(peer)
    summary.rounds += 1
    after = peers.cursor(store, peer)
    summary.cursor = after
    pages = 0
    while max_pages is None or pages < max_pages:
        page = source.page(after, limit)
        if page.more and (not page.changes or page.next == after):
            # A page that says "more" must make progress, or a peer could keep a round going for ever.
            url = f"{peer}{FEED_PATH}"
            raise _bad_page(
                url, "more is true, but the page lists nothing or its next cursor is the one asked for"
            )
        pages += 1
        summary.pages += 1
        summary.subjects_listed += len(page.changes)
        for done, (subject, digest) in enumerate(page.changes, 1):
            if digest is not None and digest == local_state_sha256(store, subject, ring):
                summary.unchanged += 1
            else:
                _fetch_subject(store, source, subject, ring, summary)
            if progress is not None:
                progress(done, len(page.changes))
        # merge-v1 data of the whole page is committed: only now does the cursor move.
        peers.set_cursor(store, peer, page.next)
        after = summary.cursor = page.next
        if not page.more:
            break
    return summary


def backoff_delays(base: float, cap: float, rng: random.Random | None = None) -> Iterator[float]:
    """Successive waits after consecutive errors (:func:`~pith_graph.mirror.client.full_jitter`)."""
    rng = rng or random.Random()
    attempt = 0
    while True:
        yield full_jitter(attempt, base, cap, rng)
        attempt = min(attempt + 1, 30)


def follow(
    store: EventStore,
    source: PeerSource,
    *,
    ring: KeyRing,
    interval: float,
    max_rounds: int | None = None,
    on_error: Callable[[PeerError, float], None] | None = None,
    on_round: Callable[[SyncSummary], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    limit: int = DEFAULT_LIMIT,
) -> SyncSummary:
    """Rounds every ``interval`` seconds until ``max_rounds`` (None: until interrupted).

    A peer error never ends it: the next round is tried after a backoff that
    grows with consecutive errors (capped at ten intervals, at least a minute).
    """
    summary = SyncSummary(source.url)
    delays: Iterator[float] | None = None
    rounds = 0
    while max_rounds is None or rounds < max_rounds:
        rounds += 1
        try:
            sync_once(store, source, ring=ring, limit=limit, summary=summary)
        except PeerError as exc:
            delays = delays or backoff_delays(max(interval, 0.05), max(10 * interval, 60.0))
            wait = interval + next(delays)
            if on_error is not None:
                on_error(exc, wait)
            if max_rounds is None or rounds < max_rounds:
                sleep(wait)
            continue
        delays = None
        if on_round is not None:
            on_round(summary)
        if max_rounds is None or rounds < max_rounds:
            sleep(interval)
    return summary


class StorePeer:
    """A peer that is another store in this process: the same feed and bundles, without HTTP.

    For tests and tools that sync local stores through exactly the logic a
    network peer goes through (page shape checks, admission, cursors).
    """

    def __init__(self, store: EventStore, url: str, *, trusted_keys: KeyRing | None = None) -> None:
        self.store = store
        self.url = peers.normalise_url(url)
        self.trusted_keys = trusted_keys

    def page(self, after: str | None, limit: int) -> FeedPage:
        url = f"{self.url}{FEED_PATH}"
        try:
            served = changes_since(self.store, after, limit=limit, trusted_keys=self.trusted_keys).to_dict()
        except InputError as exc:  # what the endpoint answers with a 400
            raise PeerError(f"{url}: {exc.message}", code=codes.E_PEER_HTTP, url=url) from exc
        return page_from_dict(served, limit=limit, url=url)

    def bundle(self, subject: str, etag: str | None) -> Fetched:
        # A fixed built_at: the same stored sets give the same bytes, hence the same ETag.
        exported = self.store.export_bundle(subject, trusted_keys=self.trusted_keys, built_at=_EPOCH)
        body = canonical_json_parsed(exported)
        tag = f'"{sha256_hex(body)}"'
        url = bundle_url(self.url, subject)
        if tag == etag:
            return Fetched(url, 304, b"", tag, None)
        return Fetched(url, 200, body, tag, "application/json")
