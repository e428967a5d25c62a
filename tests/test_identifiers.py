"""Pith Numbers, short forms, aliases and key fingerprints on generated inputs.

Expected values are computed here with hashlib/base64 from the FORMAT-FACTS rules.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from pith_graph import codes
from pith_graph.errors import InputError
from pith_graph.identifiers import (
    PITH_NUMBER_RE,
    derived_aliases,
    fingerprint_b32,
    fingerprint_hex,
    pith_code,
    pith_number,
    short_pith_number,
)
from pith_graph.testing import TestKey, make_canonical_record
from tests.helpers import ref_canonical


def expected_number(record: dict[str, Any]) -> str:
    digest = hashlib.sha256(ref_canonical(record)).digest()
    return f"pith:{record['metadata']['submitted_at'][:4]}:{base64.b32encode(digest).decode()[:26]}"


RECORDS = [
    make_canonical_record(),
    make_canonical_record("hep-th/9801199", submitted_at="1998-01-29T00:00:00Z", license=""),
    make_canonical_record("2601.00001", submitted_at="2025-12-30T23:59:59Z"),
    make_canonical_record("2601.00001", version=7, title="Ünïcödé \u2028 \U0001f600"),
    {**make_canonical_record(), "extra": {"z": [1.5, 1e16, None], "a": "\ue000"}},
]


@pytest.mark.parametrize(
    "record", RECORDS, ids=["plain", "old-style id", "december", "unicode", "extra fields"]
)
def test_pith_number(record: dict[str, Any]) -> None:
    number = expected_number(record)
    assert pith_number(record) == number
    assert PITH_NUMBER_RE.fullmatch(number)
    assert pith_code(record) == number.split(":")[2]
    assert pith_number(record, digest=hashlib.sha256(ref_canonical(record)).digest()) == number
    assert short_pith_number(number) == "pith:" + number.split(":")[2][:8]


@pytest.mark.parametrize("record", RECORDS[:4], ids=["plain", "old-style id", "december", "unicode"])
def test_derived_aliases(record: dict[str, Any]) -> None:
    code = expected_number(record).split(":")[2]
    source = record["source"]
    assert derived_aliases(record) == [
        ("arxiv", source["id"]),
        ("arxiv_version", f"{source['id']}v{source['version']}"),
        ("doi", "10.48550/arxiv." + source["id"].lower()),
        ("pith_short_12", code[:12]),
        ("pith_short_16", code[:16]),
        ("pith_short_8", code[:8]),
    ]


def test_doi_is_lower_case() -> None:
    record = make_canonical_record("Math.AG/0101001")
    assert ("doi", "10.48550/arxiv.math.ag/0101001") in derived_aliases(record)
    assert ("arxiv", "Math.AG/0101001") in derived_aliases(record)


@pytest.mark.parametrize(
    "number",
    [
        "pith:2026:ABC",
        "pith:26:AG3PAJ22332P5QMVIKKH75CXNK",
        "pith:2026:ag3paj22332p5qmvikkh75cxnk",
        "AG3PAJ22",
        "",
        "pith:2026:AG3PAJ22332P5QMVIKKH75CXN1",
    ],
)
def test_short_form_rejects_non_pith_numbers(number: str) -> None:
    with pytest.raises(InputError) as caught:
        short_pith_number(number)
    assert caught.value.code == codes.E_SHAPE


@pytest.mark.parametrize(
    "record",
    [
        {"source": {"id": "1", "kind": "arxiv", "version": 1}},
        {"metadata": {"submitted_at": 2026}},
        {"metadata": {"submitted_at": "26-01-01"}},
        {"metadata": "2026-01-01"},
    ],
    ids=["no metadata", "year a number", "short year", "metadata a string"],
)
def test_pith_number_needs_a_submission_date(record: dict[str, Any]) -> None:
    with pytest.raises(InputError) as caught:
        pith_number(record)
    assert caught.value.code == codes.E_SHAPE


@pytest.mark.parametrize(
    "source",
    [
        None,
        "2601.00001",
        {"id": 1, "version": 1},
        {"id": "x", "version": "1"},
        {"id": "x", "version": True},
        {"id": "x"},
    ],
    ids=["missing", "string", "id a number", "version a string", "version a bool", "no version"],
)
def test_aliases_need_a_source(source: Any) -> None:
    record = make_canonical_record()
    record["source"] = source
    with pytest.raises(InputError) as caught:
        derived_aliases(record)
    assert caught.value.code == codes.E_SHAPE


@pytest.mark.parametrize("seed_text", ["a", "b", "registry", "trusted-key", "x" * 100])
def test_fingerprints(seed_text: str) -> None:
    raw = TestKey(seed_text).public_key
    digest = hashlib.sha256(raw).digest()
    assert fingerprint_hex(raw) == digest.hex()[:32]
    assert fingerprint_b32(raw) == base64.b32encode(digest).decode()[:26]
    assert len(fingerprint_b32(raw)) == 26 and len(fingerprint_hex(raw)) == 32


def test_a_digest_given_in_any_bytes_like_form_gives_the_same_code() -> None:
    """pith_code's base32 is remembered by digest: a bytearray or memoryview digest must work too."""
    digest = hashlib.sha256(b"record").digest()
    expected = base64.b32encode(digest).decode()[:26]
    assert pith_code({}, digest=digest) == pith_code({}, digest=bytearray(digest)) == expected
    assert pith_code({}, digest=memoryview(digest)) == expected
