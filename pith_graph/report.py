"""Verification results: a :class:`Report` of :class:`Problem` items.

Verification returns a result object rather than raising (python-tuf style);
:meth:`Report.raise_for_problems` is the thin raising wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pith_graph.errors import PithGraphError, VerificationError

__all__ = ["Problem", "Report", "Severity"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: a stable ``code`` (:mod:`pith_graph.codes`), a message, and where."""

    code: str
    message: str
    where: str | None = None
    severity: Severity = "error"
    #: For an ``invalid_event`` problem: the merge-v1 reason code (:data:`pith_graph.codes.REASONS`).
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (docs/cli.md, "problem")."""
        return {
            "code": self.code,
            "message": self.message,
            "where": self.where,
            "severity": self.severity,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        place = f" [{self.where}]" if self.where else ""
        return f"{self.severity}: {self.code}{place}: {self.message}"


@dataclass(frozen=True, slots=True)
class Report:
    """The verification of one document.

    ``ok`` is True when no problem has severity ``error`` (warnings, such as an
    unsigned bundle, do not fail verification). ``facts`` holds what was
    established on the way (Pith Number, counts, hashes), for display.
    ``usable`` is False when the document could not be read as the kind it was
    verified as (unreadable, not JSON, too large, wrong shape): the only problem
    then carries the error code (an ``E_*`` code of :mod:`pith_graph.codes`).
    """

    kind: str
    source: str
    problems: tuple[Problem, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)
    usable: bool = True

    @classmethod
    def unusable(cls, kind: str, source: str, error: PithGraphError) -> Report:
        """The report of a document that could not be read: one problem carrying ``error``'s code."""
        return cls(kind, source, (Problem(error.code, error.message),), {}, usable=False)

    @property
    def ok(self) -> bool:
        """True when no problem is an error."""
        return not any(p.severity == "error" for p in self.problems)

    @property
    def errors(self) -> tuple[Problem, ...]:
        """The problems of severity ``error``."""
        return tuple(p for p in self.problems if p.severity == "error")

    def raise_for_problems(self) -> Report:
        """Raise :class:`~pith_graph.errors.VerificationError` unless ``ok``; return self."""
        if not self.ok:
            raise VerificationError(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (docs/cli.md, "report")."""
        return {
            "kind": self.kind,
            "source": self.source,
            "ok": self.ok,
            "usable": self.usable,
            "problems": [p.to_dict() for p in self.problems],
            "facts": self.facts,
        }
