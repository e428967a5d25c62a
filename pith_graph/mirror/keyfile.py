"""A mirror's own Ed25519 key: the file that holds it, and ``pith-graph keygen``.

A mirror signs the bundles it exports (``bundle_signature``, FORMAT-FACTS:
"Signatures") so that a reader can tell which mirror served a copy. The
signature says *who served it*, never that it is right: readers recompute every
state (merge-v1: a bundle never vouches for itself, and neither does its mirror).

The key file is JSON (mode 0600)::

    {"key_type": "pith_mirror_key", "key_version": "1.0", "key_id": "...",
     "signer_id": "...", "algorithm": "ed25519", "private_key_b64": "<32-byte seed>",
     "public_key_b64": "...", "created_at": "..."}

``public_key_b64`` is checked against the seed when the file is read.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from pith_graph import codes
from pith_graph.canonical import loads
from pith_graph.errors import InputError, TrustError
from pith_graph.keys import TrustedKey

__all__ = ["KEY_TYPE", "MirrorKey", "generate_key_file"]

KEY_TYPE: Final = "pith_mirror_key"
KEY_VERSION: Final = "1.0"
_FIELDS: Final = (
    "key_type",
    "key_version",
    "key_id",
    "signer_id",
    "algorithm",
    "private_key_b64",
    "public_key_b64",
)


class MirrorKey:
    """A mirror's signing key (a :class:`pith_graph.store.BundleSigner`)."""

    __slots__ = ("fingerprint", "key_id", "private_key", "public_key", "signer_id")

    def __init__(self, key_id: str, signer_id: str, private_key: Ed25519PrivateKey) -> None:
        self.key_id = key_id
        self.signer_id = signer_id
        self.private_key = private_key
        #: The raw 32-byte public key.
        self.public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        #: ``fingerprint_sha256_hex`` of the public key.
        self.fingerprint = TrustedKey(key_id or "-", self.public_key).fingerprint_hex

    def trusted_key(self) -> TrustedKey:
        """The public half, bound to the mirror's signer id."""
        return TrustedKey(self.key_id, self.public_key, signer_id=self.signer_id)

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``message``."""
        return self.private_key.sign(message)

    def public_entry(self, *, url: str | None = None) -> dict[str, Any]:
        """The public key entry in the registry's shape (``/pith-signing-key.json``)."""
        entry = self.trusted_key().to_entry()
        if url is not None:
            entry["url"] = url
        entry["notes"] = (
            "This mirror signs the bundles it exports with this Ed25519 key (message: bundle_sha256 bytes). "
            "The signature names the mirror that served a bundle; it does not make the bundle trusted: "
            "recompute the state."
        )
        return entry

    @classmethod
    def generate(cls, *, key_id: str, signer_id: str) -> MirrorKey:
        """A fresh random key."""
        return cls(key_id, signer_id, Ed25519PrivateKey.generate())

    def to_file_json(self) -> bytes:
        """The key file's bytes."""
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        document = {
            "key_type": KEY_TYPE,
            "key_version": KEY_VERSION,
            "key_id": self.key_id,
            "signer_id": self.signer_id,
            "algorithm": "ed25519",
            "private_key_b64": base64.b64encode(seed).decode("ascii"),
            "public_key_b64": base64.b64encode(self.public_key).decode("ascii"),
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return json.dumps(document, indent=2).encode("utf-8") + b"\n"

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> MirrorKey:
        """Read a key file; :class:`TrustError` (``bad_key``) when it is not a usable mirror key."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputError(
                f"cannot read mirror key {path}: {exc.strerror or exc}", code=codes.E_IO
            ) from exc
        try:
            document = loads(data)
        except InputError as exc:
            raise TrustError(f"mirror key {path}: {exc.message}") from exc
        if not isinstance(document, dict) or document.get("key_type") != KEY_TYPE:
            raise TrustError(f"mirror key {path}: not a {KEY_TYPE} file (make one with `pith-graph keygen`)")
        missing = [name for name in _FIELDS if not isinstance(document.get(name), str) or not document[name]]
        if missing:
            raise TrustError(f"mirror key {path}: missing or empty {', '.join(missing)}")
        if document["algorithm"] != "ed25519":
            raise TrustError(f"mirror key {path}: unsupported algorithm {document['algorithm']!r}")
        try:
            seed = base64.b64decode(document["private_key_b64"], validate=True)
            stated = base64.b64decode(document["public_key_b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TrustError(f"mirror key {path}: unreadable base64 ({exc})") from exc
        if len(seed) != 32:
            raise TrustError(f"mirror key {path}: private_key_b64 must hold 32 bytes, got {len(seed)}")
        key = cls(document["key_id"], document["signer_id"], Ed25519PrivateKey.from_private_bytes(seed))
        if key.public_key != stated:
            raise TrustError(f"mirror key {path}: public_key_b64 does not belong to the private key")
        return key


def generate_key_file(path: str | os.PathLike[str], *, key_id: str | None, signer_id: str) -> MirrorKey:
    """Write a fresh key to ``path`` (mode 0600; an existing file is never overwritten).

    ``key_id`` None: ``mirror-`` + the first 12 characters of the key's fingerprint.
    """
    key = MirrorKey.generate(key_id="", signer_id=signer_id)
    if not key_id:
        key_id = "mirror-" + key.fingerprint[:12]
    key = MirrorKey(key_id, signer_id, key.private_key)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise InputError(f"{path} exists already: a key file is never overwritten", code=codes.E_IO) from exc
    except OSError as exc:
        raise InputError(f"cannot create {path}: {exc.strerror or exc}", code=codes.E_IO) from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.to_file_json())
        handle.flush()
        os.fsync(handle.fileno())
    return key
