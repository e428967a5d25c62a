"""The library keeps the promises its docstrings and the README make (issue 18, items 4, 5, 10, 12)."""

from __future__ import annotations

import json
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pith_graph import codes
from pith_graph.canonical import DEFAULT_MAX_BYTES, MAX_INT_DIGITS, canonical_json, loads
from pith_graph.documents import read_json
from pith_graph.errors import InputError, TrustError
from pith_graph.keys import KeyRing
from pith_graph.rebuild import rebuild_state
from pith_graph.store import EventStore
from pith_graph.testing import History, TestKey
from pith_graph.verify import (
    verify_bundle,
    verify_document,
    verify_graph_snapshot,
    verify_record,
    verify_state,
)
from tests.helpers import FIXTURES

BUNDLE = FIXTURES / "bundle-AG3PAJ22.json"


# --- 4. verify_* return a Report for any document -------------------------------------------


@pytest.mark.parametrize(
    "verify", [verify_bundle, verify_record, verify_state, verify_graph_snapshot, verify_document]
)
@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("nope.json", codes.E_IO),
        (b"{", codes.E_NOT_JSON),
        (b"[1]", None),
        ('{"a": 1, "a": 2}', codes.E_DUPLICATE_KEY),
    ],
)
def test_4_a_report_for_any_document(verify: Any, source: Any, code: str | None) -> None:
    report = verify(source)
    assert not report.usable and not report.ok and len(report.problems) == 1
    assert report.problems[0].code == (code or report.problems[0].code)
    assert report.problems[0].code in codes.MEANINGS


def test_4_a_mistyped_embedded_state_is_a_problem_not_an_exception() -> None:
    bundle = json.loads(BUNDLE.read_bytes())
    bundle["state"]["applied_event_ids"] = 5
    report = verify_bundle(json.dumps(bundle).encode())
    assert report.usable and not report.ok
    assert codes.P_SHAPE in [p.code for p in report.problems]
    assert report.facts["events"] == 2  # the rebuild itself succeeded


def test_4_only_the_callers_own_mistakes_raise() -> None:
    with pytest.raises(InputError) as usage:
        verify_bundle(BUNDLE, workers=-1)
    assert usage.value.code == codes.E_USAGE
    with pytest.raises(TrustError):
        verify_bundle(BUNDLE, trusted_keys=[{"key_id": "x"}])
    with pytest.raises(InputError) as kind:
        verify_bundle(42)  # type: ignore[arg-type]
    assert kind.value.code == codes.E_USAGE


# --- 10. one rule for paths and JSON text ------------------------------------------------------


@pytest.fixture
def signed(tmp_path: Path) -> Iterator[tuple[History, Path, Path, Path]]:
    key = TestKey("ux-path-rule")
    history = History.new(key)
    event = history.event("mirror_hint", payload={"url": "https://m.example"})
    bundle, keys, single = tmp_path / "b.json", tmp_path / "keys.json", tmp_path / "event.json"
    bundle.write_text(json.dumps(history.bundle([event])))
    keys.write_text(json.dumps(history.trusted()))
    single.write_text(json.dumps(event))
    yield history, bundle, keys, single


def test_10_a_str_or_path_is_a_file_and_bytes_are_json_text(signed: tuple[History, Path, Path, Path]) -> None:
    history, bundle, keys, single = signed
    expected = rebuild_state(bundle.read_bytes(), trusted_keys=history.trusted())
    assert expected.valid_event_count == 2
    for key_source in (str(keys), keys, keys.read_bytes(), keys.read_text()):
        assert KeyRing.from_json(key_source) == KeyRing.from_entries(history.trusted())
        for bundle_source in (str(bundle), bundle, bundle.read_bytes(), bundle.read_text()):
            assert rebuild_state(bundle_source, trusted_keys=key_source).to_json() == expected.to_json()
    with EventStore(":memory:") as store:
        assert store.import_bundle(str(bundle), trusted_keys=str(keys)).count(codes.STORE_NEW) == 2
        for event_source in (str(single), single, single.read_bytes(), single.read_text()):
            assert store.append(event_source, trusted_keys=keys).status == codes.STORE_DUPLICATE
    assert read_json(str(single)) == json.loads(single.read_bytes())


def test_10_errors_about_a_file_name_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(InputError) as raised:
        rebuild_state(str(path))
    assert raised.value.code == codes.E_NOT_JSON and raised.value.message.startswith(f"{path}: ")
    with pytest.raises(TrustError) as keys:
        KeyRing.from_json(path)
    assert str(path) in keys.value.message


# --- 5. big integers: one bound, whatever the interpreter's own limit ---------------------------


@pytest.fixture
def int_limit() -> Iterator[Any]:
    before = sys.get_int_max_str_digits()
    yield sys.set_int_max_str_digits
    sys.set_int_max_str_digits(before)


@pytest.mark.parametrize("limit", [0, 640, 4300, 100_000])
def test_5_integers_up_to_the_bound_are_exact_and_longer_ones_one_code(int_limit: Any, limit: int) -> None:
    int_limit(limit)
    exact = b'{"n": -' + b"7" * MAX_INT_DIGITS + b"}"
    assert canonical_json(loads(exact)) == exact.replace(b" ", b"")
    for digits in (MAX_INT_DIGITS + 1, 4301, 20_000):
        with pytest.raises(InputError) as raised:
            loads(b'{"n": ' + b"1" * digits + b"}")
        assert raised.value.code == codes.E_NUMBER_TOO_LONG and "sys." not in raised.value.message
    with pytest.raises(InputError) as built:
        read_json({"n": 10**MAX_INT_DIGITS})
    assert built.value.code == codes.E_NUMBER_TOO_LONG
    assert loads(b'{"s": "' + b"1" * 5000 + b'"}')["s"] == "1" * 5000  # digits in a string are text


# --- 12. the size of a file is checked before it is read ------------------------------------------


def test_12_a_file_over_the_limit_is_not_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate(DEFAULT_MAX_BYTES + 1)  # sparse: no disk used
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as raised:
            read_json(huge)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert raised.value.code == codes.E_TOO_LARGE and str(huge) in raised.value.message
    assert peak < 1 << 20


def test_importing_the_library_leaves_ctrl_c_alone() -> None:
    """Only the pith-graph command handles SIGINT while it starts (pith_graph._startup)."""
    import subprocess

    code = "import signal, pith_graph; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr


# --- 9. a duplicate key is located ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "second"),
    [
        (b'{"a": {"b": 1, "a": 2},\n "c": [{"a": 1}], "a": 3}', "a", b'"a": 3'),
        (b'[{"k": 1}, {"k": 2, "s": "\\"k\\": [{", "k": 3}]', "k", b'"k": 3'),
        (b'{"x": 1, "\\u0078": 2}', "x", b'"\\u0078"'),
        (b'{"e": [{"e": {"e": 1}}, {"e": 2}], "f": {"e": 3, "g": [], "e": 4}}', "e", b'"e": 4'),
    ],
    ids=["nested", "in-a-string", "escaped", "siblings"],
)
def test_9_a_duplicate_key_is_located(text: bytes, key: str, second: bytes) -> None:
    """The second occurrence within one object, by line, column and byte (found here by its text)."""
    offset = text.index(second)
    line, column = text.count(b"\n", 0, offset) + 1, offset - (text.rfind(b"\n", 0, offset) + 1) + 1
    with pytest.raises(InputError) as raised:
        loads(text)
    assert raised.value.code == codes.E_DUPLICATE_KEY
    assert (
        raised.value.message
        == f"duplicate object key {key!r} at line {line}, column {column} (byte {offset})"
    )
