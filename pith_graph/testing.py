"""Build real, signed Pith documents for tests, vectors and benchmarks.

Everything here signs with real Ed25519 keys (``cryptography``), derived
deterministically from a seed string so that generated corpora are
reproducible byte for byte. Nothing here is used by the merge itself.

Typical use::

    registry = TestKey("registry")
    history = History.new(registry, arxiv_id="2601.00001")
    snap = history.event("graph_snapshot", payload={"graph_snapshot": {...}})
    bundle = history.bundle([snap])            # record_created included
    state = rebuild_state(bundle, trusted_keys=[registry.entry()])
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pith_graph.canonical import canonical_json, sha256_hex
from pith_graph.events import EXCLUDED_FROM_CONTENT, REQUIRED_TARGETS
from pith_graph.identifiers import derived_aliases, fingerprint_hex, pith_number, short_pith_number
from pith_graph.keys import TrustedKey
from pith_graph.models import BUNDLE_TYPE, MERGE_VERSION

__all__ = [
    "History",
    "TestKey",
    "make_bundle",
    "make_canonical_record",
    "make_event",
    "process_running",
    "resign",
    "seal",
    "sign_bundle",
]

DEFAULT_TIME: Final = "2026-06-02T01:03:16Z"


class TestKey:
    """A deterministic Ed25519 test key: the private key is sha256(seed)."""

    __test__ = False  # not a pytest test class

    def __init__(self, seed: str, *, key_id: str | None = None, signer_id: str | None = None) -> None:
        self.seed = seed
        self.key_id = key_id or f"test-{seed}"
        self.signer_id = signer_id or f"{seed}.example"
        self.private_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())
        self.public_key = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.fingerprint = fingerprint_hex(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Sign ``message`` (64-byte Ed25519 signature)."""
        return self.private_key.sign(message)

    def sign_b64(self, message: bytes) -> str:
        """Sign and base64-encode."""
        return base64.b64encode(self.sign(message)).decode("ascii")

    def entry(self, **extra: Any) -> dict[str, Any]:
        """This key as a bundle-style ``public_keys`` item (what ``--trusted-keys`` files hold).

        Unbound unless ``extra`` says ``signer_id=...``.
        """
        entry = TrustedKey(self.key_id, self.public_key).to_entry()
        del entry["signer_id"]  # the registry's entry shape carries no binding
        return {**entry, **extra}

    def signer(self, signer_type: str = "test_signer") -> dict[str, Any]:
        """An event ``signer`` object for this key."""
        return {
            "signer_id": self.signer_id,
            "signer_type": signer_type,
            "key_id": self.key_id,
            "public_key_fingerprint": self.fingerprint,
        }

    def __repr__(self) -> str:
        return f"TestKey({self.seed!r})"


def make_canonical_record(
    arxiv_id: str = "2601.00001",
    *,
    version: int = 1,
    submitted_at: str = "2026-01-12T19:25:01Z",
    title: str = "A test paper",
    primary_cat: str = "cs.DC",
    license: str = "http://creativecommons.org/licenses/by/4.0/",
) -> dict[str, Any]:
    """A canonical record shaped like the registry's."""
    return {
        "source": {"id": arxiv_id, "kind": "arxiv", "version": version},
        "metadata": {
            "license": license,
            "primary_cat": primary_cat,
            "submitted_at": submitted_at,
            "cross_cats_sorted": [],
            "title_canon_sha256": sha256_hex(title.encode()),
            "abstract_canon_sha256": sha256_hex(b"abstract of " + title.encode()),
        },
        "schema_version": "1.0",
    }


def seal(event: dict[str, Any], key: TestKey | None) -> dict[str, Any]:
    """Fill ``content_sha256``, ``event_id`` and (with a key) ``signature`` from the content.

    The content hash covers every key but the excluded ones, so callers may add
    any extra field before sealing. Returns a new dict; ``event`` is unchanged.
    """
    sealed = {k: v for k, v in event.items() if k not in EXCLUDED_FROM_CONTENT}
    digest = hashlib.sha256(canonical_json(sealed)).hexdigest()
    signature = dict(event.get("signature") or {})
    if key is not None:
        signature = {
            "signature_status": "signed_v1",
            "algorithm": "ed25519",
            "key_id": key.key_id,
            "public_key_fingerprint": key.fingerprint,
            "signature_b64": key.sign_b64(bytes.fromhex(digest)),
            "signed_message": "open_graph_event_sha256_bytes",
            "signed_at": event.get("created_at", DEFAULT_TIME),
        }
    sealed["signature"] = signature
    sealed["content_sha256"] = digest
    sealed["event_id"] = "sha256:" + digest
    return sealed


def resign(event: Mapping[str, Any], key: TestKey, *, update_signer: bool = True) -> dict[str, Any]:
    """Re-seal a (possibly edited) event and sign it with ``key``."""
    edited = copy.deepcopy(dict(event))
    if update_signer:
        edited["signer"] = {
            **edited.get("signer", {}),
            **{k: v for k, v in key.signer().items() if k != "signer_type"},
        }
    return seal(edited, key)


def make_event(
    key: TestKey,
    *,
    subject: str,
    event_type: str,
    payload: Mapping[str, Any] | None = None,
    target: str | None = None,
    created_at: str = DEFAULT_TIME,
    prev_event: str | None = None,
    supersedes: Sequence[str] = (),
    signer_type: str = "test_signer",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A signed event. ``target`` defaults to the type's required target, else ``"graph"``."""
    event: dict[str, Any] = {
        "event_type": event_type,
        "subject_pith_number": subject,
        "target": target or REQUIRED_TARGETS.get(event_type, "graph"),
        "payload": dict(payload or {}),
        "signer": key.signer(signer_type),
        "created_at": created_at,
        "supersedes": list(supersedes),
        "prev_event": prev_event,
        "schema_version": "1.0",
        **(extra or {}),
    }
    return seal(event, key)


def record_created_payload(
    canonical_record: Mapping[str, Any], key: TestKey, *, signed_at: str = DEFAULT_TIME
) -> dict[str, Any]:
    """The payload of a record_created event, with a receipt signed by ``key``."""
    digest = hashlib.sha256(canonical_json(canonical_record)).hexdigest()
    source = canonical_record["source"]
    return {
        "canonical_record": copy.deepcopy(dict(canonical_record)),
        "canonical_sha256": digest,
        "receipt": {
            "kind": "pith_receipt",
            "key_id": key.key_id,
            "algorithm": "ed25519",
            "signed_at": signed_at,
            "signature_b64": key.sign_b64(bytes.fromhex(digest)),
            "signed_message": "canonical_sha256_bytes",
            "builder_version": "pith-graph-testing",
            "receipt_version": "0.3",
            "canonical_sha256": digest,
            "signature_status": "signed_v1",
            "public_key_fingerprint": key.fingerprint,
        },
        "source_kind": source["kind"],
        "source_id": source["id"],
        "source_version": source["version"],
        "attestation_state": "computed",
    }


def aliases_for(canonical_record: Mapping[str, Any], created_at: str = DEFAULT_TIME) -> list[dict[str, Any]]:
    """The six derived aliases of a record, as a bundle lists them."""
    return [
        {"alias_kind": kind, "alias_value": value, "created_at": created_at}
        for kind, value in derived_aliases(canonical_record)
    ]


def sign_bundle(bundle: Mapping[str, Any], key: TestKey, *, signed_at: str = DEFAULT_TIME) -> dict[str, Any]:
    """Return ``bundle`` with a fresh ``bundle_signature`` by ``key``."""
    unsigned = {k: v for k, v in bundle.items() if k != "bundle_signature"}
    digest = hashlib.sha256(canonical_json(unsigned)).hexdigest()
    return {
        **unsigned,
        "bundle_signature": {
            "signature_status": "signed_v1",
            "algorithm": "ed25519",
            "key_id": key.key_id,
            "public_key_fingerprint": key.fingerprint,
            "signature_b64": key.sign_b64(bytes.fromhex(digest)),
            "signed_message": "bundle_sha256_bytes",
            "signed_at": signed_at,
            "bundle_sha256": digest,
        },
    }


def make_bundle(
    canonical_record: Mapping[str, Any],
    events: Iterable[Any],
    *,
    public_keys: Iterable[TestKey] = (),
    aliases: Sequence[Mapping[str, Any]] | None = None,
    state: Mapping[str, Any] | None = None,
    sign_with: TestKey | None = None,
    built_at: str = DEFAULT_TIME,
) -> dict[str, Any]:
    """A bundle in the registry's shape (keys listed are *not* thereby trusted)."""
    number = pith_number(canonical_record)
    bundle: dict[str, Any] = {
        "bundle_type": BUNDLE_TYPE,
        "bundle_version": "1.0",
        "pith_number": number,
        "short_pith_number": short_pith_number(number),
        "canonical_record": copy.deepcopy(dict(canonical_record)),
        "canonical_sha256": hashlib.sha256(canonical_json(canonical_record)).hexdigest(),
        "source": dict(canonical_record["source"]),
        "source_aliases": list(aliases) if aliases is not None else aliases_for(canonical_record),
        "events": [dict(e) if isinstance(e, Mapping) else e for e in events],
        "timestamp_proofs": [],
        "mirror_hints": [],
        "public_keys": [k.entry() for k in public_keys],
        "merge_version": MERGE_VERSION,
        "built_at": built_at,
    }
    if state is not None:
        bundle["state"] = dict(state)
    return sign_bundle(bundle, sign_with) if sign_with is not None else bundle


@dataclass
class History:
    """A subject's signed history under construction: the record and its record_created."""

    registry: TestKey
    canonical_record: dict[str, Any]
    subject: str
    record_created: dict[str, Any]
    clock: int = 0
    keys: dict[str, TestKey] = field(default_factory=dict)

    @classmethod
    def new(
        cls, registry: TestKey, *, arxiv_id: str = "2601.00001", created_at: str = DEFAULT_TIME, **record: Any
    ) -> History:
        """Start a history: a canonical record and a valid record_created signed by ``registry``."""
        canonical_record = make_canonical_record(arxiv_id, **record)
        subject = pith_number(canonical_record)
        created = make_event(
            registry,
            subject=subject,
            event_type="record_created",
            payload=record_created_payload(canonical_record, registry),
            created_at=created_at,
            signer_type="pith_registry",
        )
        return cls(registry, canonical_record, subject, created, keys={registry.key_id: registry})

    def tick(self) -> str:
        """A strictly increasing timestamp (one second per call) after the record's."""
        self.clock += 1
        minutes, seconds = divmod(self.clock, 60)
        hours, minutes = divmod(minutes, 60)
        return f"2026-06-03T{hours % 24:02d}:{minutes:02d}:{seconds:02d}Z"

    def event(self, event_type: str, *, key: TestKey | None = None, **fields: Any) -> dict[str, Any]:
        """A signed event about this subject (default signer: the registry key)."""
        signer = key or self.registry
        self.keys[signer.key_id] = signer
        fields.setdefault("created_at", self.tick())
        return make_event(signer, subject=self.subject, event_type=event_type, **fields)

    def bundle(
        self, events: Iterable[Any] = (), *, include_record: bool = True, **options: Any
    ) -> dict[str, Any]:
        """A bundle of this subject holding ``events`` (record_created first unless excluded)."""
        listed = ([self.record_created] if include_record else []) + [
            dict(e) if isinstance(e, Mapping) else e for e in events
        ]
        options.setdefault("public_keys", list(self.keys.values()))
        return make_bundle(self.canonical_record, listed, **options)

    def trusted(self) -> list[dict[str, Any]]:
        """Key entries for every key this history has signed with."""
        return [k.entry() for k in self.keys.values()]


def process_running(pid: int) -> bool:
    """Whether process ``pid`` runs, read from ``/proc`` (Linux): a zombie waiting for its
    parent does not. For tests that check that worker processes were stopped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            # The state follows the command name, which is in parentheses and may hold spaces.
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
