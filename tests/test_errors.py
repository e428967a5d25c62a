"""Errors pickle: helper processes send a PithGraphError itself, and it arrives whole."""

from __future__ import annotations

import pickle

import pytest

from pith_graph import codes
from pith_graph.errors import InputError, PithGraphError, StoreError, TrustError, VerificationError
from pith_graph.report import Problem, Report


class _CallerError(PithGraphError):
    """A subclass with a constructor of its own, as a caller might write."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path}: not usable", code=codes.E_IO)
        self.path = path


@pytest.mark.parametrize(
    "error",
    [
        PithGraphError("something broke"),
        InputError("a.json: duplicate object key 'a'", code=codes.E_DUPLICATE_KEY),
        TrustError("bad key entry"),
        StoreError("the store stayed locked", code=codes.E_STORE_BUSY),
        _CallerError("b.json"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_an_error_round_trips_through_pickle(error: PithGraphError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (copy.code, copy.message, str(copy), copy.args) == (
        error.code,
        error.message,
        str(error),
        error.args,
    )
    assert vars(copy) == vars(error)


def test_a_verification_error_keeps_its_report() -> None:
    report = Report("bundle", "b.json", (Problem(codes.P_BUNDLE_HASH, "bundle_sha256 should be 00"),))
    error = VerificationError(report)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, VerificationError)
    assert copy.report == report
    assert (copy.code, copy.message) == (codes.E_VERIFICATION_FAILED, error.message)
