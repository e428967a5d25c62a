"""The HTTP client a mirror fetches from its peers with (httpx).

A peer may be down, slow, broken or hostile, so every request is bounded:

* explicit connect, read, write and pool timeouts, and a deadline for the whole
  answer (a peer trickling one byte per read timeout cannot hold a request open);
* connection-pool limits;
* bounded retries of what a later attempt may cure (connection errors,
  timeouts, a body cut short, ``5xx``, ``429``) with exponential backoff and
  full jitter, honouring ``Retry-After`` up to a cap;
* a maximum body size, enforced while reading: a ``Content-Length`` over it is
  refused before the body is read, and a body (gzip decoded as it arrives, with
  a bound on each step, so a compression bomb cannot expand past the cap) is
  dropped as soon as it grows past it;
* ``Accept-Encoding: gzip`` (identity otherwise; any other coding is refused).

Every failure is a :class:`~pith_graph.errors.PeerError` with a stable code
(:mod:`pith_graph.codes`); httpx's exceptions are converted here and nowhere else.
"""

from __future__ import annotations

import email.utils
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from pith_graph import codes
from pith_graph.canonical import loads
from pith_graph.errors import InputError, PeerError
from pith_graph.mirror._limits import ClientLimits

__all__ = ["USER_AGENT", "ClientLimits", "Fetched", "MirrorClient", "full_jitter", "parse_json"]

USER_AGENT: Final = "pith-graph-mirror/1 (+https://pith.science)"
#: Statuses worth another attempt: the peer is overloaded or failing for now.
_TRANSIENT_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
#: Largest slice the gzip decoder may produce per step (bounds memory per step).
_INFLATE_STEP: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Fetched:
    """One answer: ``status`` 200 (``body`` holds the decoded bytes) or 304 (``body`` empty)."""

    url: str
    status: int
    body: bytes
    etag: str | None
    content_type: str | None

    @property
    def not_modified(self) -> bool:
        """True for a ``304 Not Modified`` answer to a conditional GET."""
        return self.status == 304


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)].

    Jitter spreads the retries of many followers of one peer over time.
    """
    return rng.uniform(0, min(cap, base * 2**attempt))


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class _Body:
    """Collects a body as it streams, decoding gzip, refusing it past ``max_bytes``."""

    def __init__(self, url: str, encoding: str, max_bytes: int) -> None:
        self.url = url
        self.max_bytes = max_bytes
        self.parts: list[bytes] = []
        self.size = 0
        coding = encoding.strip().lower()
        if coding in ("", "identity"):
            self._inflate: Any = None
        elif coding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        else:
            raise PeerError(
                f"{url}: unsupported Content-Encoding {encoding!r}", code=codes.E_PEER_BAD_ANSWER, url=url
            )

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise PeerError(
                f"{self.url}: the answer is larger than {self.max_bytes} bytes",
                code=codes.E_PEER_TOO_LARGE,
                url=self.url,
            )
        self.parts.append(data)

    def feed(self, raw: bytes) -> None:
        if self._inflate is None:
            self._keep(raw)
            return
        pending = raw
        try:
            while pending:
                # max_length bounds each step: a bomb is refused after max_bytes, not after inflating.
                self._keep(self._inflate.decompress(pending, _INFLATE_STEP))
                pending = self._inflate.unconsumed_tail
        except zlib.error as exc:
            raise PeerError(
                f"{self.url}: the gzip body is corrupt ({exc})", code=codes.E_PEER_BAD_ANSWER, url=self.url
            ) from exc

    def finish(self) -> bytes:
        if self._inflate is not None:
            try:
                self._keep(self._inflate.flush())
            except zlib.error as exc:
                raise PeerError(
                    f"{self.url}: the gzip body is corrupt ({exc})",
                    code=codes.E_PEER_BAD_ANSWER,
                    url=self.url,
                ) from exc
            if not self._inflate.eof:
                raise PeerError(
                    f"{self.url}: the gzip body ends early",
                    code=codes.E_PEER_TRUNCATED,
                    url=self.url,
                    transient=True,
                )
        return b"".join(self.parts)


class MirrorClient:
    """GETs against mirror peers, bounded as the module says. Use as a context manager or :meth:`close`.

    ``transport`` (an httpx transport) and ``sleep`` exist for callers that run
    the client in unusual settings; tests use a real server on loopback instead.
    """

    def __init__(
        self,
        limits: ClientLimits | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.limits = limits or ClientLimits()
        lim = self.limits
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http = httpx.Client(
            timeout=httpx.Timeout(
                connect=lim.connect_timeout,
                read=lim.read_timeout,
                write=lim.read_timeout,
                pool=lim.connect_timeout,
            ),
            limits=httpx.Limits(
                max_connections=lim.max_connections, max_keepalive_connections=lim.max_connections
            ),
            follow_redirects=True,
            max_redirects=lim.max_redirects,
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip"},
            transport=transport,
            trust_env=False,  # a mirror talks to the peers it was given, not through an ambient proxy
        )
        #: Attempts made and seconds waited between them (for summaries and tests).
        self.attempts = 0
        self.waited = 0.0

    def __enter__(self) -> MirrorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def get(self, url: str, *, etag: str | None = None, accept: str = "application/json") -> Fetched:
        """GET ``url`` (conditional on ``etag`` when given): a 200 with its body, or a 304.

        Raises :class:`PeerError` once the attempts are spent or at the first
        failure no retry can cure.
        """
        attempt = 0
        while True:
            self.attempts += 1
            try:
                return self._attempt(url, etag, accept)
            except _Retry as retry:
                error, wait = retry.error, retry.wait
            except PeerError as exc:
                if not exc.transient:
                    raise
                error, wait = exc, None
            if attempt >= self.limits.retries:
                raise error
            if wait is None:
                wait = full_jitter(attempt, self.limits.backoff_base, self.limits.backoff_max, self._rng)
            elif wait > self.limits.retry_after_max:
                raise PeerError(
                    f"{error.message} (asks to retry after {wait:.0f} s, over the {self.limits.retry_after_max:.0f} s cap)",
                    code=error.code,
                    url=url,
                    transient=True,
                ) from error
            self.waited += wait
            self._sleep(wait)
            attempt += 1

    def _attempt(self, url: str, etag: str | None, accept: str) -> Fetched:
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        deadline = time.monotonic() + self.limits.total_timeout
        try:
            with self._http.stream("GET", url, headers=headers) as response:
                return self._read(url, response, deadline)
        except httpx.TimeoutException as exc:
            raise PeerError(
                f"{url}: no answer within the timeout ({type(exc).__name__})",
                code=codes.E_PEER_TIMEOUT,
                url=url,
                transient=True,
            ) from exc
        except httpx.ConnectError as exc:
            raise PeerError(
                f"{url}: cannot connect ({_reason(exc)})",
                code=codes.E_PEER_UNREACHABLE,
                url=url,
                transient=True,
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise PeerError(
                f"{url}: the connection broke before the answer was complete ({_reason(exc)})",
                code=codes.E_PEER_TRUNCATED,
                url=url,
                transient=True,
            ) from exc
        except httpx.TooManyRedirects as exc:
            raise PeerError(f"{url}: too many redirects", code=codes.E_PEER_HTTP, url=url) from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise PeerError(
                f"{url}: not a usable http(s) URL ({_reason(exc)})", code=codes.E_USAGE, url=url
            ) from exc
        except httpx.HTTPError as exc:
            raise PeerError(
                f"{url}: {_reason(exc)}", code=codes.E_PEER_UNREACHABLE, url=url, transient=True
            ) from exc

    def _read(self, url: str, response: httpx.Response, deadline: float) -> Fetched:
        status = response.status_code
        etag = response.headers.get("ETag")
        content_type = response.headers.get("Content-Type")
        if status == 304:
            return Fetched(url, status, b"", etag, content_type)
        if status != 200:
            message = f"{url}: HTTP {status}"
            if status in _TRANSIENT_STATUSES:
                error = PeerError(message, code=codes.E_PEER_HTTP, url=url, transient=True)
                raise _Retry(error, _retry_after(response.headers.get("Retry-After")))
            raise PeerError(message, code=codes.E_PEER_HTTP, url=url)
        declared = response.headers.get("Content-Length")
        encoding = response.headers.get("Content-Encoding", "")
        if (
            declared is not None
            and declared.isdigit()
            and not encoding
            and int(declared) > self.limits.max_bytes
        ):
            # Refused before reading: the peer announced more than we accept.
            raise PeerError(
                f"{url}: the answer is {declared} bytes, over the limit of {self.limits.max_bytes}",
                code=codes.E_PEER_TOO_LARGE,
                url=url,
            )
        body = _Body(url, encoding, self.limits.max_bytes)
        for chunk in response.iter_raw():  # as sent: _Body decodes with a bound on each step
            body.feed(chunk)
            if time.monotonic() > deadline:
                raise PeerError(
                    f"{url}: the answer took longer than {self.limits.total_timeout:.0f} s",
                    code=codes.E_PEER_TIMEOUT,
                    url=url,
                    transient=True,
                )
        return Fetched(str(response.url), status, body.finish(), etag, content_type)

    def get_json(self, url: str, *, etag: str | None = None) -> tuple[Fetched, Any]:
        """:meth:`get`, then the strict parse of the body (None for a 304); not JSON is ``peer_bad_answer``."""
        fetched = self.get(url, etag=etag)
        if fetched.not_modified:
            return fetched, None
        return fetched, parse_json(fetched)


def parse_json(fetched: Fetched) -> Any:
    """The strict parse (:func:`pith_graph.canonical.loads`) of an answer; a failure is ``peer_bad_answer``."""
    try:
        return loads(fetched.body)
    except InputError as exc:
        raise PeerError(
            f"{fetched.url}: not a JSON document ({exc.code}: {exc.message})",
            code=codes.E_PEER_BAD_ANSWER,
            url=fetched.url,
        ) from exc


class _Retry(Exception):
    """A transient HTTP status, with the wait its ``Retry-After`` asks for (None: back off)."""

    def __init__(self, error: PeerError, wait: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.wait = wait


def _reason(exc: Exception) -> str:
    """A short, one-line description of an httpx exception."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
