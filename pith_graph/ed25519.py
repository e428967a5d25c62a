"""The pinned Ed25519 verification rule of merge-v1, and its backends.

Ed25519 libraries disagree on edge cases (ed25519-speccheck: OpenSSL accepts
signatures with small-order keys or R points that libsodium rejects). Mirrors
must agree on which events are valid, so merge-v1 pins one rule, checked here
*before* any backend runs (merge-v1 §3):

1. the public key is 32 bytes and the signature 64 bytes;
2. the public key A is a canonical encoding (its y coordinate is below p);
3. neither A nor the signature's R is a point of small order (any of the 8
   torsion points, in any encoding, sign bit ignored);
4. the scalar S is canonical (S < L);
5. the cofactorless equation [S]B = R + [k]A holds, as computed by the backend.

With 1-4 enforced up front, OpenSSL and libsodium return the same verdict: both
compute 5 cofactorless and compare encodings.

Backends: :class:`NaclBackend` (libsodium through PyNaCl, about twice as fast
here) is the default when PyNaCl is installed, :class:`CryptographyBackend`
(OpenSSL) otherwise. Choose one explicitly with :func:`get_backend` (``"nacl"``,
``"cryptography"`` or ``"auto"``), ``Verifier(backend=...)``, or the
environment variable :data:`BACKEND_ENV_VAR`.
"""

from __future__ import annotations

import functools
import os
from typing import Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pith_graph import codes
from pith_graph.errors import InputError

try:  # optional: the ``fast`` extra
    import nacl.exceptions as _nacl_exceptions
    import nacl.signing as _nacl_signing

    HAVE_NACL = True
except ImportError:  # pragma: no cover - exercised in a subprocess (tests/test_ed25519.py)
    HAVE_NACL = False

__all__ = [
    "BACKEND_ENV_VAR",
    "BACKEND_NAMES",
    "Backend",
    "HAVE_NACL",
    "CryptographyBackend",
    "NaclBackend",
    "SignatureCache",
    "Verifier",
    "available_backends",
    "get_backend",
    "passes_pinned_prechecks",
    "verify",
]

_P: Final = 2**255 - 19
_L: Final = 2**252 + 27742317777372353535851937790883648493
_Y_MASK: Final = (1 << 255) - 1
# y coordinates (mod p) of the 8 small-order points of edwards25519: the
# identity (1), the point of order 2 (p-1), the two of order 4 (0) and the four of
# order 8 (two y values, each with both signs of x). Checked against a
# pure-Python curve in tests/test_ed25519.py.
_Y_ORDER_8: Final = 2707385501144840649318225287225658788936804267575313519463743609750303402022
SMALL_ORDER_Y: Final = frozenset({0, 1, _P - 1, _Y_ORDER_8, _P - _Y_ORDER_8})


def _y(encoding: bytes) -> int:
    return int.from_bytes(encoding, "little") & _Y_MASK


def _small_order_encodings() -> frozenset[bytes]:
    """Every 32-byte string that encodes a small-order point: y or y + p (where that
    still fits in 255 bits), with either sign bit."""
    found = set()
    for y in SMALL_ORDER_Y:
        for value in (y, y + _P):
            if value < 2**255:
                for sign in (0, 1 << 255):
                    found.add((value | sign).to_bytes(32, "little"))
    return frozenset(found)


#: The encodings rule 3 refuses, so the per-signature check of R is one set lookup.
SMALL_ORDER_ENCODINGS: Final = _small_order_encodings()
#: Top byte of L (little-endian): S with a smaller top byte is below L, with a larger one above.
_L_TOP: Final = _L >> 248


def is_small_order(encoding: bytes) -> bool:
    """True if a 32-byte point encoding names a small-order point (any encoding)."""
    return _y(encoding) % _P in SMALL_ORDER_Y


def _key_passes(public_key: bytes) -> bool:
    """Rules 1-3 for the public key (once per key: :class:`Verifier` remembers the answer)."""
    # rule 2: non-canonical A; rule 3: small-order A.
    return len(public_key) == 32 and _y(public_key) < _P and not is_small_order(public_key)


def _signature_passes(signature: bytes) -> bool:
    """Rules 1, 3 and 4 for the signature: 64 bytes, R not small order, S < L."""
    if len(signature) != 64 or signature[:32] in SMALL_ORDER_ENCODINGS:
        return False
    top = signature[63]
    if top != _L_TOP:  # decided by the top byte alone (the common case: S is far below L)
        return top < _L_TOP
    return int.from_bytes(signature[32:], "little") < _L  # rule 4


def passes_pinned_prechecks(public_key: bytes, signature: bytes) -> bool:
    """Rules 1-4 of the pinned rule (everything but the curve equation)."""
    return _key_passes(public_key) and _signature_passes(signature)


class Backend(Protocol):
    """A library that checks the cofactorless Ed25519 equation (rule 5)."""

    name: str

    def load(self, public_key: bytes) -> object:
        """Prepare a public key for repeated use (called once per trusted key)."""

    def verify(self, loaded_key: object, signature: bytes, message: bytes) -> bool:
        """Return whether ``signature`` is valid for ``message`` under the loaded key."""


class CryptographyBackend:
    """OpenSSL through ``cryptography``: always available."""

    name = "cryptography"

    def load(self, public_key: bytes) -> object:
        """Return an ``Ed25519PublicKey`` for the raw key."""
        return Ed25519PublicKey.from_public_bytes(public_key)

    def verify(self, loaded_key: object, signature: bytes, message: bytes) -> bool:
        """Check rule 5 with OpenSSL."""
        assert isinstance(loaded_key, Ed25519PublicKey)
        try:
            loaded_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class NaclBackend:
    """libsodium through PyNaCl: the fast backend (the ``fast`` extra)."""

    name = "nacl"

    def __init__(self) -> None:
        if not HAVE_NACL:
            raise InputError(
                "the nacl Ed25519 backend needs PyNaCl (pip install pith_graph[fast])",
                code=codes.E_UNKNOWN_BACKEND,
            )

    def load(self, public_key: bytes) -> object:
        """Return a ``nacl.signing.VerifyKey`` for the raw key."""
        return _nacl_signing.VerifyKey(public_key)

    def verify(self, loaded_key: object, signature: bytes, message: bytes) -> bool:
        """Check rule 5 with libsodium (its stricter checks are implied by rules 2-4)."""
        assert isinstance(loaded_key, _nacl_signing.VerifyKey)
        try:
            loaded_key.verify(message, signature)
        except _nacl_exceptions.BadSignatureError:
            return False
        return True


#: Environment variable naming the default backend (``auto`` when unset).
BACKEND_ENV_VAR: Final = "PITH_GRAPH_ED25519_BACKEND"
#: Names :func:`get_backend` accepts.
BACKEND_NAMES: Final = ("auto", "nacl", "cryptography")


def available_backends() -> list[str]:
    """Names of the backends usable in this environment, fastest first."""
    return (["nacl"] if HAVE_NACL else []) + ["cryptography"]


#: One instance per backend (they hold no state).
_BACKENDS: Final[dict[str, Backend]] = {}


def get_backend(name: str | None = None) -> Backend:
    """The backend called ``name`` (``"nacl"``, ``"cryptography"`` or ``"auto"``).

    ``None`` reads :data:`BACKEND_ENV_VAR` (default ``"auto"``); ``"auto"`` is
    PyNaCl when installed, ``cryptography`` otherwise. All backends give the same
    verdicts: the pinned rule's checks 1-4 run before any of them. Raises
    :class:`~pith_graph.errors.InputError` (code ``unknown_ed25519_backend``) for
    an unknown name or a backend whose library is missing.
    """
    chosen = (name if name is not None else os.environ.get(BACKEND_ENV_VAR) or "auto").strip().lower()
    if chosen == "auto":
        chosen = available_backends()[0]
    known = _BACKENDS.get(chosen)
    if known is not None:
        return known
    if chosen == "nacl":
        return _BACKENDS.setdefault(chosen, NaclBackend())
    if chosen == "cryptography":
        return _BACKENDS.setdefault(chosen, CryptographyBackend())
    raise InputError(
        f"unknown Ed25519 backend {chosen!r} (choose one of {', '.join(BACKEND_NAMES)})",
        code=codes.E_UNKNOWN_BACKEND,
    )


def verify(public_key: bytes, signature: bytes, message: bytes, *, backend: Backend | None = None) -> bool:
    """Verify one signature under the pinned merge-v1 rule (all five rules)."""
    if not passes_pinned_prechecks(public_key, signature):
        return False
    chosen = backend or get_backend()
    return chosen.verify(chosen.load(public_key), signature, message)


class SignatureCache(Protocol):
    """Remembers verdicts of the pinned rule (rule 5 included).

    Content-addressed and therefore safe to share: a verdict depends only on
    (public key, signature, message).
    """

    def lookup(self, public_key: bytes, signature: bytes, message: bytes) -> bool | None:
        """The remembered verdict, or None if unknown."""

    def record(self, public_key: bytes, signature: bytes, message: bytes, valid: bool) -> None:
        """Remember a verdict."""


@functools.lru_cache(maxsize=1024)
def _loaded_key(backend_name: str, public_key: bytes) -> object:
    """The named backend's loaded key (one that passed rules 1-3), remembered across
    verifiers: a mirror's bundles each get one, and are signed by the same few keys."""
    return get_backend(backend_name).load(public_key)


class Verifier:
    """Verifies signatures under the pinned rule with one backend.

    Loads each public key once, and consults an optional :class:`SignatureCache`
    (the event store's warm path) before running the curve equation.
    """

    __slots__ = ("_loaded", "backend", "cache")

    def __init__(self, backend: Backend | str | None = None, cache: SignatureCache | None = None) -> None:
        # A name goes through get_backend; None means the process default (env var, then auto).
        if backend is None or isinstance(backend, str):
            backend = get_backend(backend)
        self.backend: Backend = backend
        self.cache = cache
        # Per public key: the backend's loaded key, or None when the key fails rules 1-3.
        self._loaded: dict[bytes, object | None] = {}

    def _load(self, public_key: bytes) -> object | None:
        backend = self.backend
        if not _key_passes(public_key):
            loaded = None
        elif type(backend) in (NaclBackend, CryptographyBackend):  # stateless: shared across verifiers
            loaded = _loaded_key(backend.name, public_key)
        else:
            loaded = backend.load(public_key)
        self._loaded[public_key] = loaded
        return loaded

    def verify(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        """Verify under the pinned rule (see the module docstring)."""
        loaded = self._loaded[public_key] if public_key in self._loaded else self._load(public_key)
        if loaded is None or not _signature_passes(signature):
            return False
        cache = self.cache
        if cache is not None:
            known = cache.lookup(public_key, signature, message)
            if known is not None:
                return known
        valid = self.backend.verify(loaded, signature, message)
        if cache is not None:
            cache.record(public_key, signature, message, valid)
        return valid
