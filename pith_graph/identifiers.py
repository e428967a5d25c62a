"""Pith Numbers, their short forms and aliases, and key fingerprints.

Every rule here is verified against the registry's documents (FORMAT-FACTS:
"Hashes and identifiers").
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

from pith_graph import codes
from pith_graph.canonical import canonical_json, sha256_hex
from pith_graph.errors import InputError

__all__ = [
    "PITH_NUMBER_RE",
    "derived_aliases",
    "fingerprint_b32",
    "fingerprint_hex",
    "pith_code",
    "pith_number",
    "short_pith_number",
]

#: ``pith:YEAR:`` + 26 characters of RFC 4648 base32.
PITH_NUMBER_RE: Final = re.compile(r"pith:([0-9]{4}):([A-Z2-7]{26})")
_YEAR_RE: Final = re.compile(r"([0-9]{4})-")


@functools.lru_cache(maxsize=1024)
def _b32(digest: bytes) -> str:
    # Cached: a bundle's checks derive the same record's code and its keys' fingerprints
    # several times, and the standard library's base32 is written in Python.
    return base64.b32encode(digest).decode("ascii")


def pith_code(
    canonical_record: Mapping[str, Any], *, digest: bytes | bytearray | memoryview | None = None
) -> str:
    """The 26-character code of a record: base32 of sha256(canonical(record)), cut to 26.

    ``digest`` (the 32 raw bytes of that sha256) may be passed when already known.
    """
    if digest is None:
        digest = hashlib.sha256(canonical_json(canonical_record)).digest()
    return _b32(bytes(digest))[:26]  # a caller's bytearray or memoryview too (the cache needs bytes)


def _submitted_year(canonical_record: Mapping[str, Any]) -> str:
    metadata = canonical_record.get("metadata")
    submitted = metadata.get("submitted_at") if isinstance(metadata, Mapping) else None
    match = _YEAR_RE.match(submitted) if isinstance(submitted, str) else None
    if match is None:
        raise InputError(
            "canonical_record.metadata.submitted_at is missing or not a date", code=codes.E_SHAPE
        )
    return match.group(1)


def pith_number(canonical_record: Mapping[str, Any], *, digest: bytes | None = None) -> str:
    """Return ``pith:YEAR:CODE`` for a canonical record.

    YEAR is the year of ``metadata.submitted_at`` (not of the arXiv id: a paper
    submitted on 30 December may carry the next month's id); CODE is
    :func:`pith_code` (``digest`` as there).
    """
    return f"pith:{_submitted_year(canonical_record)}:{pith_code(canonical_record, digest=digest)}"


def short_pith_number(number: str) -> str:
    """``pith:`` + the first 8 characters of the code of a full Pith Number."""
    match = PITH_NUMBER_RE.fullmatch(number)
    if match is None:
        raise InputError(f"not a Pith Number: {number!r}", code=codes.E_SHAPE)
    return f"pith:{match.group(2)[:8]}"


def derived_aliases(
    canonical_record: Mapping[str, Any], *, digest: bytes | None = None
) -> list[tuple[str, str]]:
    """The six aliases derivable from a record, as ``(alias_kind, alias_value)``.

    Sorted by kind, as the registry lists them. ``created_at`` is not derivable
    (the short aliases are often added hours later) and is not returned.
    ``digest``: as for :func:`pith_code`.
    """
    source = canonical_record.get("source")
    if not isinstance(source, Mapping):
        raise InputError("canonical_record.source is missing", code=codes.E_SHAPE)
    source_id, version = source.get("id"), source.get("version")
    if not isinstance(source_id, str) or isinstance(version, bool) or not isinstance(version, int):
        raise InputError(
            "canonical_record.source needs a string id and an integer version", code=codes.E_SHAPE
        )
    code = pith_code(canonical_record, digest=digest)
    return sorted(
        [
            ("arxiv", source_id),
            ("arxiv_version", f"{source_id}v{version}"),
            # Lower case, slash kept for old-style ids such as hep-th/9801199.
            ("doi", f"10.48550/arxiv.{source_id}".lower()),
            ("pith_short_8", code[:8]),
            ("pith_short_12", code[:12]),
            ("pith_short_16", code[:16]),
        ]
    )


def fingerprint_hex(raw_public_key: bytes) -> str:
    """First 32 hex characters of sha256(raw key): ``fingerprint_sha256_hex``."""
    return sha256_hex(raw_public_key)[:32]


def fingerprint_b32(raw_public_key: bytes) -> str:
    """``fingerprint_sha256_b32_first128bits``: base32 of the *full* digest, cut to 26.

    Encoding only the first 16 bytes would give a different last character.
    """
    return _b32(hashlib.sha256(raw_public_key).digest())[:26]
