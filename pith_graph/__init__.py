"""pith_graph: the reference implementation of the Pith open-graph merge engine.

Rebuild the merged state of a portable bundle with the deterministic merge-v1
rules, byte-identical to the registry's, and verify every registry document::

    import pith_graph
    state = pith_graph.rebuild_state("bundle.json")   # trusts the registry key only
    print(state.state_sha256)
    report = pith_graph.verify_bundle("bundle.json")
    report.raise_for_problems()
    with pith_graph.EventStore("mirror.sqlite") as store:   # a durable, append-only store
        store.import_bundle("bundle.json")

``__all__`` is what a user calls; lower-level helpers stay importable from
their modules (``pith_graph.canonical``, ``pith_graph.events``, ...). The
normative rules are in docs/merge-v1.md; each section names the function
that implements it.
"""

import pith_graph._startup  # noqa: F401  # first: Ctrl-C while the command starts (see there)
from pith_graph.canonical import canonical_json, canonical_sha256, loads
from pith_graph.errors import InputError, PithGraphError, StoreError, TrustError, VerificationError
from pith_graph.identifiers import (
    derived_aliases,
    fingerprint_b32,
    fingerprint_hex,
    pith_number,
    short_pith_number,
)
from pith_graph.keys import REGISTRY_KEY_ID, KeyRing, TrustedKey, TrustedKeys
from pith_graph.merge import MergeResult, merge
from pith_graph.rebuild import rebuild_state
from pith_graph.report import Problem, Report
from pith_graph.state import State
from pith_graph.store import EventStore
from pith_graph.verify import (
    verify_bundle,
    verify_document,
    verify_graph_snapshot,
    verify_record,
    verify_state,
)

__version__ = "0.1.0"

__all__ = [
    "REGISTRY_KEY_ID",
    "EventStore",
    "InputError",
    "KeyRing",
    "MergeResult",
    "PithGraphError",
    "Problem",
    "Report",
    "State",
    "StoreError",
    "TrustError",
    "TrustedKey",
    "TrustedKeys",
    "VerificationError",
    "__version__",
    "canonical_json",
    "canonical_sha256",
    "derived_aliases",
    "fingerprint_b32",
    "fingerprint_hex",
    "loads",
    "merge",
    "pith_number",
    "rebuild_state",
    "short_pith_number",
    "verify_bundle",
    "verify_document",
    "verify_graph_snapshot",
    "verify_record",
    "verify_state",
]
