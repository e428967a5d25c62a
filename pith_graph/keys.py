"""Trusted keys: who may sign what pith_graph accepts.

Trust always comes from the caller. A bundle lists public keys, but a bundle
never vouches for itself: its keys are used only if the caller says so
(``trust_bundle_keys=True``) or lists them. The default ring trusts only the
pinned registry key ``pith-v1-2026-05`` (FORMAT-FACTS: "Signatures").
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pith_graph import codes, ed25519
from pith_graph.documents import read_json
from pith_graph.errors import InputError, TrustError
from pith_graph.identifiers import fingerprint_b32, fingerprint_hex
from pith_graph.timestamps import Instant, parse_timestamp

__all__ = [
    "REGISTRY_KEY_ID",
    "REGISTRY_PUBLIC_KEY_HEX",
    "KeyRing",
    "TrustedKey",
    "TrustedKeys",
    "coerce_ring",
    "reusable_keys",
]

REGISTRY_KEY_ID: Final = "pith-v1-2026-05"
REGISTRY_PUBLIC_KEY_HEX: Final = "b2d552b68890857171a78b36a5dccf368a953413288c353f7c9d9d6f94b709b3"
REGISTRY_FINGERPRINT_HEX: Final = "8d4b5ee74e4693bcd1df2446408b0d54"
#: The signer_id the registry signs as (every registry event in the seed documents).
REGISTRY_SIGNER_ID: Final = "pith.science"


def _decode_key_material(entry: Mapping[str, Any], key_id: str) -> bytes:
    raw_b64, raw_hex = entry.get("public_key_b64"), entry.get("public_key_hex")
    decoded: list[bytes] = []
    try:
        if raw_b64 is not None:
            if not isinstance(raw_b64, str):
                raise TypeError("public_key_b64 must be a string")
            decoded.append(base64.b64decode(raw_b64, validate=True))
        if raw_hex is not None:
            if not isinstance(raw_hex, str):
                raise TypeError("public_key_hex must be a string")
            decoded.append(bytes.fromhex(raw_hex))
    except (TypeError, ValueError, binascii.Error) as exc:
        raise TrustError(f"key {key_id!r}: unreadable public key ({exc})") from exc
    if not decoded:
        raise TrustError(f"key {key_id!r}: needs public_key_b64 or public_key_hex")
    if len(decoded) == 2 and decoded[0] != decoded[1]:
        raise TrustError(f"key {key_id!r}: public_key_b64 and public_key_hex disagree")
    if len(decoded[0]) != 32:
        raise TrustError(f"key {key_id!r}: an Ed25519 public key is 32 bytes, got {len(decoded[0])}")
    return decoded[0]


@dataclass(frozen=True)
class TrustedKey:
    """One trusted Ed25519 public key.

    ``rotates_at`` (RFC 3339 UTC, or None): the key signs nothing created at or
    after that instant (merge-v1 §4: such an event is ``unknown_key``).
    ``signer_id`` (or None): the only ``signer.signer_id`` the key may sign as
    (merge-v1 §4: otherwise ``key_mismatch``). Streams are named by signer_id, so an
    unbound key can write into any signer's stream; bind every key you trust
    alongside others.
    """

    key_id: str
    public_key: bytes
    rotates_at: str | None = None
    signer_id: str | None = None
    #: Trusted only because a bundle (or a store) lists it (``trust_bundle_keys``):
    #: such a key never creates records (merge-v1 §6 check 10).
    listed: bool = False
    fingerprint_hex: str = field(init=False)
    fingerprint_b32: str = field(init=False)
    rotates_at_instant: Instant | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.public_key) != 32:
            raise TrustError(f"key {self.key_id!r}: an Ed25519 public key is 32 bytes")
        instant = None
        if self.rotates_at is not None:
            instant = parse_timestamp(self.rotates_at) if isinstance(self.rotates_at, str) else None
            if instant is None:
                raise TrustError(f"key {self.key_id!r}: rotates_at must be an RFC 3339 UTC time or null")
        object.__setattr__(self, "rotates_at_instant", instant)
        object.__setattr__(self, "fingerprint_hex", fingerprint_hex(self.public_key))
        object.__setattr__(self, "fingerprint_b32", fingerprint_b32(self.public_key))

    @property
    def creates_records(self) -> bool:
        """merge-v1 §6 check 10: whether the key may sign a record_created and its receipt.

        Only a key the caller trusts (never one a bundle lists) that may sign as the
        registry's signer id: bound to ``pith.science``, or unbound (section 4: an
        unbound key signs as anyone, by the caller's choice).
        """
        return not self.listed and self.signs_as(REGISTRY_SIGNER_ID)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any], *, listed: bool = False) -> TrustedKey:
        """Build a key from a bundle-style ``public_keys`` item.

        Accepts ``public_key_b64`` and/or ``public_key_hex`` (which must agree);
        any fingerprint or algorithm the entry states must match the key.
        """
        if cls is TrustedKey and type(entry) is dict:
            items = tuple((name, type(value), value) for name, value in entry.items())
            if all(kind in _SCALARS for _, kind, _ in items):
                # The bundles of a mirror list the same few keys: each entry is read once
                # (a TrustedKey is immutable, so the same one can be handed out again).
                return _cached_entry(items, listed)
        return cls._from_entry(entry, listed=listed)

    @classmethod
    def _from_entry(cls, entry: Mapping[str, Any], *, listed: bool = False) -> TrustedKey:
        if not isinstance(entry, Mapping):
            raise TrustError("a key entry must be a JSON object")
        key_id = entry.get("key_id")
        if not isinstance(key_id, str) or not key_id:
            raise TrustError("a key entry needs a non-empty string key_id")
        algorithm = entry.get("algorithm", "ed25519")
        if algorithm != "ed25519":
            raise TrustError(f"key {key_id!r}: unsupported algorithm {algorithm!r}")
        signer_id = entry.get("signer_id")
        if signer_id is not None and (not isinstance(signer_id, str) or not signer_id):
            raise TrustError(f"key {key_id!r}: signer_id must be a non-empty string or null")
        key = cls(key_id, _decode_key_material(entry, key_id), entry.get("rotates_at"), signer_id, listed)
        for name, expected in (
            ("fingerprint_sha256_hex", key.fingerprint_hex),
            ("fingerprint_sha256_b32_first128bits", key.fingerprint_b32),
        ):
            stated = entry.get(name)
            if stated is not None and stated != expected:
                raise TrustError(f"key {key_id!r}: {name} {stated!r} does not match the key ({expected})")
        return key

    def signs_as(self, signer_id: str) -> bool:
        """Whether the key may sign as ``signer_id`` (always, when the key is unbound)."""
        return self.signer_id is None or self.signer_id == signer_id

    def signs_at(self, instant: Instant) -> bool:
        """Whether the key may sign something created at ``instant`` (before ``rotates_at``)."""
        return self.rotates_at_instant is None or instant < self.rotates_at_instant

    def to_entry(self) -> dict[str, Any]:
        """This key as a bundle-style ``public_keys`` item."""
        return {
            "key_id": self.key_id,
            "algorithm": "ed25519",
            "format": "raw",
            "public_key_b64": base64.b64encode(self.public_key).decode("ascii"),
            "public_key_hex": self.public_key.hex(),
            "fingerprint_sha256_b32_first128bits": self.fingerprint_b32,
            "fingerprint_sha256_hex": self.fingerprint_hex,
            "rotates_at": self.rotates_at,
            "signer_id": self.signer_id,
        }

    def verify(self, signature: bytes, message: bytes, *, backend: ed25519.Backend | None = None) -> bool:
        """Verify ``signature`` over ``message`` under the pinned merge-v1 rule."""
        return ed25519.verify(self.public_key, signature, message, backend=backend)


#: Value types of a key entry that can be part of a cache key (the type is part of it
#: too: ``True == 1``).
_SCALARS: Final = frozenset({str, int, bool, type(None)})


@functools.lru_cache(maxsize=256)
def _cached_entry(items: tuple[tuple[str, type, Any], ...], listed: bool) -> TrustedKey:
    """:meth:`TrustedKey.from_entry` of an entry of scalars, remembered (errors are not: they raise again)."""
    return TrustedKey._from_entry({name: value for name, _, value in items}, listed=listed)


class KeyRing:
    """An immutable set of trusted keys, looked up by ``key_id``."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        found: dict[str, TrustedKey] = {}
        for key in keys:
            known = found.get(key.key_id)
            if known is not None and known != key:
                raise TrustError(f"two different keys are both named {key.key_id!r}")
            found[key.key_id] = key
        self._keys = dict(sorted(found.items()))

    @classmethod
    def registry(cls) -> KeyRing:
        """The default ring: only the pinned registry key ``pith-v1-2026-05``, bound to ``pith.science``."""
        return cls(
            [
                TrustedKey(
                    REGISTRY_KEY_ID, bytes.fromhex(REGISTRY_PUBLIC_KEY_HEX), signer_id=REGISTRY_SIGNER_ID
                )
            ]
        )

    @classmethod
    def from_entries(cls, entries: Iterable[Mapping[str, Any]], *, listed: bool = False) -> KeyRing:
        """A ring from bundle-style ``public_keys`` items (``listed``: keys a bundle or store
        lists, trusted only because the caller passed ``trust_bundle_keys``)."""
        return cls(TrustedKey.from_entry(entry, listed=listed) for entry in entries)

    def describe(self) -> list[Any]:
        """Everything a stage-1 verdict reads from the ring: each key's entry and whether it is listed."""
        return [[key.to_entry(), key.listed] for key in self]

    @classmethod
    def from_json(cls, source: bytes | str | os.PathLike[str]) -> KeyRing:
        """A ring from a JSON array of key entries (the CLI's ``--trusted-keys`` file).

        ``source`` is read by the rule of :func:`pith_graph.documents.read_json`:
        bytes are JSON text, a path is a file (a ``str`` starting with ``[`` is JSON text).
        """
        try:
            entries = read_json(source)
        except InputError as exc:
            raise TrustError(f"trusted keys: {exc.message}", code=exc.code) from exc
        if not isinstance(entries, list):
            raise TrustError("trusted keys must be a JSON array of key entries")
        return cls.from_entries(entries)

    def union(self, other: KeyRing) -> KeyRing:
        """A ring trusting the keys of both.

        Where both name the same key material under one key id, this ring's entry
        (with its ``signer_id`` binding and ``rotates_at``) is kept: the caller's
        own trust is never loosened by a listed copy. Different material under one
        key id raises :class:`TrustError`.
        """
        merged = dict(self._keys)
        for key in other:
            known = merged.get(key.key_id)
            if known is None:
                merged[key.key_id] = key
            elif known.public_key != key.public_key:
                raise TrustError(f"two different keys are both named {key.key_id!r}")
        return KeyRing(merged.values())

    def get(self, key_id: str) -> TrustedKey | None:
        """The key named ``key_id``, or None."""
        return self._keys.get(key_id)

    def to_entries(self) -> list[dict[str, Any]]:
        """Every key as a bundle-style entry, sorted by key id."""
        return [key.to_entry() for key in self]

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyRing) and self._keys == other._keys

    def __hash__(self) -> int:
        return hash(tuple(self._keys.values()))

    def __repr__(self) -> str:
        return f"KeyRing({list(self._keys)!r})"


#: What every ``trusted_keys=`` argument accepts: a ring, key entries (JSON objects or
#: :class:`TrustedKey`), a key file or its JSON text (:meth:`KeyRing.from_json`: bytes
#: are JSON text, a path is a file), or None for the registry key alone.
TrustedKeys = KeyRing | Iterable[Mapping[str, Any] | TrustedKey] | bytes | str | os.PathLike[str] | None

_KEY_TEXT: Final = (bytes, bytearray, memoryview, str, os.PathLike)


def coerce_ring(trusted_keys: TrustedKeys) -> KeyRing:
    """Turn the public ``trusted_keys=`` argument into a ring (None: the registry ring).

    Raises :class:`~pith_graph.errors.TrustError` (``bad_key``) for an unusable
    entry, or for something that is neither a ring nor an iterable of entries.
    """
    if trusted_keys is None:
        return KeyRing.registry()
    if isinstance(trusted_keys, KeyRing):
        return trusted_keys
    if isinstance(trusted_keys, _KEY_TEXT):
        return KeyRing.from_json(
            bytes(trusted_keys) if isinstance(trusted_keys, (bytearray, memoryview)) else trusted_keys
        )
    try:
        items = iter(trusted_keys)
    except TypeError as exc:
        raise TrustError(
            f"trusted_keys must be a KeyRing or an iterable of key entries, not {type(trusted_keys).__name__}",
            code=codes.E_BAD_KEY,
        ) from exc
    return KeyRing(item if isinstance(item, TrustedKey) else TrustedKey.from_entry(item) for item in items)


def reusable_keys(trusted_keys: TrustedKeys) -> TrustedKeys:
    """``trusted_keys`` in a form that can be read more than once: a one-shot iterable
    (a generator, ``iter(entries)``) is read into a tuple, its entries unchecked.

    A rebuild may read the caller's keys twice (its helpers' pre-pass, then the
    strict path; or the streaming path, then the full one): read a second time, a
    spent iterator would trust no key at all.
    """
    if trusted_keys is None or isinstance(trusted_keys, (KeyRing, list, tuple, *_KEY_TEXT)):
        return trusted_keys
    try:
        items = iter(trusted_keys)
    except TypeError:
        return trusted_keys  # not iterable: coerce_ring says so
    return tuple(items)  # what the caller's own iterator raises is the caller's to see
