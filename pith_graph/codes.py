"""Every stable code pith_graph emits, in one place.

Three families, shared by the code, docs/merge-v1.md and the tests:

* ``REASON_*`` -- why an event is invalid under merge-v1. Written verbatim into
  ``state.invalid_events[].reason``; part of the hashed state, so they never change.
  ``REASONS`` lists them in check order: the first failing check names the reason,
  and when copies of one event disagree the copy that got furthest wins.
* ``P_*`` -- problem codes in a verification :class:`~pith_graph.verify.Report`.
* ``E_*`` -- error codes carried by :class:`~pith_graph.errors.PithGraphError`.
"""

from __future__ import annotations

from typing import Final

# --- merge-v1 reason codes, in check order -------------------------------------------
REASON_MALFORMED: Final = "malformed"
REASON_EVENT_ID_MISMATCH: Final = "event_id_mismatch"
REASON_CONTENT_HASH_MISMATCH: Final = "content_hash_mismatch"
REASON_SUBJECT_MISMATCH: Final = "subject_mismatch"
REASON_UNKNOWN_EVENT_TYPE: Final = "unknown_event_type"
REASON_TARGET_MISMATCH: Final = "target_mismatch"
REASON_UNSUPPORTED_SIGNATURE: Final = "unsupported_signature"
REASON_UNKNOWN_KEY: Final = "unknown_key"
REASON_KEY_MISMATCH: Final = "key_mismatch"
REASON_BAD_SIGNATURE: Final = "bad_signature"
REASON_BAD_RECORD: Final = "bad_record"
REASON_MISSING_PREV_EVENT: Final = "missing_prev_event"
REASON_PREV_EVENT_STREAM_MISMATCH: Final = "prev_event_stream_mismatch"
REASON_PREV_EVENT_INVALID: Final = "prev_event_invalid"
REASON_BAD_SUPERSEDES: Final = "bad_supersedes"

#: Per-event checks (stage 1), in order.
EVENT_REASONS: Final = (
    REASON_MALFORMED,
    REASON_EVENT_ID_MISMATCH,
    REASON_CONTENT_HASH_MISMATCH,
    REASON_SUBJECT_MISMATCH,
    REASON_UNKNOWN_EVENT_TYPE,
    REASON_TARGET_MISMATCH,
    REASON_UNSUPPORTED_SIGNATURE,
    REASON_UNKNOWN_KEY,
    REASON_KEY_MISMATCH,
    REASON_BAD_SIGNATURE,
    REASON_BAD_RECORD,
)
#: History checks (stage 2), in order.
HISTORY_REASONS: Final = (
    REASON_MISSING_PREV_EVENT,
    REASON_PREV_EVENT_STREAM_MISMATCH,
    REASON_PREV_EVENT_INVALID,
    REASON_BAD_SUPERSEDES,
)
#: Every reason code, in check order.
REASONS: Final = EVENT_REASONS + HISTORY_REASONS


def root_cause_rank(reason: str | None) -> int:
    """Sort key listing root causes first: an event's own defect (stage 1) before what it
    causes downstream (stage 2, e.g. ``prev_event_invalid``), in check order."""
    return REASONS.index(reason) if reason in REASONS else len(REASONS)


# --- verification problem codes ------------------------------------------------------
P_WRONG_KIND: Final = "wrong_kind"
P_SHAPE: Final = "shape"
P_CANONICAL_HASH: Final = "canonical_hash_mismatch"
P_PITH_NUMBER: Final = "pith_number_mismatch"
P_SHORT_PITH_NUMBER: Final = "short_pith_number_mismatch"
P_ALIAS: Final = "alias_mismatch"
P_SOURCE: Final = "source_mismatch"
P_RECEIPT_UNSUPPORTED: Final = "receipt_unsupported"
P_RECEIPT_UNKNOWN_KEY: Final = "receipt_unknown_key"
P_RECEIPT_KEY_MISMATCH: Final = "receipt_key_mismatch"
P_RECEIPT_SIGNATURE: Final = "receipt_bad_signature"
P_BUNDLE_HASH: Final = "bundle_hash_mismatch"
P_BUNDLE_SIGNATURE_MISSING: Final = "bundle_signature_missing"
P_BUNDLE_SIGNATURE_UNSUPPORTED: Final = "bundle_signature_unsupported"
P_BUNDLE_UNKNOWN_KEY: Final = "bundle_unknown_key"
P_BUNDLE_KEY_MISMATCH: Final = "bundle_key_mismatch"
P_BUNDLE_SIGNATURE: Final = "bundle_bad_signature"
P_MERGE_VERSION: Final = "merge_version_unsupported"
P_STATE_MISSING: Final = "state_missing"
P_STATE_MISMATCH: Final = "state_mismatch"
P_STATE_HASH: Final = "state_hash_mismatch"
P_STATE_COUNTS: Final = "state_counts_inconsistent"
P_INVALID_EVENT: Final = "invalid_event"
P_EQUIVOCATION: Final = "equivocation"
P_SNAPSHOT_SHAPE: Final = "snapshot_shape"
P_KEY_ENTRY: Final = "key_entry_mismatch"
P_PROOF: Final = "proof_invalid"
#: An equivocation proof encloses a key the caller does not trust (issue 15).
P_PROOF_UNTRUSTED_KEY: Final = "proof_untrusted_key"

# --- error codes (exceptions) --------------------------------------------------------
E_INTERNAL: Final = "internal_error"
E_IO: Final = "io_error"
#: Writing the output failed (a closed pipe, a full disk).
E_OUTPUT: Final = "output_error"
E_NOT_JSON: Final = "not_json"
E_INVALID_UTF8: Final = "invalid_utf8"
E_DUPLICATE_KEY: Final = "duplicate_key"
E_NON_FINITE: Final = "non_finite_number"
#: An integer with more digits than merge-v1 reads exactly (docs/merge-v1.md, "Numbers").
E_NUMBER_TOO_LONG: Final = "integer_too_long"
E_LONE_SURROGATE: Final = "lone_surrogate"
E_TOO_DEEP: Final = "too_deep"
E_TOO_LARGE: Final = "too_large"
E_NOT_PITH: Final = "not_a_pith_document"
E_SHAPE: Final = "bad_shape"
E_BAD_KEY: Final = "bad_key"
E_VERIFICATION_FAILED: Final = "verification_failed"
E_STORE: Final = "store_error"
E_STORE_CORRUPT: Final = "store_corrupt"
E_STORE_SCHEMA: Final = "store_schema_mismatch"
E_STORE_BUSY: Final = "store_busy"
E_USAGE: Final = "usage"
#: A directory named on the command line holds no ``*.json`` document.
E_NO_DOCUMENTS: Final = "no_documents"

# --- issue 5: Ed25519 backends (pith_graph/ed25519.py) -------------------------------
E_UNKNOWN_BACKEND: Final = "unknown_ed25519_backend"

# --- issue 4: event store (pith_graph/store/) --------------------------------------
E_STORE_UNKNOWN_SUBJECT: Final = "store_unknown_subject"
#: Outcomes of ``EventStore.append`` (``AppendResult.status``).
STORE_NEW: Final = "new"
STORE_DUPLICATE: Final = "duplicate"
STORE_INVALID: Final = "stored_invalid"
#: Not stored: the copy fails stage 1 and arrived by sync (network input keeps no evidence; issue 15).
STORE_REFUSED: Final = "refused"
#: A subject that is not a Pith Number (nor the short form of a stored one).
E_BAD_SUBJECT: Final = "bad_subject"

# --- issue 17: mirrors that pull from and follow each other (pith_graph/mirror/) -------
#: The peer could not be reached (refused, DNS, reset before an answer).
E_PEER_UNREACHABLE: Final = "peer_unreachable"
#: The peer did not answer (connect or read) within the client's timeouts.
E_PEER_TIMEOUT: Final = "peer_timeout"
#: The peer answered with an HTTP status other than the one asked for (after retries).
E_PEER_HTTP: Final = "peer_http_error"
#: The peer's answer was larger than the client accepts (refused while reading).
E_PEER_TOO_LARGE: Final = "peer_response_too_large"
#: The peer closed the connection before the whole body arrived.
E_PEER_TRUNCATED: Final = "peer_truncated"
#: The peer's answer is not the JSON document asked for (not JSON, wrong shape).
E_PEER_BAD_ANSWER: Final = "peer_bad_answer"
#: The peer answered with a bundle of another subject.
E_PEER_WRONG_SUBJECT: Final = "peer_wrong_subject"
#: No mirror served a usable answer (every attempt failed).
E_NOTHING_USABLE: Final = "nothing_usable"
#: A change-feed request whose ``after`` or ``limit`` is not valid (HTTP 400).
E_FEED_BAD_CURSOR: Final = "bad_cursor"
E_FEED_BAD_LIMIT: Final = "bad_limit"
#: Why an event received over the network was not stored: it failed stage 1
#: (its merge-v1 reason is reported beside), or another valid copy of its unit is held.
NET_REJECTED: Final = "rejected"
NET_DUPLICATE_UNIT: Final = "duplicate_unit"

# --- issue 16: mirror server (pith_graph/mirror) -------------------------------------
# HTTP error codes (the ``error`` member of a JSON error body). Bodies that are not
# JSON reuse E_NOT_JSON / E_DUPLICATE_KEY / E_TOO_DEEP ..., an unknown subject
# E_STORE_UNKNOWN_SUBJECT, a body over the limit E_TOO_LARGE, a locked store
# E_STORE_BUSY; a stage-1 failure is the merge-v1 reason code itself.
E_NOT_FOUND: Final = "not_found"
E_METHOD_NOT_ALLOWED: Final = "method_not_allowed"
E_UNSUPPORTED_MEDIA_TYPE: Final = "unsupported_media_type"
E_REQUEST_TIMEOUT: Final = "request_timeout"
E_BAD_QUERY: Final = "bad_query"
E_AMBIGUOUS: Final = "ambiguous_alias"
E_NO_MIRROR_KEY: Final = "no_mirror_key"
#: What ``POST /pith/{code}/events`` reports of an event it holds (``status``).
MIRROR_APPLIED: Final = "applied"
MIRROR_PENDING: Final = "pending"
MIRROR_FORKED: Final = "forked"
MIRROR_NOT_APPLIED: Final = "not_applied"
MIRROR_INVALID: Final = "invalid"

# --- what each code means (docs/cli.md is generated from these) ----------------------
#: One line per code, for docs/cli.md (``python -m pith_graph.cli._doc`` writes it; a
#: test fails when a code has no line here or the document is out of date).
MEANINGS: Final[dict[str, str]] = {
    REASON_MALFORMED: "not an event object: a field missing or mistyped, a bad id or timestamp, over 1 MiB",
    REASON_EVENT_ID_MISMATCH: "`event_id` is not `sha256:` + `content_sha256`",
    REASON_CONTENT_HASH_MISMATCH: "`content_sha256` is not the hash of the event's content",
    REASON_SUBJECT_MISMATCH: "the event names another record than the one it was received for",
    REASON_UNKNOWN_EVENT_TYPE: "`event_type` is not one merge-v1 knows",
    REASON_TARGET_MISMATCH: "a `record_created` not targeting `record`, or a `graph_snapshot` not targeting `graph`",
    REASON_UNSUPPORTED_SIGNATURE: "the signature is not a supported Ed25519 signature",
    REASON_UNKNOWN_KEY: "the signing key is not among the trusted keys",
    REASON_KEY_MISMATCH: "the fingerprints or key ids do not match the trusted key, or it is bound to another signer",
    REASON_BAD_SIGNATURE: "the Ed25519 signature does not verify",
    REASON_BAD_RECORD: "a `record_created` whose record, hash, receipt or source fields do not hold",
    REASON_MISSING_PREV_EVENT: "`prev_event` names an event the set does not hold",
    REASON_PREV_EVENT_STREAM_MISMATCH: "`prev_event` belongs to another (target, signer) stream",
    REASON_PREV_EVENT_INVALID: "`prev_event` is itself invalid (a downstream effect: see its reason)",
    REASON_BAD_SUPERSEDES: "`supersedes` names no unit, an invalid one, another signer's or a `record_created`",
    P_WRONG_KIND: "the document is not the kind it was verified as",
    P_SHAPE: "a member has the wrong shape (an embedded state or alias, for instance)",
    P_CANONICAL_HASH: "`canonical_sha256` is not the hash of `canonical_record`",
    P_PITH_NUMBER: "the Pith Number is not the one derived from the record",
    P_SHORT_PITH_NUMBER: "`short_pith_number` is not derived from the Pith Number",
    P_ALIAS: "a derivable alias carries another value",
    P_SOURCE: "the `source` fields contradict the record",
    P_RECEIPT_UNSUPPORTED: "the receipt is not a supported signature",
    P_RECEIPT_UNKNOWN_KEY: "the receipt is signed by a key that is not trusted",
    P_RECEIPT_KEY_MISMATCH: "the receipt's key fingerprint does not match the trusted key",
    P_RECEIPT_SIGNATURE: "the receipt's signature does not verify",
    P_BUNDLE_HASH: "`bundle_signature.bundle_sha256` is not the hash of the bundle",
    P_BUNDLE_SIGNATURE_MISSING: "the bundle is not signed (a warning)",
    P_BUNDLE_SIGNATURE_UNSUPPORTED: "the bundle signature is not a signed_v1 Ed25519 signature",
    P_BUNDLE_UNKNOWN_KEY: "the bundle is signed by a key that is not trusted",
    P_BUNDLE_KEY_MISMATCH: "the bundle signature's key fingerprint does not match the trusted key",
    P_BUNDLE_SIGNATURE: "the bundle signature does not verify",
    P_MERGE_VERSION: "`merge_version` is not merge-v1",
    P_STATE_MISSING: "the bundle embeds no state (a warning)",
    P_STATE_MISMATCH: "the embedded state differs from the rebuilt one",
    P_STATE_HASH: "`state_sha256` is not the hash of the state",
    P_STATE_COUNTS: "the state's counts contradict its lists",
    P_INVALID_EVENT: "an event is invalid under merge-v1 (`reason` says why)",
    P_EQUIVOCATION: "a signer forked a stream (two events after the same predecessor)",
    P_SNAPSHOT_SHAPE: "a graph snapshot's counts or hashes are malformed",
    P_KEY_ENTRY: "a listed public key contradicts a trusted key, or is malformed",
    P_PROOF: "an equivocation proof does not prove a fork",
    E_INTERNAL: "a defect in pith_graph itself (please report it)",
    E_IO: "a file cannot be read (or written, when named as an output)",
    E_OUTPUT: "the output cannot be written (a closed pipe, a full disk)",
    E_NOT_JSON: "the document is not exactly one JSON value",
    E_INVALID_UTF8: "the document is not valid UTF-8",
    E_DUPLICATE_KEY: "an object repeats a key (two parsers would disagree on its hash)",
    E_NON_FINITE: "NaN, an infinity, or a number out of the double range such as 1e400",
    E_NUMBER_TOO_LONG: "an integer has more than 640 digits (docs/merge-v1.md, Numbers)",
    E_LONE_SURROGATE: "a string holds a lone surrogate escape",
    E_TOO_DEEP: "arrays and objects nest deeper than 64 levels",
    E_TOO_LARGE: "the input is over the size limit (1 GiB by default; checked before reading)",
    E_NOT_PITH: "the document is not a Pith document (or not the kind the command needs)",
    E_SHAPE: "a member of the document has the wrong type or is missing",
    E_BAD_KEY: "a trusted key entry or key list is unusable (an empty list included)",
    E_VERIFICATION_FAILED: "a document failed verification (raised by `Report.raise_for_problems`)",
    E_STORE: "the event store could not do what was asked",
    E_STORE_CORRUPT: "the store's integrity check failed",
    E_STORE_SCHEMA: "the store has a schema this version does not read",
    E_STORE_BUSY: "the store stayed locked by another writer",
    E_USAGE: "a command-line or argument error (an unknown option, a bad value)",
    E_NO_DOCUMENTS: "a directory named holds no `*.json` document",
    E_UNKNOWN_BACKEND: "the Ed25519 backend named is not available",
    E_STORE_UNKNOWN_SUBJECT: "the store holds nothing for that subject (or the name fits several)",
    STORE_NEW: "`store append`/`import`: the copy was stored and passes the stage-1 checks",
    STORE_DUPLICATE: "`store append`/`import`: this exact copy was stored already",
    STORE_INVALID: "`store append`/`import`: the copy was stored, but fails a stage-1 check (`reason`)",
    E_PEER_UNREACHABLE: "a peer mirror could not be reached (refused, DNS, reset before an answer)",
    E_PEER_TIMEOUT: "a peer mirror did not answer within the client's timeouts",
    E_PEER_HTTP: "a peer mirror answered with another HTTP status than the one asked for (after retries)",
    E_PEER_TOO_LARGE: "a peer mirror's answer was larger than the client accepts",
    E_PEER_TRUNCATED: "a peer mirror closed the connection before the whole body arrived",
    E_PEER_BAD_ANSWER: "a peer mirror's answer is not the JSON document asked for",
    E_PEER_WRONG_SUBJECT: "a peer mirror answered with a bundle of another subject",
    E_NOTHING_USABLE: "no mirror served a usable answer (every attempt failed)",
    E_FEED_BAD_CURSOR: "a change-feed request whose `after` is not valid (HTTP 400)",
    E_FEED_BAD_LIMIT: "a change-feed request whose `limit` is not valid (HTTP 400)",
    NET_REJECTED: "an event received over the network failed stage 1 and was not stored (its reason beside)",
    NET_DUPLICATE_UNIT: "an event received over the network was not stored: another valid copy of its unit is held",
    E_BAD_SUBJECT: "a subject is not a Pith Number, nor names exactly one stored subject; nothing is stored",
    P_PROOF_UNTRUSTED_KEY: "an equivocation proof is signed by a key that is not among the trusted keys",
    STORE_REFUSED: "the copy fails stage 1 and came from a source that stores only valid copies (sync, the network)",
    E_NOT_FOUND: "HTTP 404: no such route, or a path whose code is not 26 base32 characters",
    E_METHOD_NOT_ALLOWED: "HTTP 405: the route does not take that method",
    E_UNSUPPORTED_MEDIA_TYPE: "HTTP 415: a POST body that is not `application/json`",
    E_REQUEST_TIMEOUT: "HTTP 408: the client did not send its body in time",
    E_BAD_QUERY: "HTTP 400: a query parameter is missing or malformed",
    E_AMBIGUOUS: "HTTP 409: an alias that names several stored subjects",
    E_NO_MIRROR_KEY: "HTTP 404: `/pith-signing-key.json` of a mirror started without `--mirror-key`",
    MIRROR_APPLIED: "the event is valid and applied in the subject's state",
    MIRROR_PENDING: "the event passes stage 1 but its `prev_event` has not arrived; it applies once it does",
    MIRROR_FORKED: "the event is valid but part of a fork (merge-v1 §8: a fork freezes its stream)",
    MIRROR_NOT_APPLIED: "the event is valid but not applied (superseded, or after a frozen point)",
    MIRROR_INVALID: "the event is invalid in the merged set (`reason` says why)",
}
