"""The conformance suite other mirrors run: signed scenarios, their mutations, the vector corpus and its runner.

* :mod:`~pith_graph.conformance.scenarios`: valid signed histories from fixed seeds;
* :mod:`~pith_graph.conformance.mutations`: each turns a scenario into one failure
  and declares, independently of the merge, what merge-v1 must report;
* :mod:`~pith_graph.conformance.corpus`: the portable corpus (``vectors/``, shipped
  as package data with its outside inputs in ``inputs/``);
* :mod:`~pith_graph.conformance.runner`: runs any implementation on the corpus.

docs/conformance.md describes the corpus format and the protocol.
"""

from pith_graph.conformance.cases import FLAGS, Case
from pith_graph.conformance.corpus import (
    CASE_FILES,
    EXPECTED_KEYS,
    build_corpus,
    corpus_path,
    default_fixtures,
    write_corpus,
)
from pith_graph.conformance.mutations import MUTATIONS, Outcome
from pith_graph.conformance.runner import (
    DEFAULT_TIMEOUT,
    CaseResult,
    first_difference,
    format_results,
    run_vectors,
)
from pith_graph.conformance.scenarios import (
    REGISTRY,
    SIGNERS,
    UNTRUSTED,
    Scenario,
    StreamSpec,
    build_scenario,
    stream_of,
    timestamp,
)

__all__ = [
    "CASE_FILES",
    "DEFAULT_TIMEOUT",
    "EXPECTED_KEYS",
    "FLAGS",
    "MUTATIONS",
    "REGISTRY",
    "SIGNERS",
    "UNTRUSTED",
    "Case",
    "CaseResult",
    "Outcome",
    "Scenario",
    "StreamSpec",
    "build_corpus",
    "build_scenario",
    "corpus_path",
    "default_fixtures",
    "first_difference",
    "format_results",
    "run_vectors",
    "stream_of",
    "timestamp",
    "write_corpus",
]
