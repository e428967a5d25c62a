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
E_NOT_JSON: Final = "not_json"
E_INVALID_UTF8: Final = "invalid_utf8"
E_DUPLICATE_KEY: Final = "duplicate_key"
E_NON_FINITE: Final = "non_finite_number"
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
