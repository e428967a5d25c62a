"""Deterministic large synthetic bundles for the benchmarks.

A bundle of ``n`` events about one subject: the registry's record_created and a
graph_snapshot chain, plus many signers each keeping a few streams
(target, signer_id) of citation signatures, attestations, anchors, replication
records and mirror hints. Each stream is a ``prev_event`` chain; a few events
supersede their predecessor. Payloads are about 3 KB of canonical JSON, shaped
like the registry's. Everything is signed with real keys from
:mod:`pith_graph.testing`, so the bytes depend only on ``(n, seed)``.

Generated files are cached under ``benchmarks/data/`` (git-ignored).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from pathlib import Path
from typing import Any, Final

from pith_graph.testing import DEFAULT_TIME, History, TestKey, make_event

__all__ = ["DATA_DIR", "bundle_path", "ensure_bundle", "generate_bundle", "signer_keys", "trusted_entries"]

DATA_DIR: Final = Path(__file__).resolve().parent / "data"
FORMAT_VERSION: Final = 1  # bump when the generated shape changes (invalidates the cache)
SIGNER_COUNT: Final = 24
STREAMS_PER_SIGNER: Final = 4
SNAPSHOT_EVERY: Final = 1000
SUPERSEDE_EVERY: Final = 50
_EPOCH: Final = dt.datetime(2026, 6, 3, tzinfo=dt.UTC)

_STREAM_TYPES: Final = (
    ("citation_signature", "citation"),
    ("author_attestation", "author"),
    ("storage_attestation", "storage"),
    ("timestamp_anchor", "anchor"),
    ("replication_record", "replication"),
    ("mirror_hint", "mirror"),
)
_WORDS: Final = [
    "expert",
    "replication",
    "load",
    "imbalance",
    "mixture",
    "token",
    "routing",
    "serving",
    "latency",
    "throughput",
    "cache",
    "graph",
    "citation",
    "claim",
    "evidence",
    "theorem",
    "proof",
    "dataset",
    "benchmark",
    "model",
    "parameter",
    "gradient",
    "attention",
    "sparse",
    "dense",
    "kernel",
    "device",
    "memory",
    "bandwidth",
    "schedule",
    "partition",
    "shard",
    "replica",
]


def registry_key() -> TestKey:
    """The benchmark registry key."""
    return TestKey("bench-registry", key_id="bench-registry", signer_id="pith.science")


def signer_keys() -> list[TestKey]:
    """The benchmark's non-registry signers."""
    return [TestKey(f"bench-signer-{i:02d}") for i in range(SIGNER_COUNT)]


def trusted_entries() -> list[dict[str, Any]]:
    """Key entries for every key that signs the benchmark bundles."""
    return [k.entry() for k in (registry_key(), *signer_keys())]


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _hex(rng: random.Random) -> str:
    return hashlib.sha256(rng.getrandbits(64).to_bytes(8, "little")).hexdigest()


def _payload(rng: random.Random, event_type: str, index: int) -> dict[str, Any]:
    """About 3 KB of registry-shaped payload."""
    return {
        "kind": event_type,
        "sequence": index,
        "summary": _text(rng, 40),
        "contexts": [
            {"section": f"s{rng.randrange(1, 12)}", "text": _text(rng, 30), "sha256": _hex(rng)}
            for _ in range(6)
        ],
        "evidence": {
            "count": 8,
            "items": [_hex(rng) for _ in range(8)],
            "snapshot_sha256": _hex(rng),
            "flags": {"reviewed": rng.random() < 0.5, "automatic": True, "notes": None},
        },
        "builder_version": "pith-bench-builder-v1",
    }


def _created_at(second: int) -> str:
    return (_EPOCH + dt.timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_bundle(n: int, *, seed: int = 0) -> dict[str, Any]:
    """A bundle with ``n`` events (record_created included), all valid under :func:`trusted_entries`."""
    rng = random.Random(f"pith-bench-{seed}-{n}")
    registry = registry_key()
    history = History.new(registry, arxiv_id="2601.00042", created_at=DEFAULT_TIME, title="A benchmark paper")
    signers = signer_keys()
    streams = [
        (key, *_STREAM_TYPES[(i + s) % len(_STREAM_TYPES)], f"{i:02d}-{s}")
        for i, key in enumerate(signers)
        for s in range(STREAMS_PER_SIGNER)
    ]
    heads: dict[tuple[str, str], str] = {}
    events: list[dict[str, Any]] = [history.record_created]
    for index in range(1, n):
        if index % SNAPSHOT_EVERY == 1:
            key, event_type, target = registry, "graph_snapshot", "graph"
        else:
            key, event_type, prefix, suffix = rng.choice(streams)
            target = f"{prefix}:{suffix}"
        stream = (target, key.signer_id)
        prev = heads.get(stream)
        supersedes = [prev] if prev is not None and index % SUPERSEDE_EVERY == 0 else []
        event = make_event(
            key,
            subject=history.subject,
            event_type=event_type,
            target=target,
            payload=_payload(rng, event_type, index),
            created_at=_created_at(index),
            prev_event=prev,
            supersedes=supersedes,
            signer_type="pith_registry" if key is registry else "bench_signer",
        )
        heads[stream] = event["event_id"]
        events.append(event)
    return history.bundle(events[1:], public_keys=[registry, *signers])


def bundle_path(n: int, seed: int = 0, data_dir: Path = DATA_DIR) -> Path:
    """Where the cached bundle of ``n`` events lives."""
    return data_dir / f"bundle-v{FORMAT_VERSION}-{n}-{seed}.json"


def ensure_bundle(n: int, seed: int = 0, data_dir: Path = DATA_DIR) -> Path:
    """The cached bundle of ``n`` events, generating it (compact JSON, as the registry serves) if needed."""
    path = bundle_path(n, seed, data_dir)
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(generate_bundle(n, seed=seed), separators=(",", ":"), ensure_ascii=False).encode()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


if __name__ == "__main__":  # pragma: no cover
    import sys

    for size in [int(a) for a in sys.argv[1:]] or [1000]:
        print(ensure_bundle(size))
