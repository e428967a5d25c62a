"""Many bundles into one store: ``EventStore.import_bundles`` and ``pith-graph store import DIR``.

Batches are committed one transaction each, results are yielded only once
committed, and a writer killed with SIGKILL loses at most its uncommitted batch
(a real subprocess, a real SIGKILL; no timing assertions).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pith_graph import codes
from pith_graph.documents import load_bundle
from pith_graph.errors import InputError
from pith_graph.rebuild import rebuild_state
from pith_graph.store import EventStore, ImportResult
from pith_graph.store import _import as store_import
from pith_graph.testing import History, TestKey

REGISTRY = TestKey("registry", key_id="test-registry", signer_id="registry.example")
SIGNER = TestKey("batch-signer")
TIMEOUT = 120

# Imports a directory in batches, printing each result (to stderr) as import_bundles yields it.
IMPORTER = """
import sys
from pith_graph._parallel.many import walk_bundle_paths
from pith_graph.store import EventStore
db, batch, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with EventStore(db) as store:
    for done, result in enumerate(store.import_bundles(walk_bundle_paths([directory]), batch_size=batch), 1):
        print(f"[{done}] {result.subject}", file=sys.stderr, flush=True)
"""


def small_bundle(index: int) -> dict[str, Any]:
    """A registry-shaped small bundle: record_created, a graph_snapshot, sometimes a signer's events."""
    history = History.new(REGISTRY, arxiv_id=f"2601.{index:05d}", title=f"paper {index}")
    events = [history.event("graph_snapshot", payload={"graph_snapshot": {"n": index}})]
    prev = None
    for i in range(index % 3):
        events.append(
            history.event(
                "citation_signature", key=SIGNER, target="citation:0", prev_event=prev, payload={"i": i}
            )
        )
        prev = events[-1]["event_id"]
    return history.bundle(events)


def write_mirror(directory: Path, count: int) -> list[dict[str, Any]]:
    """``count`` bundles as ``directory/NN/NNNN.json`` (two levels, as a mirror lays them out)."""
    bundles = [small_bundle(i) for i in range(count)]
    for i, bundle in enumerate(bundles):
        path = directory / f"{i // 10:02d}" / f"{i:04d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(bundle))
    return bundles


def trusted() -> list[dict[str, Any]]:
    return [REGISTRY.entry(), SIGNER.entry()]


def test_batches_import_the_same_as_one_at_a_time(tmp_path: Path) -> None:
    bundles = [small_bundle(i) for i in range(7)]
    with EventStore(tmp_path / "one.sqlite") as one, EventStore(tmp_path / "many.sqlite") as many:
        singles = [one.import_bundle(json.dumps(b).encode(), trusted_keys=trusted()) for b in bundles]
        batched = list(
            many.import_bundles(
                (json.dumps(b).encode() for b in bundles), trusted_keys=trusted(), batch_size=3
            )
        )
        assert batched == singles
        assert all(
            r.count(codes.STORE_NEW) == len(b["events"]) for r, b in zip(batched, bundles, strict=True)
        )
        assert many.subjects() == one.subjects()
        for subject in one.subjects():
            assert (
                many.state(subject, trusted_keys=trusted()).to_json()
                == one.state(subject, trusted_keys=trusted()).to_json()
            )


def test_results_are_yielded_only_once_their_batch_is_committed(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    bundles = [small_bundle(i) for i in range(5)]
    with EventStore(db) as store:
        results = store.import_bundles((json.dumps(b).encode() for b in bundles), batch_size=2)
        first = next(results)
        # Another connection sees the whole first batch (two bundles), nothing of the next.
        with EventStore(db) as reader:
            assert reader.subjects() == sorted(
                [first.subject, History.new(REGISTRY, arxiv_id="2601.00001", title="paper 1").subject]
            )
        assert len([first, *results]) == 5


def test_an_unusable_bundle_stops_after_committing_the_ones_before(tmp_path: Path) -> None:
    good = [json.dumps(small_bundle(i)).encode() for i in range(3)]

    def sources() -> Iterator[bytes]:
        yield from good[:2]
        yield b'{"bundle_type": "pith_open_graph_bundle", "events": [}'
        yield good[2]

    with EventStore(tmp_path / "store.sqlite") as store:
        seen = []
        with pytest.raises(InputError) as raised:
            for result in store.import_bundles(sources(), batch_size=10):
                seen.append(result.subject)
        assert raised.value.code == codes.E_NOT_JSON
        assert store.subjects() == sorted(seen) and len(seen) == 2


def test_batch_size_must_be_positive(tmp_path: Path) -> None:
    with EventStore() as store, pytest.raises(InputError):
        list(store.import_bundles([], batch_size=0))


@pytest.mark.slow
def test_sigkill_loses_at_most_the_uncommitted_batch(tmp_path: Path) -> None:
    count, batch = 240, 7
    bundles = write_mirror(tmp_path / "mirror", count)
    events = {b["pith_number"]: len(b["events"]) for b in bundles}
    db = tmp_path / "store.sqlite"
    command = [sys.executable, "-c", IMPORTER, str(db), str(batch), str(tmp_path / "mirror")]
    reported = killed_after_reports(command, column=1, reports=3 * batch)
    assert_at_most_one_batch_lost(db, reported, batch, count, events)


def killed_after_reports(command: list[str], *, column: int, reports: int) -> list[str]:
    """Run an importer, SIGKILL it once it has reported ``reports`` bundles (stderr lines
    starting with ``[``, the subject in ``column``), and return every subject it reported."""
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    reported: list[str] = []
    try:
        for line in child.stderr:
            if line.startswith("["):
                reported.append(line.split()[column])
            if len(reported) >= reports:
                child.send_signal(signal.SIGKILL)
                break
        # What it printed before dying counts as reported too.
        reported += [line.split()[column] for line in child.stderr if line.startswith("[")]
    finally:
        child.kill()
        child.wait(timeout=TIMEOUT)
    assert child.returncode == -signal.SIGKILL
    return reported


def assert_at_most_one_batch_lost(
    db: Path, reported: list[str], batch: int, count: int, events: dict[str, int]
) -> None:
    """Every bundle reported is committed, whole; at most one batch more is committed unreported."""
    assert len(reported) < count  # killed midway, else the test proves nothing
    with EventStore(db) as store:
        store.check()
        stored = store.subjects()
        assert set(reported) <= set(stored)
        assert len(stored) - len(reported) <= batch
        # Whole bundles only: a batch is one transaction.
        for subject in stored:
            assert len(store.backend.event_rows(subject)) == events[subject]


def test_an_unusable_bundle_leaves_nothing_of_itself(tmp_path: Path) -> None:
    history = History.new(REGISTRY)
    events = [history.event("mirror_hint", payload={"i": i}) for i in range(5)]
    text = json.dumps(history.bundle(events), separators=(",", ":"))
    last = events[-1]["event_id"]
    bad = text.replace(f'"event_id":"{last}"', f'"event_id":"{last}","event_id":"{last}"')
    assert bad != text
    good = json.dumps(small_bundle(1)).encode()
    with EventStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(InputError) as raised:
            list(store.import_bundles([good, bad.encode()], batch_size=10))
        assert raised.value.code == codes.E_DUPLICATE_KEY
        # The bundle before it is committed; of the unusable one, nothing.
        assert store.subjects() == [json.loads(good)["pith_number"]]


# --- workers, keep_going, errors in place of bundles (issue 19 item 3) --------------------------


def test_workers_import_the_same_as_one_process(tmp_path: Path) -> None:
    directory = tmp_path / "mirror"
    write_mirror(directory, 40)
    (directory / "00" / "bad.json").write_text('{"bundle_type": "pith_open_graph_bundle", "events": [}')
    paths = sorted(directory.rglob("*.json"))
    outcomes = {}
    for workers in (1, 2):
        with EventStore(tmp_path / f"w{workers}.sqlite") as store:
            found = list(
                store.import_bundles(
                    paths, trusted_keys=trusted(), batch_size=7, workers=workers, keep_going=True
                )
            )
            states = {s: store.state(s, trusted_keys=trusted()).to_json() for s in store.subjects()}
        outcomes[workers] = (
            [o if isinstance(o, ImportResult) else (o.code, o.message) for o in found],
            states,
        )
    assert outcomes[1] == outcomes[2]
    results, states = outcomes[1]
    assert len(results) == 41 and len(states) == 40
    [error] = [r for r in results if not isinstance(r, ImportResult)]
    assert error[0] == codes.E_NOT_JSON and "bad.json" in error[1]


def test_keep_going_yields_each_error_in_its_place_and_goes_on(tmp_path: Path) -> None:
    good = [json.dumps(small_bundle(i)).encode() for i in range(3)]
    missing = InputError("somewhere: no *.json documents in this directory", code=codes.E_NO_DOCUMENTS)
    sources: list[bytes | InputError] = [good[0], b"[1]", missing, good[1], good[2]]
    with EventStore(tmp_path / "s.sqlite") as store:
        found = list(store.import_bundles(sources, batch_size=2, keep_going=True))
        assert [type(o).__name__ for o in found] == [
            "ImportResult",
            "InputError",
            "InputError",
            "ImportResult",
            "ImportResult",
        ]
        assert isinstance(found[1], InputError) and found[1].code == codes.E_NOT_PITH
        assert found[2] is missing
        assert len(store.subjects()) == 3


def test_a_failing_iterator_raises_after_the_bundles_before_it_are_committed(tmp_path: Path) -> None:
    good = [json.dumps(small_bundle(i)).encode() for i in range(3)]

    def sources() -> Iterator[bytes]:
        yield from good
        raise InputError("walking: no *.json documents in this directory", code=codes.E_NO_DOCUMENTS)

    for workers in (1, 2):
        db = tmp_path / f"s{workers}.sqlite"
        with EventStore(db) as store:
            seen = []
            with pytest.raises(InputError) as raised:
                for result in store.import_bundles(
                    sources(), batch_size=10, workers=workers, keep_going=True
                ):
                    assert isinstance(result, ImportResult)
                    seen.append(result.subject)
            assert raised.value.code == codes.E_NO_DOCUMENTS
        with EventStore(db) as reader:  # committed, not only visible to the writer
            assert reader.subjects() == sorted(seen) and len(seen) == 3


# --- a large bundle, a chunk at a time (issue 18 item 12) ---------------------------------------


def test_a_bundle_is_imported_a_chunk_at_a_time_as_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_import, "IMPORT_CHUNK", 3)
    monkeypatch.setattr(store_import, "SPLIT_MIN_BYTES", 0)  # split, however small
    history = History.new(REGISTRY)
    events = [history.event("mirror_hint", payload={"i": i}) for i in range(10)]
    events.append(dict(events[4], payload={"forged": True}))  # a forged copy: kept, invalid
    bundle = history.bundle(events)
    text = json.dumps(bundle, separators=(",", ":")).encode()
    with EventStore(tmp_path / "chunked.sqlite") as chunked, EventStore(tmp_path / "whole.sqlite") as whole:
        result = chunked.import_bundle(text, trusted_keys=trusted())
        # The whole bundle at once, as a parsed mapping (never split): the same outcome.
        expected = whole.import_bundle(bundle, trusted_keys=trusted())
        assert result == expected
        assert result.count(codes.STORE_NEW) == len(bundle["events"]) - 1 == 11
        assert result.count(codes.STORE_INVALID) == 1
        state = chunked.state(history.subject, trusted_keys=trusted()).to_json()
        assert state == whole.state(history.subject, trusted_keys=trusted()).to_json()
        assert state == rebuild_state(text, trusted_keys=trusted()).to_json()


def test_an_unreadable_event_in_a_late_chunk_leaves_nothing_of_the_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_import, "IMPORT_CHUNK", 2)
    monkeypatch.setattr(store_import, "SPLIT_MIN_BYTES", 0)
    history = History.new(REGISTRY)
    events = [history.event("mirror_hint", payload={"i": i}) for i in range(7)]
    text = json.dumps(history.bundle(events), separators=(",", ":"))
    last = events[-1]["event_id"]
    bad = text.replace(f'"event_id":"{last}"', f'"event_id":"{last}","event_id":"{last}"').encode()
    path = tmp_path / "bad.json"
    path.write_bytes(bad)
    with pytest.raises(InputError) as whole:
        load_bundle(bad)
    with EventStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(InputError) as raised:
            store.import_bundle(path)
        # The error of the full parse (its location in the whole file), naming the file.
        assert raised.value.code == whole.value.code == codes.E_DUPLICATE_KEY
        assert raised.value.message == f"{path}: {whole.value.message}"
        assert store.subjects() == []
