"""The pith_graph error hierarchy.

Every exception pith_graph raises derives from :class:`PithGraphError`, carries a
stable machine-readable ``code`` (see :mod:`pith_graph.codes`) and a one-line,
user-facing ``message``. Third-party exceptions (json, msgspec, cryptography,
sqlite3) are converted into these where they arise, so callers only ever need to
catch ``PithGraphError``.

Groups:

* :class:`InputError` -- the bytes handed to us are not a usable document
  (unreadable, not JSON, hostile JSON, not a Pith document, wrong shape).
* :class:`TrustError` -- a key ring or key entry is unusable.
* :class:`VerificationError` -- a document was read but failed verification;
  carries the full report.
* :class:`StoreError` -- the event store could not do what was asked.
* :class:`PeerError` -- a mirror peer gave no usable answer (issue 17).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pith_graph import codes

if TYPE_CHECKING:  # pragma: no cover - typing only
    from pith_graph.report import Report

__all__ = [
    "InputError",
    "PeerError",
    "PithGraphError",
    "StoreError",
    "TrustError",
    "VerificationError",
    "about",
]


class PithGraphError(Exception):
    """Base of every error raised by pith_graph.

    ``code`` is a stable identifier from :mod:`pith_graph.codes`; ``message`` is a
    single human-readable line, safe to print to a user.
    """

    default_code = codes.E_INTERNAL

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def naming(self, source: str) -> PithGraphError:
        """This error, its message about ``source`` (a file name): see :func:`about`."""
        self.message = about(source, self.message)
        self.args = (self.message,)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by state, not by constructor arguments (subclasses take other ones),
        # so helper processes send the error itself.
        return (_restore, (type(self), self.message), self.__dict__)


def about(source: str, message: str) -> str:
    """``message`` as said about the file ``source``: ``SOURCE: message``, the one format of an
    error line (docs/cli.md, Errors), so that the name is where a reader or a script looks.

    A message that names the file inside (``cannot read data.json: No such file``, as the
    reading functions say it, the file name being theirs to give) has it moved to the front
    rather than said twice: ``data.json: cannot read: No such file``.
    """
    if not source or message.startswith(f"{source}: "):
        return message
    if message.startswith(f"{source} "):  # "data.json is larger than ..."
        return f"{source}: {message[len(source) + 1 :]}"
    inside = message.find(f" {source}: ")
    if inside >= 0:
        return f"{source}: {message[:inside]}: {message[inside + len(source) + 3 :]}"
    return f"{source}: {message}"


def _restore(cls: type[PithGraphError], message: str) -> PithGraphError:
    """An error of class ``cls`` without running its constructor (its state follows)."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


class InputError(PithGraphError):
    """The input is not a usable document (I/O, JSON syntax, hostile JSON, shape)."""

    default_code = codes.E_NOT_JSON


class TrustError(PithGraphError):
    """A trusted-key entry or key ring is unusable."""

    default_code = codes.E_BAD_KEY


class VerificationError(PithGraphError):
    """A document was read but did not verify; ``report`` lists every problem."""

    default_code = codes.E_VERIFICATION_FAILED

    def __init__(self, report: Report) -> None:
        first = report.problems[0].message if report.problems else "verification failed"
        super().__init__(
            f"{report.kind} failed verification ({len(report.problems)} problem(s)); first: {first}"
        )
        self.report = report


class StoreError(PithGraphError):
    """The event store could not complete an operation."""

    default_code = codes.E_STORE


class PeerError(PithGraphError):
    """A mirror peer did not give a usable answer (unreachable, slow, oversized, garbage).

    ``transient`` is True for what a later attempt may cure (connection errors,
    timeouts, ``5xx``, ``429``); ``url`` names what was asked for.
    """

    default_code = codes.E_PEER_HTTP

    def __init__(
        self, message: str, *, code: str | None = None, url: str = "", transient: bool = False
    ) -> None:
        super().__init__(message, code=code)
        self.url = url
        self.transient = transient
