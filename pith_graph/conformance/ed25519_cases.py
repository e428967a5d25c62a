"""The corpus's Ed25519 edge cases: ed25519-speccheck vectors, and crafted signatures that
sign each event's own message, so that the corpus fails an implementation differing from
the pinned rule (merge-v1 §3) in any one respect.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from pith_graph import _edwards, codes
from pith_graph.conformance.cases import Case
from pith_graph.conformance.scenarios import (
    Scenario,
    build_scenario,
    timestamp,
)
from pith_graph.identifiers import fingerprint_hex
from pith_graph.testing import seal

__all__ = ["SPECCHECK_NOTES", "crafted_cases", "speccheck_cases"]

#: ed25519-speccheck cases 0-9 (tests/test_ed25519.py): what each exercises.
SPECCHECK_NOTES: Final = (
    "small-order A and R, S = 0",
    "small-order A, mixed-order R",
    "mixed-order A, small-order R",
    "mixed-order A and R, passing both equations",
    "passes only the cofactored equation",
    "passes only the cofactored equation",
    "S >= L",
    "S >= L",
    "non-canonical R (y = p)",
    "non-canonical R (y = p)",
)
_EDGE_SIGNER: Final = "speccheck.example"


def _edge_entry(key_id: str, public_key: bytes) -> dict[str, Any]:
    """A trusted-key entry for an edge-case key (small-order, mixed-order, non-canonical keys load too)."""
    return {
        "key_id": key_id,
        "algorithm": "ed25519",
        "format": "raw",
        "public_key_hex": public_key.hex(),
        "fingerprint_sha256_hex": fingerprint_hex(public_key),
        "rotates_at": None,
        "signer_id": _EDGE_SIGNER,
    }


def _edge_event(
    scenario: Scenario,
    key_id: str,
    public_key: bytes,
    payload: Mapping[str, Any],
    wanted: Callable[[bytes], bool],
) -> dict[str, Any]:
    """An honest unsigned mirror_hint by ``key_id``, its content ground (a ``grind`` counter in
    the payload) until ``wanted(message)`` holds for its signed message, the 32 content-hash bytes."""
    fingerprint = fingerprint_hex(public_key)
    grind = 0
    while True:
        event = seal(
            {
                "event_type": "mirror_hint",
                "subject_pith_number": scenario.subject,
                "target": "mirror",
                "payload": {**payload, "grind": grind},
                "signer": {
                    "signer_id": _EDGE_SIGNER,
                    "signer_type": "test_signer",
                    "key_id": key_id,
                    "public_key_fingerprint": fingerprint,
                },
                "created_at": timestamp(1),
                "supersedes": [],
                "prev_event": None,
                "schema_version": "1.0",
            },
            None,
        )
        if wanted(bytes.fromhex(event["content_sha256"])):
            return event
        grind += 1


def _edge_case(
    scenario: Scenario,
    case_id: str,
    description: str,
    key_id: str,
    public_key: bytes,
    event: dict[str, Any],
    signature: bytes,
    reason: str | None,
) -> Case:
    """The case of ``event`` signed with ``signature``: ``reason`` None means it must be valid."""
    event["signature"] = {
        "signature_status": "signed_v1",
        "algorithm": "ed25519",
        "key_id": key_id,
        "public_key_fingerprint": fingerprint_hex(public_key),
        "signature_b64": base64.b64encode(signature).decode("ascii"),
        "signed_message": "open_graph_event_sha256_bytes",
        "signed_at": timestamp(1),
    }
    return Case(
        case_id,
        description,
        ("ed25519_edge", reason or "valid"),
        scenario.bundle([*scenario.events, event]),
        [*scenario.trusted(), _edge_entry(key_id, public_key)],
        {} if reason is None else {event["event_id"]: reason},
    )


def speccheck_cases(vectors: Sequence[Mapping[str, str]]) -> list[Case]:
    """Events carrying each speccheck key and signature; all must be ``bad_signature``.

    An event's signed message is the sha256 of its own content, so no event can
    sign a speccheck message (that would need a sha256 preimage): each vector's
    key and signature are carried by an event whose content is otherwise
    honest. The key entry (small-order and mixed-order keys included) must load
    as a trusted key, and the pinned rule must reject the signature. Case 0 is
    the one where libraries really disagree for *any* message: A is small
    order, R = -A and S = 0, so the cofactorless equation reads
    [k-1]A = 0, true for one message in eight; its content is ground until
    k = SHA-512(R || A || M) mod L is 1 mod 8, so that OpenSSL alone (without
    the pinned small-order check) accepts the event. The crafted cases
    (:func:`_crafted_cases`) cover the other disagreements over an event's own message.
    """
    scenario = build_scenario([])
    cases = []
    for index, vector in enumerate(vectors):
        public_key = bytes.fromhex(vector["pub_key"])
        signature = bytes.fromhex(vector["signature"])
        key_id = f"speccheck-{index}"

        def wanted(
            message: bytes, index: int = index, public_key: bytes = public_key, signature: bytes = signature
        ) -> bool:
            return index != 0 or _edwards.challenge(signature[:32], public_key, message) % 8 == 1

        event = _edge_event(
            scenario, key_id, public_key, {"speccheck_case": index, "note": SPECCHECK_NOTES[index]}, wanted
        )
        cases.append(
            _edge_case(
                scenario,
                f"ed25519-speccheck-{index}",
                f"ed25519-speccheck case {index} ({SPECCHECK_NOTES[index]}) as an event: bad_signature"
                + (" (OpenSSL alone accepts this event; the pinned rule must not)" if index == 0 else ""),
                key_id,
                public_key,
                event,
                signature,
                codes.REASON_BAD_SIGNATURE,
            )
        )
    return cases


def _scalar(label: str) -> int:
    """A fixed secret scalar for the crafted cases (reproducible from its label)."""
    return (
        int.from_bytes(hashlib.sha512(f"pith_graph corpus: {label}".encode()).digest(), "little") % _edwards.L
    )


def _crafted(
    case_id: str,
    description: str,
    public_key: bytes,
    sign: Callable[[bytes], bytes],
    wanted: Callable[[bytes], bool] = lambda message: True,
    reason: str | None = codes.REASON_BAD_SIGNATURE,
) -> Case:
    scenario = build_scenario([])
    key_id = case_id
    event = _edge_event(scenario, key_id, public_key, {"crafted": case_id}, wanted)
    signature = sign(bytes.fromhex(event["content_sha256"]))
    return _edge_case(scenario, case_id, description, key_id, public_key, event, signature, reason)


def crafted_cases() -> list[Case]:
    """Edge cases of the pinned rule over each event's *own* message, where the speccheck
    vectors (made for other messages) cannot reach: each one passes or fails the
    equations on purpose, so an implementation that differs from the pinned rule
    in that one respect fails that case (tests/test_ed25519.py checks each claim
    against OpenSSL, libsodium and the curve).
    """
    ed, base = _edwards, _edwards.BASE
    torsion = ed.order_8_point()
    honest = _scalar("honest key")
    honest_key = ed.encode(ed.point_mul(honest, base))

    def signature(r_point: bytes, s: int) -> bytes:
        return r_point + s.to_bytes(32, "little")

    def standard(secret: int, public_key: bytes, nonce: str) -> Callable[[bytes], bytes]:
        """Sign as RFC 8032 does, with R = [r]B, S = r + k*secret (mod L)."""
        r = _scalar(nonce)
        r_point = ed.encode(ed.point_mul(r, base))
        return lambda message: signature(
            r_point, (r + ed.challenge(r_point, public_key, message) * secret) % ed.L
        )

    # R = the identity (small order), S = k*a: [S]B = [k]A = R + [k]A for every message.
    identity = ed.encode(ed.IDENTITY)
    small_r = _crafted(
        "ed25519-crafted-identity-r",
        "an honest key, R = the identity point (small order), S = k*a: the cofactorless equation holds for "
        "this message, so OpenSSL alone accepts it; the pinned rule (3) must not: bad_signature",
        honest_key,
        lambda message: signature(identity, ed.challenge(identity, honest_key, message) * honest % ed.L),
    )
    # A = [a]B + T (T of order 8): [S]B = R + [k]A exactly when [k]T = 0, i.e. k = 0 mod 8.
    mixed_secret = _scalar("mixed-order key")
    mixed_key = ed.encode(ed.point_add(ed.point_mul(mixed_secret, base), torsion))
    mixed_sign = standard(mixed_secret, mixed_key, "mixed-order nonce")
    mixed = _crafted(
        "ed25519-crafted-mixed-order-key",
        "a mixed-order key (a prime-order point plus one of order 8) whose signature passes the cofactorless "
        "equation (the content is ground until k = 0 mod 8): the pinned rule accepts it, as OpenSSL and "
        "libsodium do; an implementation that demands a prime-order key must not reject it: valid",
        mixed_key,
        mixed_sign,
        lambda message: ed.challenge(mixed_sign(message)[:32], mixed_key, message) % 8 == 0,
        reason=None,
    )
    # R = [r]B + T: R + [k]A is off by T from [S]B, and [8]T = 0.
    r = _scalar("cofactored nonce")
    shifted_r = ed.encode(ed.point_add(ed.point_mul(r, base), torsion))
    cofactored = _crafted(
        "ed25519-crafted-cofactored-only",
        "an honest key and R = [r]B + T (T of order 8), S = r + k*a: only the cofactored equation "
        "[8][S]B = [8](R + [k]A) holds; the pinned rule (5) is cofactorless: bad_signature",
        honest_key,
        lambda message: signature(
            shifted_r, (r + ed.challenge(shifted_r, honest_key, message) * honest) % ed.L
        ),
    )
    honest_sign = standard(honest, honest_key, "honest nonce")

    def plus_l(message: bytes) -> bytes:
        valid = honest_sign(message)
        return signature(valid[:32], int.from_bytes(valid[32:], "little") + ed.L)

    unreduced = _crafted(
        "ed25519-crafted-s-plus-l",
        "a valid signature by an honest key with S replaced by S + L: the equation holds for S mod L, "
        "but the pinned rule (4) requires S < L: bad_signature",
        honest_key,
        plus_l,
    )
    # A spelled y = p + 1: the identity, non-canonically. R = [s]B, S = s: [S]B = R + [k]O.
    s = _scalar("non-canonical key")
    spelled = ed.encode_y(ed.P + 1)
    non_canonical = _crafted(
        "ed25519-crafted-non-canonical-key",
        "the key y = p + 1 (the identity point, spelled non-canonically), R = [s]B and S = s, so "
        "[S]B = R + [k]A for a reader that reduces y mod p; the pinned rule (2) refuses the "
        "encoding: bad_signature",
        spelled,
        lambda message: signature(ed.encode(ed.point_mul(s, base)), s),
    )
    return [small_r, mixed, cofactored, unreduced, non_canonical]
