"""The pinned Ed25519 rule (merge-v1, "Signatures") and its backends.

Every backend must give exactly the pinned verdicts, so mirrors agree on which
events are valid whatever library they run. The small-order set the rule uses
is checked here against a separate, deliberately tiny pure-Python
edwards25519 (RFC 8032 formulas, ``pith_graph._edwards``), not against the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pith_graph import _edwards, codes, ed25519, rebuild_state
from pith_graph._edwards import decode, encode_y, point_add, point_equal, point_mul
from pith_graph.conformance import corpus_path, default_fixtures
from pith_graph.documents import load_bundle
from pith_graph.errors import InputError, PithGraphError
from pith_graph.keys import KeyRing
from pith_graph.merge import merge
from pith_graph.testing import TestKey
from tests.helpers import FIXTURES

FIXTURE = default_fixtures() / "ed25519-speccheck-cases.json"  # an input of the conformance corpus
CASES = json.loads(FIXTURE.read_text())
# Both are test dependencies (pyproject "test" extra): a missing one fails these tests
# rather than silently leaving a backend, or the reason for the pinned rule, untested.
BACKENDS = ("nacl", "cryptography")

# The curve arithmetic (RFC 8032 formulas) is pith_graph._edwards, which the pinned
# rule (pith_graph.ed25519) does not use: its small-order set is checked against it.
BASE, IDENTITY, L, P = _edwards.BASE, _edwards.IDENTITY, _edwards.L, _edwards.P


# --- the small-order set ------------------------------------------------------------
def torsion_points() -> list[tuple[int, int, int, int]]:
    """Every decodable point whose y is in SMALL_ORDER_Y, both signs of x."""
    found = []
    for y in ed25519.SMALL_ORDER_Y:
        for sign in (0, 1):
            point = decode(encode_y(y, sign))
            if point is not None:
                found.append(point)
    return found


def test_small_order_set_is_exactly_the_eight_torsion_points() -> None:
    points = torsion_points()
    assert len(points) == 8
    assert all(point_equal(point_mul(8, p), IDENTITY) for p in points)
    # Distinct, and closed under addition: a group of order 8.
    for i, a in enumerate(points):
        assert not any(point_equal(a, b) for b in points[i + 1 :])
        assert all(any(point_equal(point_add(a, b), c) for c in points) for b in points)
    # Cyclic: one of them has order exactly 8, so the group is all of Z/8, the whole
    # 2-torsion of a curve of order 8*L (L prime): no other point satisfies [8]P = O.
    order8 = [p for p in points if not point_equal(point_mul(4, p), IDENTITY)]
    assert len(order8) == 4
    assert BASE is not None and point_equal(point_mul(L, BASE), IDENTITY)
    assert all(not point_equal(point_mul(L, p), IDENTITY) for p in points if not point_equal(p, IDENTITY))


def test_a_non_torsion_point_is_not_small_order() -> None:
    assert BASE is not None
    assert not point_equal(point_mul(8, BASE), IDENTITY)
    assert not ed25519.is_small_order(encode_y(BASE[1]))


@pytest.mark.parametrize("y", sorted(ed25519.SMALL_ORDER_Y))
def test_small_order_detected_in_every_encoding(y: int) -> None:
    encodings = [encode_y(y, 0), encode_y(y, 1)]
    if y + P < 2**255:  # non-canonical spelling y + p exists for y < 19
        encodings += [encode_y(y + P, 0), encode_y(y + P, 1)]
    assert all(ed25519.is_small_order(e) for e in encodings)


def test_the_fast_small_order_lookup_matches_the_arithmetic_definition() -> None:
    # The per-signature check of R is a set lookup; it must refuse exactly what
    # is_small_order refuses: every spelling above, and nothing else nearby.
    expected = set()
    for y in ed25519.SMALL_ORDER_Y:
        for value in (y, y + P):
            if value < 2**255:
                expected |= {encode_y(value, 0), encode_y(value, 1)}
    assert expected == ed25519.SMALL_ORDER_ENCODINGS
    neighbours = [
        encode_y((y + d) % 2**255, sign) for y in ed25519.SMALL_ORDER_Y for d in (-1, 1) for sign in (0, 1)
    ]
    for encoding in [*expected, *neighbours, encode_y(BASE[1] if BASE else 9)]:
        assert (encoding in ed25519.SMALL_ORDER_ENCODINGS) == ed25519.is_small_order(encoding)


@pytest.mark.parametrize(
    ("s", "accepted"),
    [
        (0, True),
        (1, True),
        (L - 1, True),
        (L, False),
        (L + 1, False),
        (2**252, True),
        (2**252 - 1, True),
        (2**253, False),
        (2**256 - 1, False),
        (0x10 << 248, True),
        ((0x11 << 248) - 1, False),
    ],
)
def test_canonical_s_boundary(s: int, accepted: bool) -> None:
    # rule 4 is decided by the top byte except when it equals L's (0x10): both paths.
    assert BASE is not None
    r = encode_y(BASE[1])
    key = encode_y(BASE[1])
    assert ed25519.passes_pinned_prechecks(key, r + s.to_bytes(32, "little")) is accepted


# --- the speccheck vectors ----------------------------------------------------------
# ed25519-speccheck, cases 0-9: 0-2 small-order A and/or R, 3 mixed-order A and R
# that pass both equations, 4-5 pass only the cofactored equation, 6-7 S >= L,
# 8-9 a non-canonical R encoding (y = p, i.e. the small-order point y = 0).
PINNED_ACCEPTED = {3}


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("index", range(len(CASES)))
def test_speccheck_vectors_give_pinned_verdicts(backend_name: str, index: int) -> None:
    case = CASES[index]
    public_key, signature, message = (bytes.fromhex(case[k]) for k in ("pub_key", "signature", "message"))
    backend = ed25519.get_backend(backend_name)
    assert ed25519.verify(public_key, signature, message, backend=backend) is (index in PINNED_ACCEPTED)
    assert ed25519.Verifier(backend).verify(public_key, signature, message) is (index in PINNED_ACCEPTED)


def test_speccheck_vectors_are_all_present() -> None:
    assert len(CASES) == 10


def test_raw_libraries_disagree_without_the_pinned_prechecks() -> None:
    """Why the rule is pinned: OpenSSL alone accepts vectors libsodium alone rejects."""
    disagreements = []
    for index, case in enumerate(CASES):
        public_key, signature, message = (bytes.fromhex(case[k]) for k in ("pub_key", "signature", "message"))
        verdicts = []
        for name in ("cryptography", "nacl"):
            backend = ed25519.get_backend(name)
            try:
                verdicts.append(backend.verify(backend.load(public_key), signature, message))
            except Exception:  # a raw library may refuse the key outright
                verdicts.append(False)
        if verdicts[0] != verdicts[1]:
            disagreements.append((index, *verdicts))
    # As the issue states: OpenSSL accepts 3 signatures libsodium rejects (small-order A and/or R).
    assert disagreements == [(0, True, False), (1, True, False), (2, True, False)]


# --- the corpus's Ed25519 cases ------------------------------------------------------
CORPUS = corpus_path()
EDGE_CASES = sorted(p.name for p in CORPUS.iterdir() if p.name.startswith("ed25519-"))


def edge_signature(case: str) -> tuple[bytes, bytes, bytes]:
    """(public key, signature, message) of the edge event of a corpus case, as shipped."""
    bundle = json.loads((CORPUS / case / "bundle.json").read_bytes())
    [entry] = [
        k
        for k in json.loads((CORPUS / case / "trusted_keys.json").read_bytes())
        if k["key_id"] == case or k["key_id"].startswith("speccheck-")
    ]
    [event] = [e for e in bundle["events"] if e["signer"]["key_id"] == entry["key_id"]]
    return (
        bytes.fromhex(entry["public_key_hex"]),
        base64.b64decode(event["signature"]["signature_b64"]),
        bytes.fromhex(event["content_sha256"]),
    )


def raw_verdict(backend_name: str, public_key: bytes, signature: bytes, message: bytes) -> bool:
    """A library's own verdict, without the pinned rule's checks 1-4."""
    backend = ed25519.get_backend(backend_name)
    try:
        return backend.verify(backend.load(public_key), signature, message)
    except Exception:  # a raw library may refuse the key outright
        return False


# What each crafted case is built to be (docs/conformance.md): raw OpenSSL, raw libsodium,
# the cofactorless and the cofactored equation (S as it is; A and R canonical), pinned.
CRAFTED = {
    "ed25519-crafted-identity-r": (True, False, True, True, False),
    "ed25519-crafted-non-canonical-key": (True, False, False, False, False),
    "ed25519-crafted-cofactored-only": (False, False, False, True, False),
    "ed25519-crafted-s-plus-l": (False, False, True, True, False),
    "ed25519-crafted-mixed-order-key": (True, True, True, True, True),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_corpus_cases_are_what_they_claim(case: str) -> None:
    public_key, signature, message = edge_signature(case)
    found = (
        raw_verdict("cryptography", public_key, signature, message),
        raw_verdict("nacl", public_key, signature, message),
        _edwards.cofactorless_equation(public_key, signature, message),
        _edwards.cofactored_equation(public_key, signature, message),
        ed25519.verify(public_key, signature, message),
    )
    assert found == CRAFTED[case]
    expected = json.loads((CORPUS / case / "expected.json").read_bytes())
    assert [e["reason"] for e in expected["invalid_events"]] == ([] if found[-1] else ["bad_signature"])


class _Cofactored:
    """A wrong rule 5: the cofactored equation (as ZIP 215 verifiers check it)."""

    name = "cofactored"

    def load(self, public_key: bytes) -> object:
        return public_key

    def verify(self, loaded_key: object, signature: bytes, message: bytes) -> bool:
        assert isinstance(loaded_key, bytes)
        return _edwards.cofactored_equation(loaded_key, signature, message)


class _ReducesS(ed25519.CryptographyBackend):
    """A wrong rule 4: S taken mod L (rule 4's check is switched off with it)."""

    def verify(self, loaded_key: object, signature: bytes, message: bytes) -> bool:
        s = int.from_bytes(signature[32:], "little") % L
        return super().verify(loaded_key, signature[:32] + s.to_bytes(32, "little"), message)


def _sizes_only(value: bytes, size: int) -> bool:
    return len(value) == size


def _prime_order_key(public_key: bytes) -> bool:
    point = decode(public_key)
    return (
        point is not None
        and not ed25519.is_small_order(public_key)
        and point_equal(point_mul(L, point), IDENTITY)
    )


# Each wrong rule (prechecks replaced, backend) and the corpus cases it must fail.
WRONG_RULES: dict[str, tuple[dict[str, Any], ed25519.Backend, set[str]]] = {
    "OpenSSL without checks 1-4": (
        {"_key_passes": partial(_sizes_only, size=32), "_signature_passes": partial(_sizes_only, size=64)},
        ed25519.CryptographyBackend(),
        {"ed25519-speccheck-0", "ed25519-crafted-identity-r", "ed25519-crafted-non-canonical-key"},
    ),
    "cofactored equation": ({}, _Cofactored(), {"ed25519-crafted-cofactored-only"}),
    "S reduced mod L": (
        {"_signature_passes": lambda sig: len(sig) == 64 and sig[:32] not in ed25519.SMALL_ORDER_ENCODINGS},
        _ReducesS(),
        {"ed25519-crafted-s-plus-l"},
    ),
    "prime-order keys only": (
        {"_key_passes": _prime_order_key},
        ed25519.CryptographyBackend(),
        {"ed25519-crafted-mixed-order-key"},
    ),
}


@pytest.mark.parametrize("rule", sorted(WRONG_RULES))
def test_the_corpus_fails_each_wrong_rule(monkeypatch: pytest.MonkeyPatch, rule: str) -> None:
    """Each way of differing from the pinned rule fails exactly the cases built for it."""
    checks, backend, expected_failures = WRONG_RULES[rule]
    for name, check in checks.items():
        monkeypatch.setattr(ed25519, name, check)
    failures = set()
    for case in EDGE_CASES:
        raw, _model = load_bundle((CORPUS / case / "bundle.json").read_bytes())
        state = merge(
            raw["events"],
            subject=raw["pith_number"],
            aliases=raw.get("source_aliases") or (),
            trusted_keys=KeyRing.from_entries(json.loads((CORPUS / case / "trusted_keys.json").read_bytes())),
            verifier=ed25519.Verifier(backend),
        )
        expected = json.loads((CORPUS / case / "expected.json").read_bytes())
        if state.state_sha256 != expected["state_sha256"]:
            failures.add(case)
    assert failures == expected_failures


# --- real signatures ----------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(seed=st.text(min_size=1, max_size=12), message=st.binary(max_size=64), flip=st.integers(0, 64 * 8))
def test_backends_agree_on_real_signatures(seed: str, message: bytes, flip: int) -> None:
    key = TestKey(seed)
    signature = key.sign(message)
    tampered = bytearray(signature)
    if flip < 64 * 8:
        tampered[flip // 8] ^= 1 << (flip % 8)
    for candidate in (signature, bytes(tampered)):
        verdicts = {n: ed25519.Verifier(n).verify(key.public_key, candidate, message) for n in BACKENDS}
        assert len(set(verdicts.values())) == 1, verdicts
    assert all(ed25519.Verifier(name).verify(key.public_key, signature, message) for name in BACKENDS)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_non_canonical_s_is_rejected(backend_name: str) -> None:
    key = TestKey("non-canonical-s")
    message = hashlib.sha256(b"m").digest()
    signature = key.sign(message)
    s = int.from_bytes(signature[32:], "little")
    assert s + L < 2**256
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    verifier = ed25519.Verifier(backend_name)
    assert verifier.verify(key.public_key, signature, message)
    assert not verifier.verify(key.public_key, malleated, message)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_non_canonical_public_key_is_rejected(backend_name: str) -> None:
    # y in 2..18 has a second spelling y + p; find one that is a real curve point.
    y = next(y for y in range(2, 19) if decode(encode_y(y)) is not None)
    canonical, non_canonical = encode_y(y), encode_y(y + P)
    assert decode(canonical) is not None and not ed25519.is_small_order(canonical)
    signature = TestKey("any").sign(b"m")
    assert not ed25519.passes_pinned_prechecks(non_canonical, signature)
    assert not ed25519.Verifier(backend_name).verify(non_canonical, signature, b"m")


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_wrong_lengths_are_rejected(backend_name: str) -> None:
    key = TestKey("lengths")
    signature = key.sign(b"m")
    verifier = ed25519.Verifier(backend_name)
    assert not verifier.verify(key.public_key[:31], signature, b"m")
    assert not verifier.verify(key.public_key, signature[:63], b"m")


# --- backend selection --------------------------------------------------------------
def test_auto_prefers_nacl_when_installed() -> None:
    assert ed25519.HAVE_NACL  # a test dependency (see BACKENDS)
    assert ed25519.get_backend("auto").name == "nacl"
    assert ed25519.available_backends() == ["nacl", "cryptography"]


def test_explicit_backend_names() -> None:
    assert ed25519.get_backend("cryptography").name == "cryptography"
    assert ed25519.Verifier("cryptography").backend.name == "cryptography"
    assert ed25519.Verifier(ed25519.CryptographyBackend()).backend.name == "cryptography"


def test_environment_variable_selects_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ed25519.BACKEND_ENV_VAR, "cryptography")
    assert ed25519.Verifier().backend.name == "cryptography"
    monkeypatch.setenv(ed25519.BACKEND_ENV_VAR, "bogus")
    with pytest.raises(InputError):
        ed25519.Verifier()


def test_unknown_backend_raises_a_coded_error() -> None:
    with pytest.raises(PithGraphError) as info:
        ed25519.get_backend("openssl-please")
    assert info.value.code == codes.E_UNKNOWN_BACKEND == "unknown_ed25519_backend"


_WITHOUT_NACL = """
import json, sys
sys.modules["nacl"] = None  # as if PyNaCl were not installed: its import fails
from pith_graph import ed25519, rebuild_state
from pith_graph.errors import InputError
try:
    ed25519.get_backend("nacl")
    refused = None
except InputError as exc:
    refused = exc.code
print(json.dumps({
    "have_nacl": ed25519.HAVE_NACL,
    "available": ed25519.available_backends(),
    "auto": ed25519.get_backend("auto").name,
    "nacl_refused": refused,
    "state_sha256": rebuild_state(sys.argv[1], workers=1).state_sha256,
}))
"""


def test_without_pynacl_the_default_is_cryptography_and_nacl_is_refused(tmp_path: Path) -> None:
    """The fallback the ``fast`` extra leaves, in a real interpreter where PyNaCl cannot be imported."""
    bundle = FIXTURES / "bundle-AG3PAJ22.json"  # the registry's own bundle
    run = subprocess.run(
        [sys.executable, "-c", _WITHOUT_NACL, str(bundle)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    got = json.loads(run.stdout)
    assert got == {
        "have_nacl": False,
        "available": ["cryptography"],
        "auto": "cryptography",
        "nacl_refused": codes.E_UNKNOWN_BACKEND,
        "state_sha256": rebuild_state(bundle, workers=1).state_sha256,
    }
