"""Canonical JSON against the registry's rule, and the strict parser against hostile input.

The reference is the call FORMAT-FACTS names:
``json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest

from pith_graph import codes
from pith_graph.canonical import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    JsonFloat,
    canonical_json,
    canonical_json_parsed,
    canonical_sha256,
    compact_json_parsed,
    loads,
)
from pith_graph.errors import InputError, PithGraphError
from tests.helpers import ref_canonical

# (id, value): values a caller may build; each must encode exactly as the reference does.
TRICKY_VALUES: list[tuple[str, Any]] = [
    ("float 1e16", 1e16),
    ("float 1e-07", 1e-07),
    ("float 1e22", 1e22),
    ("float 1e-05", 1e-05),
    ("negative zero", -0.0),
    ("smallest subnormal", 5e-324),
    ("largest double", 1.7976931348623157e308),
    ("0.1", 0.1),
    ("1.0", 1.0),
    ("big int", 10**30),
    ("big negative int", -(10**30)),
    ("2**64", 2**64),
    ("-(2**63)-1", -(2**63) - 1),
    ("non-BMP", "\U0001f600 \U00010000"),
    ("U+2028 and U+2029", "a\u2028b\u2029c"),
    ("control characters", "\x00\x01\x08\t\n\x0c\r\x1f\x7f"),
    ("quote and backslash", 'say "\\" /'),
    ("DEL and NBSP", "\x7f\xa0"),
    ("booleans and null", [True, False, None]),
    ("empty containers", {"a": [], "b": {}, "": ""}),
    ("keys by code point", {"b": 1, "a": 2, "B": 3, "aa": 4, "": 5, "\u00e9": 6, "~": 7}),
    # U+E000 (BMP private use) sorts before U+1F600 by code point, after it in UTF-16 order.
    ("astral vs BMP private use", {"\U0001f600": 1, "\ue000": 2, "\uffff": 3, "\U00010000": 4}),
    ("nested", {"z": [{"y": 1.5, "x": [1e16, {"b": None, "a": -0.0}]}], "a": "\u2028"}),
]

# JSON texts: canonical_json_parsed(loads(text)) must equal the reference on json.loads(text).
TRICKY_TEXTS: list[str] = [
    "[1e16]",
    "[1E16]",
    "[1e-7]",
    "[1e+22]",
    "[-0.0]",
    "[-0]",
    "[5e-324]",
    "[123.456e2]",
    "[100000000000000000000000.0]",
    "[1.7976931348623157e308]",
    "[123456789012345678901234567890]",
    "[-9223372036854775809]",
    "[18446744073709551616]",
    '["\\u2028\\u2029"]',
    '["\\u0000\\u001f\\u007f\\b\\f\\n\\r\\t"]',
    '["\\ud83d\\ude00", "\\uD83D\\uDE00"]',
    '["\\/"]',
    '{"\\ue000":1,"\\ud83d\\ude00":2,"z":3,"Z":4,"":5}',
    '{"b":{"d":[1,{"f":0.5,"e":true}],"c":null},"a":[]}',
    ' \n\t{"a" : 1 } \r\n',
]


@pytest.mark.parametrize(("name", "value"), TRICKY_VALUES, ids=[v[0] for v in TRICKY_VALUES])
def test_canonical_json_matches_the_reference(name: str, value: Any) -> None:
    assert canonical_json(value) == ref_canonical(value)


@pytest.mark.parametrize(("name", "value"), TRICKY_VALUES, ids=[v[0] for v in TRICKY_VALUES])
def test_fast_path_on_parsed_values_matches_the_reference(name: str, value: Any) -> None:
    text = ref_canonical(value)
    parsed = loads(text)
    assert canonical_json_parsed(parsed) == text
    assert canonical_json(parsed) == text


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_parsed_text_encodes_like_the_reference(text: str) -> None:
    expected = ref_canonical(json.loads(text))
    assert canonical_json_parsed(loads(text)) == expected
    assert canonical_json_parsed(loads(text.encode("utf-8"))) == expected
    assert canonical_json(loads(text)) == expected


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_registry_serialisation_of_parsed_text_is_the_reference(text: str) -> None:
    # The registry's own rule: compact, key order kept, no ASCII escaping.
    expected = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert compact_json_parsed(loads(text)) == expected


def test_float_spelling_is_pythons_repr_not_msgspecs() -> None:
    assert canonical_json([1e16, 1e-07]) == b"[1e+16,1e-07]"
    assert canonical_json_parsed(loads(b"[1e16,1e-7]")) == b"[1e+16,1e-07]"


def test_parsed_floats_are_json_floats() -> None:
    parsed = loads(b'{"a":1.5,"b":[2.0],"c":3}')
    assert type(parsed["a"]) is JsonFloat and type(parsed["b"][0]) is JsonFloat
    assert type(parsed["c"]) is int
    assert parsed == {"a": 1.5, "b": [2.0], "c": 3}


def test_canonical_sha256_is_sha256_of_the_reference_bytes() -> None:
    value = dict(TRICKY_VALUES)
    assert canonical_sha256(value) == hashlib.sha256(ref_canonical(value)).hexdigest()


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (math.nan, codes.E_NON_FINITE),
        ([math.inf], codes.E_NON_FINITE),
        ({"a": -math.inf}, codes.E_NON_FINITE),
        ("\ud800", codes.E_LONE_SURROGATE),
        ({"\udc00": 1}, codes.E_LONE_SURROGATE),
        ({1, 2}, codes.E_SHAPE),
        (b"bytes", codes.E_SHAPE),
    ],
    ids=["nan", "inf", "-inf", "lone high surrogate", "lone low surrogate key", "set", "bytes"],
)
def test_canonical_json_refuses_what_json_cannot_carry(value: Any, code: str) -> None:
    with pytest.raises(InputError) as caught:
        canonical_json(value)
    assert caught.value.code == code


# --- hostile input for loads -------------------------------------------------------

HOSTILE: list[tuple[str, bytes, str]] = [
    ("duplicate key, top level", b'{"a":1,"a":2}', codes.E_DUPLICATE_KEY),
    ("duplicate key, same value", b'{"a":1,"a":1}', codes.E_DUPLICATE_KEY),
    ("duplicate key, nested", b'{"x":{"y":{"a":1,"b":2,"a":3}}}', codes.E_DUPLICATE_KEY),
    ("duplicate key, inside an array", b'[{"a":1},{"b":1,"b":2}]', codes.E_DUPLICATE_KEY),
    ("duplicate key, equal after escapes", b'{"a":1,"\\u0061":2}', codes.E_DUPLICATE_KEY),
    (
        "duplicate key, astral escape vs raw",
        '{"\U0001f600":1,"\\ud83d\\ude00":2}'.encode(),
        codes.E_DUPLICATE_KEY,
    ),
    ("duplicate key, escaped quote in key", b'{"a\\"b":1,"a\\u0022b":2}', codes.E_DUPLICATE_KEY),
    ("duplicate empty key", b'{"":1,"":2}', codes.E_DUPLICATE_KEY),
    # Past the size the compact fast path is tried on (canonical._FAST_CHECK_MAX).
    ("duplicate key, large compact text", b'{"a":"' + b"x" * 70_000 + b'","a":1}', codes.E_DUPLICATE_KEY),
    ("NaN", b"[NaN]", codes.E_NON_FINITE),
    ("Infinity", b'{"a":Infinity}', codes.E_NON_FINITE),
    ("-Infinity", b"[-Infinity]", codes.E_NON_FINITE),
    ("1e400", b"[1e400]", codes.E_NON_FINITE),
    ("-1e400", b'{"a":-1e400}', codes.E_NON_FINITE),
    ("invalid UTF-8 byte", b'{"a":"\xff"}', codes.E_INVALID_UTF8),
    ("overlong UTF-8", b'["\xc0\xaf"]', codes.E_INVALID_UTF8),
    ("truncated UTF-8", b'["\xe2\x82"]', codes.E_INVALID_UTF8),
    ("UTF-8 encoded surrogate", b'["\xed\xa0\x80"]', codes.E_INVALID_UTF8),
    ("lone high surrogate escape", b'["\\ud800"]', codes.E_LONE_SURROGATE),
    ("lone low surrogate escape", b'["\\udc00"]', codes.E_LONE_SURROGATE),
    ("lone surrogate in a key", b'{"\\uDFFF":1}', codes.E_LONE_SURROGATE),
    ("high surrogate then a letter", b'["\\ud800\\u0041"]', codes.E_LONE_SURROGATE),
    ("swapped surrogate pair", b'["\\ude00\\ud83d"]', codes.E_LONE_SURROGATE),
    ("65 nested arrays", b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), codes.E_TOO_DEEP),
    ("65 nested objects", b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), codes.E_TOO_DEEP),
    ("100000 nested arrays", b"[" * 100_000 + b"]" * 100_000, codes.E_TOO_DEEP),
    ("100000 unclosed arrays", b"[" * 100_000, codes.E_TOO_DEEP),
    ("100000 nested objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, codes.E_TOO_DEEP),
    ("trailing garbage", b"{} x", codes.E_NOT_JSON),
    ("two documents", b"{}{}", codes.E_NOT_JSON),
    ("empty input", b"", codes.E_NOT_JSON),
    ("only white space", b" \n ", codes.E_NOT_JSON),
    ("raw control character in a string", b'["a\x01b"]', codes.E_NOT_JSON),
    ("single quotes", b"{'a':1}", codes.E_NOT_JSON),
    ("trailing comma", b"[1,]", codes.E_NOT_JSON),
    ("unterminated string", b'["abc', codes.E_NOT_JSON),
]


@pytest.mark.parametrize(("name", "data", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_loads_rejects_hostile_input_with_its_code(name: str, data: bytes, code: str) -> None:
    with pytest.raises(InputError) as caught:
        loads(data)
    assert caught.value.code == code
    assert isinstance(caught.value, PithGraphError)
    assert "\n" not in caught.value.message


def _decodable(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


HOSTILE_TEXT = [h for h in HOSTILE if _decodable(h[1])]


@pytest.mark.parametrize(("name", "data", "code"), HOSTILE_TEXT, ids=[h[0] for h in HOSTILE_TEXT])
def test_loads_rejects_hostile_text_too(name: str, data: bytes, code: str) -> None:
    with pytest.raises(InputError) as caught:
        loads(data.decode("utf-8"))
    assert caught.value.code == code


def test_lone_surrogate_in_a_python_str_is_rejected() -> None:
    with pytest.raises(InputError) as caught:
        loads('["\ud800"]')
    assert caught.value.code == codes.E_LONE_SURROGATE


@pytest.mark.parametrize(
    "data",
    [
        b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,
        b'{"a":' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH,
        b'{"a":' * (MAX_DEPTH - 1) + b"[]" + b"}" * (MAX_DEPTH - 1),
        # brackets inside strings are not nesting
        b'["' + b"[{" * 1000 + b'"]',
        b'["\\"[[[[", "\\\\", "]]]"]',
    ],
    ids=["64 arrays", "64 objects", "64 mixed", "brackets in a string", "escaped quotes and brackets"],
)
def test_loads_accepts_nesting_up_to_the_limit(data: bytes) -> None:
    assert loads(data) == json.loads(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"A":2}',
        b'{"a":{"a":{"a":1}}}',
        b'[{"a":1},{"a":2}]',
        b'{"a:b":1,"a":2,"b":"x:y"}',
        b'{"a\\"":1,"a":2}',
        b'{"\\\\":1,"\\\\\\\\":2}',
        '{"é":1,"e\\u0301":2}'.encode(),
        # Keys and values *starting* with a colon put '":' inside a string (a count of
        # '":' in the text would take them for members).
        b'{"a":{"b":{":":null,"c":":x",":d":[":"]}}}',
    ],
    ids=[
        "case differs",
        "same key at different depths",
        "same key in sibling objects",
        "colons in strings",
        "escaped quote in key",
        "backslash keys",
        "unnormalised unicode",
        "strings starting with a colon, deep",
    ],
)
def test_loads_accepts_keys_that_only_look_alike(data: bytes) -> None:
    assert loads(data) == json.loads(data)


def test_size_limit() -> None:
    data = b'{"a":[1,2,3]}'
    assert loads(data, max_bytes=len(data)) == {"a": [1, 2, 3]}
    with pytest.raises(InputError) as caught:
        loads(data, max_bytes=len(data) - 1)
    assert caught.value.code == codes.E_TOO_LARGE
    with pytest.raises(InputError) as caught:
        loads(data.decode(), max_bytes=len(data) - 1)
    assert caught.value.code == codes.E_TOO_LARGE


def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    data = '["\U0001f600"]'  # 4 characters, 7 bytes
    with pytest.raises(InputError) as caught:
        loads(data, max_bytes=6)
    assert caught.value.code == codes.E_TOO_LARGE


def test_duplicate_keys_are_found_at_any_depth_and_in_any_container() -> None:
    """The members the text holds against the members the decoded tree kept (canonical._members)."""
    for data in (
        b'[[[[{"x":[{"a":1,"a":1}]}]]]]',
        b'{"k":[1,"two",null,{"z":{"y":{"y":0,"y":0}}}]}',
        b'[{}, {"a":{}, "a":[]}]',
    ):
        with pytest.raises(InputError) as caught:
            loads(data)
        assert caught.value.code == codes.E_DUPLICATE_KEY


@pytest.mark.parametrize("start", [(1 << 20) - 700, (1 << 20) - 320, (1 << 20) - 1, 1 << 20])
def test_a_long_integer_across_a_mebibyte_boundary_is_found(start: int) -> None:
    """The digit-run search reads large text in 1 MiB windows: a run across their seam counts."""
    head = b'{"a":"' + b"x" * (start - 12) + b'","n":'
    assert len(head) == start
    for digits, too_long in ((MAX_INT_DIGITS, False), (MAX_INT_DIGITS + 1, True)):
        text = head + b"9" * digits + b"}"
        if too_long:
            with pytest.raises(InputError) as raised:
                loads(text)
            assert raised.value.code == codes.E_NUMBER_TOO_LONG
            with pytest.raises(InputError) as built:
                canonical_json({"a": "x" * (start - 12), "n": int("9" * digits)})
            assert built.value.code == codes.E_NUMBER_TOO_LONG
        else:
            assert canonical_json(loads(text)) == text


def test_a_long_integer_is_named_before_a_lone_surrogate() -> None:
    with pytest.raises(InputError) as raised:
        canonical_json(["\ud800", 10**MAX_INT_DIGITS])
    assert raised.value.code == codes.E_NUMBER_TOO_LONG
    with pytest.raises(InputError) as surrogate:
        canonical_json(["\ud800", 10 ** (MAX_INT_DIGITS - 1)])
    assert surrogate.value.code == codes.E_LONE_SURROGATE
