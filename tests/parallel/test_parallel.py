"""Parallel signature verification gives exactly the serial result.

Bundles are generated with real keys and real signatures (pith_graph.testing),
with invalid events of every common kind, duplicate copies, supersedes and
forks; the parallel path runs real worker processes.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from concurrent.futures import process as _futures_process
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pith_graph import codes, ed25519
from pith_graph._parallel import pool as pooling
from pith_graph._parallel import scratch as scratching
from pith_graph._parallel import signatures, stage1
from pith_graph.canonical import loads
from pith_graph.documents import SplitBundle, load_bundle, split_bundle
from pith_graph.ed25519 import Verifier
from pith_graph.errors import InputError
from pith_graph.events import check_event, unit_id
from pith_graph.keys import KeyRing
from pith_graph.merge import MergeResult, merge_checked, merge_copies
from pith_graph.rebuild import rebuild, rebuild_state
from pith_graph.testing import History, TestKey, process_running, resign

rebuild_module = importlib.import_module("pith_graph.rebuild")  # the package exports a function of that name

REGISTRY = TestKey("par-registry")
SIGNERS = [TestKey(f"par-signer-{i}") for i in range(3)]
STRANGER = TestKey("par-stranger")  # never trusted


def build_bundle(n: int, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A bundle of about ``n`` events: chains per stream, supersedes, forks, invalid and duplicate copies."""
    rng = random.Random(seed)
    history = History.new(REGISTRY, arxiv_id=f"2601.{seed:05d}")
    heads: dict[tuple[str, str], str] = {}
    events: list[dict[str, Any]] = []
    for i in range(n):
        key = rng.choice(SIGNERS)
        target = f"citation:{rng.randrange(3)}"
        prev = heads.get((target, key.signer_id))
        supersedes = [prev] if prev is not None and rng.random() < 0.1 else []
        event = history.event(
            "citation_signature",
            key=key,
            target=target,
            prev_event=prev,
            supersedes=supersedes,
            payload={"i": i},
        )
        heads[(target, key.signer_id)] = event["event_id"]
        kind = rng.random()
        if kind < 0.05:  # a fork: a second event after the same predecessor
            events.append(
                history.event("citation_signature", key=key, target=target, prev_event=prev, payload={"f": i})
            )
        elif kind < 0.10:  # bad signature: another event's signature
            other = history.event("citation_signature", key=key, payload={"x": i})
            event = {
                **event,
                "signature": {**event["signature"], "signature_b64": other["signature"]["signature_b64"]},
            }
        elif kind < 0.13:  # a copy signed by an untrusted key
            events.append(resign({**event, "payload": {"stranger": i}}, STRANGER))
        elif kind < 0.16:  # content hash mismatch
            event = {**event, "payload": {"i": -i}}
        elif kind < 0.18:  # malformed
            events.append({"event_type": "citation_signature", "signature": "nope"})
        elif kind < 0.22:  # a second, tampered copy of a valid event (same event_id)
            events.append({**event, "payload": {"tampered": i}})
        events.append(event)
    events.append({"event_type": "citation_signature", "signature": None})  # always one malformed
    rng.shuffle(events)
    return history.bundle(events, public_keys=[REGISTRY, *SIGNERS, STRANGER]), events


def trusted() -> list[dict[str, Any]]:
    return [k.entry() for k in (REGISTRY, *SIGNERS)]


def merge_with(raw: dict[str, Any], ring: KeyRing, verifier: Verifier) -> MergeResult:
    return merge_checked(
        raw["events"],
        subject=raw["pith_number"],
        aliases=raw["source_aliases"],
        trusted_keys=ring,
        verifier=verifier,
    )


def outcome(result: MergeResult) -> tuple[bytes, dict[str, str], dict[str, str | None]]:
    return result.state.to_json(), result.reasons, {uid: c.reason for uid, c in result.units.items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_parallel_merge_equals_serial(seed: int) -> None:
    bundle, _ = build_bundle(120, seed)
    raw, _model = load_bundle(bundle)
    ring = KeyRing.from_entries(trusted())
    serial = merge_with(raw, ring, Verifier())
    verifier, executor, cache = signatures.parallel_verifier(
        raw["events"], ring, workers=2, min_events=0, chunk_size=16
    )
    assert executor is not None and cache is not None
    try:
        par = merge_with(raw, ring, verifier)
    finally:
        executor.shutdown()
    assert outcome(par) == outcome(serial)
    # The bundle really holds what it is meant to test.
    reasons = set(serial.reasons.values())
    assert {"bad_signature", "unknown_key", "content_hash_mismatch", "malformed"} <= reasons
    assert serial.state.equivocation_count > 0
    assert serial.state.valid_event_count > 50


def test_rebuild_state_with_workers_equals_serial_on_a_large_bundle() -> None:
    bundle, _ = build_bundle(pooling.PARALLEL_MIN_EVENTS, 7)
    assert len(bundle["events"]) >= pooling.PARALLEL_MIN_EVENTS
    serial = rebuild_state(bundle, trusted_keys=trusted(), workers=1)
    par = rebuild_state(bundle, trusted_keys=trusted(), workers=2)
    assert par.to_json() == serial.to_json()
    # Given bytes, helpers run stage 1 on chunks of the unparsed events (the streaming path).
    data = json.dumps(bundle).encode()
    assert signatures.prepass_jobs(data, KeyRing.from_entries(trusted())) is not None
    assert rebuild_state(data, trusted_keys=trusted(), workers=2).to_json() == serial.to_json()
    assert rebuild_state(data, trusted_keys=trusted()).to_json() == serial.to_json()  # the default
    assert par.invalid_event_count > 0 and par.equivocation_count > 0
    # Through rebuild(): the caller's cache (the store's warm path) learns every worker verdict.
    inner = signatures.MemorySignatureCache()
    result, _model, raw, ring = rebuild(
        bundle, trusted_keys=trusted(), verifier=Verifier(cache=inner), workers=2
    )
    assert result.state.to_json() == serial.to_json()
    assert len(inner) >= len(signatures.signature_jobs(raw["events"], ring))


def test_both_backends_in_workers_agree() -> None:
    bundle, _ = build_bundle(60, 4)
    raw, _model = load_bundle(bundle)
    ring = KeyRing.from_entries(trusted())
    expected = outcome(merge_with(raw, ring, Verifier("cryptography")))
    backends = ed25519.available_backends()
    assert backends == ["nacl", "cryptography"]  # PyNaCl is a test dependency: both are compared
    for name in backends:
        verifier, executor, _cache = signatures.parallel_verifier(
            raw["events"], ring, workers=2, min_events=0, verifier=Verifier(name)
        )
        assert executor is not None
        try:
            assert outcome(merge_with(raw, ring, verifier)) == expected
        finally:
            executor.shutdown()


def test_small_bundles_stay_serial() -> None:
    bundle, _ = build_bundle(10, 5)
    raw, _model = load_bundle(bundle)
    ring = KeyRing.from_entries(trusted())
    verifier, executor, cache = signatures.parallel_verifier(raw["events"], ring, workers=2)
    assert executor is None and cache is None and verifier.cache is None


def test_drain_hands_every_verdict_to_inner() -> None:
    bundle, _ = build_bundle(40, 8)
    raw, _model = load_bundle(bundle)
    ring = KeyRing.from_entries(trusted())
    inner = signatures.MemorySignatureCache()
    _verifier, executor, cache = signatures.parallel_verifier(
        raw["events"], ring, workers=2, min_events=0, verifier=Verifier(cache=inner)
    )
    assert executor is not None and cache is not None
    try:
        cache.drain()
    finally:
        executor.shutdown()
    jobs = signatures.signature_jobs(raw["events"], ring)
    assert len(inner) == len(jobs) > 0
    # Every recorded verdict is the serial pinned verdict.
    plain = Verifier()
    assert all(inner.lookup(*t) == plain.verify(*t) for t in jobs)


def test_signature_jobs_skip_unreadable_and_untrusted_events() -> None:
    key = SIGNERS[0]
    history = History.new(REGISTRY)
    good = history.event("citation_signature", key=key)
    untrusted = history.event("citation_signature", key=STRANGER)
    ring = KeyRing.from_entries(trusted())
    garbage: list[Any] = [
        None,
        [],
        {"signature": {}},
        {**good, "content_sha256": "zz" * 32},
        {**good, "signature": {**good["signature"], "signature_b64": base64.b64encode(b"short").decode()}},
    ]
    jobs = signatures.signature_jobs([good, good, untrusted, *garbage], ring)
    assert jobs == [
        (
            key.public_key,
            base64.b64decode(good["signature"]["signature_b64"]),
            bytes.fromhex(good["content_sha256"]),
        )
    ]


@pytest.fixture(autouse=True)
def _two_cpus_at_least(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parallel paths under test need ``workers=2`` honoured on a one-CPU machine
    too (resolve_workers caps a count at the usable CPUs)."""
    real = pooling.usable_cpus()
    monkeypatch.setattr(pooling, "usable_cpus", lambda: max(real, 2))


@pytest.mark.parametrize(
    ("cpus", "workers", "expected"),
    [
        (2, None, 2),
        (8, None, pooling.MAX_AUTO_WORKERS),
        (8, 0, 8),
        (2, 0, 2),
        (8, 1, 1),
        (8, 3, 3),
        (2, 4, 2),  # more processes than CPUs only slow a CPU-bound rebuild down
        (8, 99999, 8),
    ],
)
def test_resolve_workers(
    monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int | None, expected: int
) -> None:
    monkeypatch.setattr(pooling, "usable_cpus", lambda: cpus)
    assert pooling.resolve_workers(workers) == expected


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("during", [False, True])
def test_a_dead_worker_stops_the_others_even_after_tasks_were_taken_back(
    monkeypatch: pytest.MonkeyPatch, during: bool
) -> None:
    """CPython 3.11 (gh-107219): the pool tripped over a cancelled task when a worker died
    (killed by the memory killer, or a signal), printed a traceback, and left the other
    workers running, each holding its mapping of the bundle's scratch copy. ``during``: a
    task is also taken back while the pool handles the death (made slow here to widen
    the moment)."""
    thread_errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    handling = threading.Event()
    if during:
        stock = _futures_process._ExecutorManagerThread.terminate_broken

        def slow(self: Any, *args: Any) -> None:
            handling.set()
            time.sleep(0.5)
            stock(self, *args)

        monkeypatch.setattr(_futures_process._ExecutorManagerThread, "terminate_broken", slow)
    pool = pooling.worker_pool(2)
    try:
        running = [pool.submit(time.sleep, 600) for _ in range(2)]
        queued = [pool.submit(time.sleep, 600) for _ in range(6)]
        deadline = time.monotonic() + 60
        while not all(f.running() for f in running) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert queued[-1].cancel()  # taken back, as Stage1Helpers.chunks() takes chunks back
        workers = list(pool._processes or {})
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        if during:
            assert handling.wait(60)
            assert not queued[-2].cancel()  # waits for the pool to fail it, rather than racing it
        while any(map(process_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(process_running, workers))
        while not all(f.done() for f in running) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(isinstance(f.exception(), BrokenExecutor) for f in running)
        assert thread_errors == []
    finally:
        pooling.stop_pool(pool)


def test_a_negative_worker_count_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    for call in (
        partial(pooling.resolve_workers, -1),
        partial(rebuild_state, tmp_path / "missing.json", workers=-2),
        partial(rebuild, tmp_path / "missing.json", workers=-3),
    ):
        with pytest.raises(InputError) as caught:
            call()
        assert caught.value.code == codes.E_USAGE


def test_pool_workers_leave_interrupts_to_the_caller() -> None:
    """A terminal's Ctrl-C reaches every process of the group; a worker taking it would
    print its own traceback (the caller stops its workers itself)."""
    with pooling.worker_pool(1) as pool:
        assert pool.submit(signal.getsignal, signal.SIGINT).result(timeout=60) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler  # this process keeps its own


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_stop_pool_ends_running_tasks_at_once() -> None:
    pool = pooling.worker_pool(2)
    pids = {pool.submit(os.getpid).result(timeout=60) for _ in range(4)}
    running = [pool.submit(time.sleep, 600) for _ in range(2)]
    queued = pool.submit(time.sleep, 600)
    deadline = time.monotonic() + 60
    while not all(f.running() for f in running) and time.monotonic() < deadline:
        time.sleep(0.01)
    pooling.stop_pool(pool)
    while any(map(process_running, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(process_running, pids))  # not after the 600 s sleeps
    # The queued task never ran: cancelled, or failed with the pool its workers left.
    # (Polled: a future the pool cancels on shutdown does not wake concurrent.futures.wait.)
    while not all(f.done() for f in (queued, *running)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queued.cancelled() or isinstance(queued.exception(), BrokenExecutor)
    assert all(isinstance(f.exception(), BrokenExecutor) for f in running)


def test_verify_many_cli_over_a_directory(tmp_path: Path) -> None:
    """The real CLI in a real subprocess: one line per bundle, exit 1 when one has problems."""
    history = History.new(REGISTRY, arxiv_id="2601.00011")
    first = history.event("citation_signature", key=SIGNERS[0], payload={"n": 1})
    good = history.bundle(
        [first, history.event("citation_signature", key=SIGNERS[0], prev_event=first["event_id"])]
    )
    forked, _ = build_bundle(30, 12)  # has invalid events and forks: problems
    (tmp_path / "nested").mkdir()
    (tmp_path / "a.json").write_text(json.dumps(good))
    (tmp_path / "nested" / "b.json").write_text(json.dumps(forked))
    keys = tmp_path / "keys.txt"
    keys.write_text(json.dumps(trusted()))
    command = [sys.executable, "-m", "pith_graph", "verify-many", "--trusted-keys", str(keys)]
    run = subprocess.run(
        [*command, "--workers", "2", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{tmp_path / 'a.json'}: ") and lines[1].startswith(
        f"{tmp_path / 'nested' / 'b.json'}: "
    )
    assert ": FAILED" in lines[1] and "invalid_event" in lines[1]
    serial = subprocess.run([*command, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert serial.stdout == run.stdout
    only_good = subprocess.run(
        [*command, "--progress", str(tmp_path / "a.json")], capture_output=True, text=True, timeout=120
    )
    assert only_good.returncode == 0, only_good.stdout
    assert "1/1" in only_good.stderr


def test_prepass_reads_the_same_jobs_as_the_parsed_events() -> None:
    bundle, _ = build_bundle(150, 10)
    # Odd values where events should be must not switch the pre-pass off.
    bundle["events"] += [5, "text", None, [1, {"a": 2}], 1.5, True, {"signature": "not an object"}]
    raw, _model = load_bundle(bundle)
    ring = KeyRing.from_entries(trusted())
    data = json.dumps(bundle).encode()
    assert signatures.prepass_jobs(data, ring, min_events=0) == signatures.signature_jobs(raw["events"], ring)
    # Bundle keys are pre-verified only when the caller trusts them.
    registry_only = KeyRing.from_entries([REGISTRY.entry()])
    with_bundle_keys = signatures.prepass_jobs(data, registry_only, trust_bundle_keys=True, min_events=0)
    assert with_bundle_keys is not None
    assert len(with_bundle_keys) > len(signatures.prepass_jobs(data, registry_only, min_events=0) or [])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"events": 5}',
        b'{"events": [1, 2]}',
        b"[" * 100_000,
        b'{"events": [' + b'{"x": [' * 5000 + b"]}",
    ],
)
def test_prepass_gives_up_quietly_on_what_it_cannot_read(data: bytes) -> None:
    assert signatures.prepass_jobs(data, KeyRing.from_entries(trusted()), min_events=0) in (None, [])


@pytest.fixture(scope="module")
def large_text() -> str:
    bundle, _ = build_bundle(pooling.PARALLEL_MIN_EVENTS, 12)
    return json.dumps(bundle)


def _deep(depth: int) -> str:
    return '{"deep": ' + "[" * depth + "]" * depth + ", "


def _in_last_payload(text: str, inserted: str) -> str:
    """``inserted`` at the start of the last event's payload (a chunk the helpers run first)."""
    at = text.rindex('"payload": {') + len('"payload": {')
    if text[at] == "}":  # an empty payload: no member follows the inserted ones
        inserted = inserted.rstrip(", ")
    return text[:at] + inserted + text[at:]


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda t: t.replace('"payload": {', '"payload": {"i": 0, "i": 1, ', 1), "duplicate_key"),
        (lambda t: _in_last_payload(t, '"i": 0, "i": 1, '), "duplicate_key"),
        (lambda t: _in_last_payload(t, _deep(70)[1:]), "too_deep"),
        (lambda t: t.replace('"payload": {', '"payload": ' + _deep(70), 1), "too_deep"),
        # Not a bundle *and* a duplicate key: the strict parse speaks first.
        (
            lambda t: t.replace('"pith_open_graph_bundle"', '"something_else"', 1).replace(
                '"payload": {', '"payload": {"i": 0, "i": 1, ', 1
            ),
            "duplicate_key",
        ),
        (lambda t: t.replace('"pith_open_graph_bundle"', '"something_else"', 1), "not_a_pith_document"),
    ],
    ids=[
        "duplicate key in a payload",
        "duplicate key in the last payload",
        "too deep in the last payload",
        "too deep in a payload",
        "duplicate key in a non-bundle",
        "not a bundle",
    ],
)
def test_helpers_never_change_the_error_of_a_bad_bundle(
    large_text: str, edit: Any, code: str, tmp_path: Path
) -> None:
    """Helpers start before the strict parse of every event (the pre-pass, or stage 1 on chunks
    from the back): the error is still the serial one, wherever the defect is."""
    text = edit(large_text)
    path = tmp_path / "bundle.json"
    path.write_text(text)
    for source in (text.encode(), path, str(path)):
        outcomes = []
        for workers in (1, 2):
            with pytest.raises(InputError) as caught:
                rebuild_state(source, trusted_keys=trusted(), workers=workers)
            outcomes.append((caught.value.code, caught.value.message))
        assert outcomes[0] == outcomes[1]
        assert outcomes[0][0] == code


def test_prepass_never_changes_the_outcome_of_a_hostile_bundle() -> None:
    """Duplicate keys: the lenient pre-pass reads the last signature, the strict parse refuses the document."""
    bundle, _ = build_bundle(pooling.PARALLEL_MIN_EVENTS, 11)
    text = json.dumps(bundle)
    first = text.index('"signature": {')
    hostile = (
        text[:first] + '"signature": {"key_id": "x", "signature_b64": "AA=="}, ' + text[first:]
    ).encode()
    errors = []
    for workers in (1, 2):
        with pytest.raises(InputError) as caught:
            rebuild_state(hostile, trusted_keys=trusted(), workers=workers)
        errors.append((caught.value.code, caught.value.message))
    assert errors[0] == errors[1] and errors[0][0] == "duplicate_key"


def test_chunks_no_worker_ran_are_verified_in_process() -> None:
    """A pool that is gone (here: shut down before any lookup) changes nothing but speed."""
    bundle, _ = build_bundle(80, 9)
    raw, _model = load_bundle(bundle)
    ring = KeyRing.from_entries(trusted())
    serial = merge_with(raw, ring, Verifier())
    verifier, executor, cache = signatures.parallel_verifier(
        raw["events"], ring, workers=2, min_events=0, chunk_size=8
    )
    assert executor is not None and cache is not None
    executor.shutdown(wait=True, cancel_futures=True)
    assert outcome(merge_with(raw, ring, verifier)) == outcome(serial)


# --- Stage 1 in helpers (rebuild_state's streaming path) ---------------------------------


def _split(bundle: dict[str, Any]) -> SplitBundle:
    split = split_bundle(json.dumps(bundle).encode())
    assert split is not None
    return split


def _copy(data: bytes) -> scratching.ScratchCopy:
    scratch = scratching.scratch_copy(data, 2, min_bytes=0)
    assert scratch is not None
    return scratch


def _stage1(
    split: SplitBundle, scratch: scratching.ScratchCopy, chunk_size: int | None = 16
) -> stage1.Stage1Helpers:
    """Stage 1 on two helpers under the trusted keys (``chunk_size`` None: the bundle's own size)."""
    name = Verifier().backend.name
    helpers = stage1.start_stage1(
        split,
        scratch,
        stage1.spawn_helpers(2, name),
        keyring=KeyRing.from_entries(trusted()),
        backend_name=name,
        chunk_size=chunk_size,
        min_events=0,
    )
    assert helpers is not None
    return helpers


@pytest.mark.parametrize("seed", [1, 2])
def test_stage1_rows_are_check_event_of_each_event(seed: int) -> None:
    """Every row a helper returns is exactly check_event of the same text, run here."""
    data = json.dumps(build_bundle(120, seed)[0]).encode()
    split = split_bundle(data)
    assert split is not None
    ring, verifier, subject = KeyRing.from_entries(trusted()), Verifier(), split.model.pith_number
    scratch = _copy(data)
    helpers = _stage1(split, scratch)
    helpers.executor.shutdown(wait=True)  # every chunk runs in a helper: none is taken back
    try:
        chunks = range(0, len(split.events), helpers.chunk_size)
        rows = [helpers.rows(index) for index in range(len(chunks))]
        assert helpers.stolen == 0
        got = [row for chunk in rows if chunk is not None for row in chunk]
        expected = []
        for text in split.events:
            checked = check_event(loads(bytes(text)), subject=subject, keyring=ring, verifier=verifier)
            expected.append(
                (
                    checked.unit_id,
                    checked.reason,
                    checked.progress,
                    checked.facts,
                    checked.signer_json,
                    checked.payload_json,
                )
            )
        assert got == expected
        assert {row[1] for row in got} >= {None, "bad_signature", "unknown_key", "malformed"}
        assert os.listdir(scratch.directory) == ["bundle.json"]  # each rows file is removed once read
    finally:
        helpers.close()
        scratch.close()
    assert not Path(scratch.directory).exists()  # the scratch files are gone


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_streaming_with_stage1_helpers_equals_serial(seed: int) -> None:
    bundle, _ = build_bundle(150, seed)
    data = json.dumps(bundle).encode()
    serial = rebuild(data, trusted_keys=trusted(), workers=1).result.state  # the full path: one strict parse
    par = rebuild_module._rebuild_bytes(data, trusted(), False, 2, min_events=0, min_bytes=0, chunk_size=8)
    assert par.to_json() == serial.to_json()
    assert rebuild_state(data, trusted_keys=trusted(), workers=1).to_json() == serial.to_json()
    assert serial.invalid_event_count > 0 and serial.equivocation_count > 0


def test_failed_stage1_helpers_change_nothing_but_speed() -> None:
    """Helpers that fail every chunk (here: they read a copy that does not match, where every
    event is white space) leave every chunk to this process, which gives the serial result."""
    bundle, _ = build_bundle(100, 5)
    data = json.dumps(bundle).encode()
    split = split_bundle(data)
    assert split is not None
    scratch = _copy(b" " * len(data))
    helpers = _stage1(split, scratch, chunk_size=16)
    helpers.executor.shutdown(wait=True)
    serial = rebuild_state(data, trusted_keys=trusted(), workers=1)
    try:
        result = merge_copies(
            rebuild_module._copies(split.events, helpers),
            partial(rebuild_module._inspect_copy, split.model.pith_number),
            subject=split.model.pith_number,
            aliases=split.shell["source_aliases"],
            trusted_keys=KeyRing.from_entries(trusted()),
        )
    finally:
        helpers.close()
        scratch.close()
    assert helpers.stolen == len(range(0, len(split.events), 16))
    assert result.state.to_json() == serial.to_json()


def test_stage1_stays_serial_when_it_should() -> None:
    data = json.dumps(build_bundle(40, 6)[0]).encode()
    split = split_bundle(data)
    assert split is not None
    ring, name = KeyRing.from_entries(trusted()), Verifier().backend.name
    assert scratching.scratch_copy(data, 2) is None  # under SCRATCH_MIN_BYTES: no copy, so no helpers
    assert scratching.scratch_copy(data, 1, min_bytes=0) is None
    assert stage1.spawn_helpers(1, name) is None
    assert stage1.spawn_helpers(2, "nope") is None
    executor = stage1.spawn_helpers(2, name)
    assert executor is not None
    with _copy(data) as scratch:
        assert (
            stage1.start_stage1(split, None, executor, keyring=ring, backend_name=name, min_events=0) is None
        )
        assert (
            stage1.start_stage1(split, scratch, None, keyring=ring, backend_name=name, min_events=0) is None
        )
        assert (
            stage1.start_stage1(split, scratch, executor, keyring=ring, backend_name=name) is None
        )  # 40 events
    executor.shutdown(wait=True)
    assert not Path(scratch.directory).exists()


def test_scratch_files_go_to_memory_only_where_there_is_room() -> None:
    """A container's /dev/shm may hold 64 MB: a bundle that would not fit goes to the temporary directory."""
    assert scratching._scratch_root(1 << 62) is None
    shm_usable = os.access("/dev/shm", os.W_OK | os.X_OK) and shutil.disk_usage("/dev/shm").free > 1 << 20
    assert scratching._scratch_root(1000) == ("/dev/shm" if shm_usable else None)


def test_an_error_cancels_every_chunk_no_helper_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """A duplicate key in the first event: this process fails at once, and no queued chunk runs after it
    (the pool's own cancel_futures acts too late, through a weak reference) or writes a scratch file."""
    bundle, _ = build_bundle(300, 3)
    text = json.dumps(bundle)
    at = text.index('"payload": {') + len('"payload": {')
    data = (text[:at] + '"dup": 0, "dup": 1, ' + text[at:]).encode()
    split = split_bundle(data)
    assert split is not None
    closed: list[tuple[stage1.Stage1Helpers, list[Any]]] = []
    original_close = stage1.Stage1Helpers.close

    def close(self: stage1.Stage1Helpers) -> None:
        # The chunks not handed to the pool yet when the rebuild gave up.
        closed.append((self, [f for f in self._futures.values() if not (f.running() or f.done())]))
        original_close(self)

    monkeypatch.setattr(stage1.Stage1Helpers, "close", close)
    executor = stage1.spawn_helpers(2, Verifier().backend.name)
    with _copy(data) as scratch, pytest.raises(InputError) as caught:
        rebuild_module._rebuild_streaming(
            split,
            trusted(),
            False,
            Verifier(),
            scratch=scratch,
            executor=executor,
            min_events=0,
            chunk_size=1,
        )
    assert caught.value.code == "duplicate_key"
    [(helpers, queued)] = closed
    assert len(queued) > 250
    assert all(f.cancelled() or f.done() for f in queued)  # close() returned with nothing left running
    assert sum(f.cancelled() for f in queued) >= len(queued) - 3  # the pool may take one or two meanwhile
    assert not Path(helpers.directory).exists()


def test_scratch_directories_of_dead_processes_are_swept(tmp_path: Path) -> None:
    """A rebuild killed by a signal skips its clean-up; the next one removes what it left."""
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = int(finished.stdout)
    left = tmp_path / f"pith-graph-{dead}-abc"
    (left / "sub").mkdir(parents=True)
    (left / "events.json").write_text("[]")
    alive = tmp_path / f"pith-graph-{os.getpid()}-def"
    alive.mkdir()
    other = tmp_path / f"not-pith-graph-{dead}"
    other.mkdir()
    scratching._sweep_scratch(str(tmp_path))
    assert not left.exists()
    assert alive.exists() and other.exists()


def test_an_error_in_rebuild_cancels_the_signature_chunks(
    monkeypatch: pytest.MonkeyPatch, large_text: str
) -> None:
    """rebuild(): helpers start on the pre-pass, then the strict parse fails; no queued chunk runs on."""
    started: list[Any] = []
    original = rebuild_module._start_helpers

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        started.append(result)
        return result

    monkeypatch.setattr(rebuild_module, "_start_helpers", spy)
    monkeypatch.setattr(signatures, "CHUNK_SIZE", 4)
    monkeypatch.setattr(
        rebuild_module, "start_verification", partial(signatures.start_verification, chunk_size=4)
    )
    data = large_text.replace('"payload": {', '"payload": {"i": 0, "i": 1, ', 1).encode()
    with pytest.raises(InputError) as caught:
        rebuild(data, trusted_keys=trusted(), workers=2)
    assert caught.value.code == "duplicate_key"
    [(_verifier, _executor, cache)] = started
    futures = set(cache._pending.values())
    assert len(futures) > 500
    assert all(f.cancelled() or f.running() or f.done() for f in futures)  # none left queued
    # How many the helpers finished before the parse failed depends on the machine's load
    # (20 of 1312 was seen on a busy one); most were still queued, and are cancelled.
    assert sum(f.cancelled() for f in futures) > len(futures) // 2


def test_stage1_runs_here_when_no_process_can_be_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A sandbox without processes: no helper starts, the rebuild is serial and leaves no scratch behind."""

    def no_processes(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no processes here")

    monkeypatch.setattr(pooling, "worker_pool", no_processes)
    monkeypatch.setattr(scratching, "_scratch_root", lambda size: str(tmp_path))
    bundle, _ = build_bundle(60, 8)
    data = json.dumps(bundle).encode()
    assert split_bundle(data) is not None
    assert stage1.spawn_helpers(2, Verifier().backend.name) is None
    par = rebuild_module._rebuild_bytes(data, trusted(), False, 2, min_events=0, min_bytes=0, chunk_size=8)
    assert par.to_json() == rebuild(data, trusted_keys=trusted(), workers=1).result.state.to_json()
    assert list(tmp_path.iterdir()) == []


_IN_A_POOL_WORKER = """
import json, multiprocessing, sys

def job(args):
    path, keys = args
    from pith_graph.rebuild import rebuild_state
    try:
        return rebuild_state(path, trusted_keys=keys).state_sha256
    except BaseException as exc:
        return f"{type(exc).__name__}: {exc}"

if __name__ == "__main__":
    with multiprocessing.Pool(1) as pool:
        print(pool.map(job, [(sys.argv[1], json.loads(sys.argv[2]))])[0])
"""


def test_a_pool_worker_rebuilds_serially(large_text: str, tmp_path: Path) -> None:
    """A multiprocessing.Pool worker is daemonic and may not start processes: the default
    workers then mean one process (multiprocessing would raise AssertionError instead)."""
    path = tmp_path / "bundle.json"
    path.write_text(large_text)
    script = tmp_path / "in_a_pool.py"
    script.write_text(_IN_A_POOL_WORKER)
    run = subprocess.run(
        [sys.executable, str(script), str(path), json.dumps(trusted())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == rebuild_state(path, trusted_keys=trusted(), workers=1).state_sha256


class _InterruptedWait(Future[str]):
    """A chunk a helper holds, whose wait is interrupted by Ctrl-C."""

    def result(self, timeout: float | None = None) -> str:
        raise KeyboardInterrupt


def test_an_interrupted_wait_leaves_the_chunk_for_close_to_wait_for(tmp_path: Path) -> None:
    """close() must still see the chunk (it waits for running chunks before removing the
    directory they write into)."""
    held = _InterruptedWait()
    assert held.set_running_or_notify_cancel()
    helpers = stage1.Stage1Helpers(ProcessPoolExecutor(max_workers=1), str(tmp_path / "scratch"), 8)
    helpers._futures[0] = held
    with pytest.raises(KeyboardInterrupt):
        helpers.rows(0)
    assert helpers._futures == {0: held}
    held.set_result("done")  # the helper finishes
    helpers.close()
    assert helpers._futures == {}


def test_finished_helper_chunks_are_taken_as_they_finish() -> None:
    """Every chunk comes out of chunks() exactly once, the helpers' in the order they finished."""
    data = json.dumps(build_bundle(120, 4)[0]).encode()
    split = split_bundle(data)
    assert split is not None
    with _copy(data) as scratch:
        helpers = _stage1(split, scratch, chunk_size=16)
        helpers.executor.shutdown(wait=True)  # every chunk finished in a helper, last first
        count = len(range(0, len(split.events), 16))
        try:
            taken = list(helpers.chunks(count))
        finally:
            helpers.close()
    assert [index for index, _ in taken] == list(reversed(range(count)))
    assert all(rows is not None for _, rows in taken) and helpers.stolen == 0
    assert sum(len(rows or ()) for _, rows in taken) == len(split.events)


@pytest.mark.parametrize(
    ("count", "size"),
    [
        (5_000, 128),
        (10_000, 128),
        (25_600, 128),
        (50_000, 250),
        (100_000, 500),
        (204_800, 1024),
        (10**6, 1024),
    ],
)
def test_large_bundles_get_fewer_larger_stage1_tasks(count: int, size: int) -> None:
    """About 200 tasks (each costs about 0.5 ms of pool round trip and files), 128 to 1024 events each."""
    assert stage1.stage1_chunk_size(count) == size


def test_stage1_tasks_are_sized_for_the_bundle_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    data = json.dumps(build_bundle(60, 9)[0]).encode()
    split = split_bundle(data)
    assert split is not None
    sized: list[int] = []

    def chunk_size(count: int) -> int:
        sized.append(count)
        return 11

    monkeypatch.setattr(stage1, "stage1_chunk_size", chunk_size)
    with _copy(data) as scratch:
        for asked, expected in [(None, 11), (7, 7)]:
            helpers = _stage1(split, scratch, asked)
            helpers.close()
            assert helpers.chunk_size == expected
    assert sized == [len(split.events)]  # asked once, for the bundle's events


def test_copies_record_each_chunk_at_its_place_in_the_bundle() -> None:
    """Chunks come out of order (helpers' last first, this process's first first), yet the
    slots ``_copies`` fills give every event's unit id in the bundle's order: the hint
    stage 2 visits first."""
    data = json.dumps(build_bundle(120, 8)[0]).encode()
    split = split_bundle(data)
    assert split is not None
    expected = [unit_id(loads(bytes(text))) for text in split.events]
    with _copy(data) as scratch:
        helpers = _stage1(split, scratch, chunk_size=16)
        helpers.executor.shutdown(wait=True)  # every chunk finished in a helper: they come last first
        slots: list[list[str]] = []
        try:
            arrived = [uid for uid, _ in rebuild_module._copies(split.events, helpers, slots)]
        finally:
            helpers.close()
    assert arrived != expected and sorted(arrived) == sorted(expected)
    assert [uid for slot in slots for uid in slot] == expected


def _put_finished(helpers: stage1.Stage1Helpers, index: int, _future: Future[str]) -> None:
    helpers._finished.put(index)


def test_a_chunk_a_helper_holds_but_has_not_started_is_run_here(tmp_path: Path) -> None:
    """At the meeting point: a chunk in the pool's queue behind a running one is run here
    (close() still waits for it); a chunk a helper is running (its file exists) is waited for."""
    queued, running = Future[str](), Future[str]()
    assert queued.set_running_or_notify_cancel() and running.set_running_or_notify_cancel()
    helpers = stage1.Stage1Helpers(ProcessPoolExecutor(max_workers=1), str(tmp_path), 8)
    helpers._futures[0] = queued
    helpers._futures[1] = running
    for index, future in ((0, queued), (1, running)):
        future.add_done_callback(partial(_put_finished, helpers, index))
    out = helpers._out(1)
    Path(out).write_bytes(b"")  # the helper created its file: it has started chunk 1
    chunks = helpers.chunks(2)

    # (Should chunks() wait for the queued chunk instead, this ends the wait, and the test fails below.)
    def end_the_wait() -> None:
        if not queued.done():
            queued.set_result("unused")

    safety = threading.Timer(5, end_the_wait)
    safety.daemon = True
    safety.start()
    assert next(chunks) == (0, None)
    assert helpers._abandoned == [queued] and helpers.stolen == 1

    def finish() -> None:
        Path(out).write_bytes(stage1._ROWS_ENCODER.encode([]))
        running.set_result(out)

    timer = threading.Timer(0.2, finish)
    timer.start()
    assert next(chunks) == (1, [])  # waited for the running chunk
    assert list(chunks) == []
    if not queued.done():
        queued.set_result("unused")  # the helper ran it after all; its rows are never read
    helpers.close()
    assert helpers._abandoned == [] and helpers._futures == {}


def test_helpers_start_only_for_a_bundle_with_the_events_to_pay_for_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scratch copy starts before the split; the helper processes only once the split has
    counted PARALLEL_MIN_EVENTS events (the first pool of a process costs about 100 ms)."""
    spawned: list[int] = []
    original = rebuild_module.spawn_helpers

    def spy(workers: int, backend_name: str) -> Any:
        spawned.append(workers)
        return original(workers, backend_name)

    monkeypatch.setattr(rebuild_module, "spawn_helpers", spy)
    data = json.dumps(build_bundle(60, 9)[0]).encode()
    serial = rebuild_state(data, trusted_keys=trusted(), workers=1).to_json()
    assert rebuild_module._rebuild_bytes(data, trusted(), False, 2, min_bytes=0).to_json() == serial
    assert spawned == []
    assert (
        rebuild_module._rebuild_bytes(data, trusted(), False, 2, min_bytes=0, min_events=0).to_json()
        == serial
    )
    assert spawned == [2]


def test_a_process_that_cannot_start_mid_submission_leaves_the_serial_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An OSError from the pool while chunks are being submitted (EAGAIN, EMFILE when it starts a
    process) cancels what was submitted and falls back to this process, never escapes."""
    data = json.dumps(build_bundle(200, 1)[0]).encode()
    serial = rebuild(data, trusted_keys=trusted(), workers=1).result.state.to_json()
    original = stage1.Stage1Helpers.submit
    made: list[stage1.Stage1Helpers] = []

    def submit(self: stage1.Stage1Helpers, index: int, *args: Any) -> None:
        if len(self._futures) == 4:
            made.append(self)
            raise OSError(11, "Resource temporarily unavailable")
        original(self, index, *args)

    monkeypatch.setattr(stage1.Stage1Helpers, "submit", submit)
    got = rebuild_module._rebuild_bytes(data, trusted(), False, 2, min_events=0, min_bytes=0, chunk_size=4)
    assert got.to_json() == serial
    [helpers] = made
    assert helpers._futures == {}  # closed: the four submitted chunks were cancelled or waited for
    assert not Path(helpers.directory).exists()


class _FailingSecondSubmit(ProcessPoolExecutor):
    """A pool whose second task cannot start a process (as when file descriptors run out)."""

    made: ClassVar[list[_FailingSecondSubmit]] = []
    error: ClassVar[BaseException] = OSError(24, "Too many open files")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.submitted = 0
        self.made.append(self)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        if self.submitted == 2:
            raise self.error
        return super().submit(*args, **kwargs)


@pytest.mark.parametrize("error", [OSError(24, "Too many open files"), EOFError()])
def test_helpers_that_cannot_all_start_are_shut_down(
    monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    """Also when the forkserver has died: it then answers a new process's request with end of file."""
    monkeypatch.setattr(_FailingSecondSubmit, "error", error)
    monkeypatch.setattr(pooling, "worker_pool", lambda processes: _FailingSecondSubmit(max_workers=processes))
    _FailingSecondSubmit.made.clear()
    assert stage1.spawn_helpers(3, Verifier().backend.name) is None
    [executor] = _FailingSecondSubmit.made
    assert executor._shutdown_thread  # the helper already started does not outlive the failure
    _FailingSecondSubmit.made.clear()
    bundle, _ = build_bundle(60, 9)
    raw, _model = load_bundle(bundle)
    ring = KeyRing.from_entries(trusted())
    assert (
        signatures.start_verification(
            signatures.signature_jobs(raw["events"], ring), workers=3, chunk_size=4
        )[1]
        is None
    )
    [executor] = _FailingSecondSubmit.made
    assert executor._shutdown_thread


def test_a_copy_that_failed_in_any_way_is_never_used(tmp_path: Path) -> None:
    """Not only OSError: whatever stops the writing thread, ready() says so (a partial copy
    taken for a whole one would give helpers other bytes than this process's)."""
    directory = tmp_path / "scratch"
    directory.mkdir()
    broken = scratching.ScratchCopy(str(directory), object())  # type: ignore[arg-type]  # write() raises TypeError
    assert not broken.ready()
    broken.close()
    assert not directory.exists()
    directory.mkdir()
    with scratching.ScratchCopy(str(directory), b"[1]") as scratch:
        assert scratch.ready() and Path(scratch.path).read_bytes() == b"[1]"


def test_no_scratch_directory_is_left_when_no_thread_can_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(scratching, "_scratch_root", lambda size: str(tmp_path))

    def no_threads(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_threads)
    assert scratching.scratch_copy(b"x" * 100, 2, min_bytes=0) is None
    assert list(tmp_path.iterdir()) == []
