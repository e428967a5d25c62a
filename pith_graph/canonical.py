"""Strict JSON reading and the registry's canonical JSON rule.

canonical(x) is, byte for byte, the UTF-8 encoding of::

    json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

(FORMAT-FACTS: "Canonical JSON"). It is *not* RFC 8785: floats print as
Python's ``repr`` (``1e+16``), keys sort by code point.

Two encoders produce it:

* :func:`canonical_json` -- the reference rule itself, for any JSON value a
  caller builds.
* :func:`canonical_json_parsed` -- a fast path for trees produced by
  :func:`loads`. msgspec's sorted encoder is byte-identical to the reference for
  strings, integers, booleans, null, arrays and objects, but prints floats
  differently (``1e16`` vs ``1e+16``). :func:`loads` therefore decodes every JSON
  float as :class:`JsonFloat`, a ``float`` subclass msgspec refuses to encode;
  the refusal sends that tree down the reference path. Property tests compare
  the two over arbitrary JSON values.

:func:`loads` is the only way pith_graph reads JSON. It rejects what would let
two parsers disagree about a document's hash: duplicate object keys (anywhere),
NaN and infinities (also as out-of-range literals such as ``1e400``), invalid
UTF-8, lone surrogates, nesting deeper than :data:`MAX_DEPTH`, and documents
larger than the caller's size limit.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import re
from typing import Any, Final

import msgspec

from pith_graph import codes
from pith_graph.errors import InputError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "JsonFloat",
    "canonical_json",
    "canonical_json_parsed",
    "canonical_lines",
    "canonical_sha256",
    "check_depth",
    "compact_json_parsed",
    "gc_paused",
    "loads",
    "loads_accepted",
    "sha256_hex",
]

#: Deepest nesting of arrays/objects accepted anywhere (the registry's documents
#: nest about 8 deep; a bundle adds 3 levels around an event).
MAX_DEPTH: Final = 64
#: Default upper bound on a document's size in bytes.
DEFAULT_MAX_BYTES: Final = 1 << 30


#: Longest integer, in decimal digits (sign not counted), read and written exactly
#: (docs/merge-v1.md, "Numbers"); longer ones are ``integer_too_long``. 640 is the
#: lowest limit Python's int/str conversion can be set to, so reading and writing
#: such integers never depends on ``sys.set_int_max_str_digits``.
MAX_INT_DIGITS: Final = 640
_INT_BOUND: Final = 10**MAX_INT_DIGITS
# ASCII digits become "0", every other byte a space: a run of digits is then a run of
# "0" that a substring search finds at C speed (a regex tries each position in Python's
# engine: most of the cost of loads on an event).
_DIGITS_AS_ZERO: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN: Final = b"0" * (MAX_INT_DIGITS + 1)
_RUN_WINDOW: Final = 1 << 20


def _too_long() -> InputError:
    return InputError(
        f"an integer has more than {MAX_INT_DIGITS} digits, the most merge-v1 reads exactly",
        code=codes.E_NUMBER_TOO_LONG,
    )


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _too_long()
    return int(text)


def _long_digit_run(data: bytes) -> bool:
    """Whether ``data`` holds more than :data:`MAX_INT_DIGITS` ASCII digits in a row, as the
    text of any longer integer does. Windows of 1 MiB, overlapping by :data:`MAX_INT_DIGITS`
    bytes, bound the translated copy of a large document."""
    if len(data) <= _RUN_WINDOW:  # one window: no generator (called for every event)
        return _LONG_RUN in data.translate(_DIGITS_AS_ZERO)
    return any(
        _LONG_RUN in data[start : start + _RUN_WINDOW + MAX_INT_DIGITS].translate(_DIGITS_AS_ZERO)
        for start in range(0, len(data), _RUN_WINDOW)
    )


def _has_long_int(obj: Any) -> bool:
    """Whether a decoded tree holds an integer of more than :data:`MAX_INT_DIGITS` digits."""
    stack = [obj]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            stack.extend(value.values())
        elif kind is list:
            stack.extend(value)
        elif kind is int and not -_INT_BOUND < value < _INT_BOUND:
            return True
    return False


class JsonFloat(float):
    """A float decoded from JSON text.

    Behaves exactly like ``float``; its only purpose is that msgspec refuses to
    encode it, which routes any tree containing a float to the reference encoder
    (whose float format is the canonical one).
    """

    __slots__ = ()


def _finite_float(text: str) -> JsonFloat:
    value = JsonFloat(text)
    if not math.isfinite(value):
        # merge-v1 §1: no NaN or infinity, even spelled as 1e400.
        raise ValueError(f"number {text!r} is out of range")
    return value


_DECODER: Final = msgspec.json.Decoder(float_hook=_finite_float)
_SORTED_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_ENCODER: Final = msgspec.json.Encoder()
#: Largest text the compact fast path of the structure checks is tried on (see
#: :func:`_check_structure`): an event is a few KiB; a whole bundle would always
#: fail the bracket count, and counting would only add to the full check.
_FAST_CHECK_MAX: Final = 1 << 16
_NOT_STRUCTURAL: Final = bytes(b for b in range(256) if b not in b'"[]{}:')
_ONE_BRACKET_TYPE: Final = bytes.maketrans(b"{}", b"[]")
_SLICE: Final = 1 << 20


class gc_paused:  # lower case: it replaced a function of that name, used as ``with gc_paused():``
    """Suspend the cyclic garbage collector while building a large acyclic tree.

    Decoding a 100,000-event bundle creates millions of containers; each
    allocation burst triggers collections that walk the ever-growing heap
    (docs/performance.md, "The strict parser"). Decoded JSON
    and the merge's records hold no reference cycles, so nothing is left for
    the collector to find. A collector the caller had disabled stays disabled.
    A class rather than a generator-based context manager: a small bundle's
    rebuild and verification enter it several times, and each generator-based
    entry costs microseconds.
    """

    __slots__ = ("_was_enabled",)

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc_info: object) -> None:
        if self._was_enabled:
            gc.enable()


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Return the registry's canonical JSON bytes for ``obj``.

    Exactly ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False).encode("utf-8")``, except that values JSON cannot
    represent (NaN, infinities, lone surrogates, non-JSON types) raise
    :class:`~pith_graph.errors.InputError` instead of producing bytes no
    conforming parser would read back.
    """
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        if _has_long_int(obj):
            raise _too_long() from exc
        raise InputError(f"value is not canonical JSON: {exc}", code=codes.E_NON_FINITE) from exc
    except TypeError as exc:
        raise InputError(f"value is not canonical JSON: {exc}", code=codes.E_SHAPE) from exc
    except RecursionError as exc:
        raise InputError("value nests too deeply", code=codes.E_TOO_DEEP) from exc
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        if _has_long_int(obj):  # a too-long integer is named before a lone surrogate
            raise _too_long() from exc
        raise InputError(
            "value contains a lone surrogate, which UTF-8 cannot encode",
            code=codes.E_LONE_SURROGATE,
        ) from exc
    if _long_digit_run(data) and _has_long_int(obj):
        raise _too_long()  # whatever Python's own limit on int/str conversion allowed
    return data


def canonical_json_parsed(obj: Any) -> bytes:
    """Canonical JSON of a tree produced by :func:`loads` (fast path).

    Byte-identical to :func:`canonical_json` for such trees: msgspec encodes the
    float-free ones; a :class:`JsonFloat` anywhere makes msgspec refuse and the
    reference rule is used instead. Do not pass trees built by other means: a
    plain ``float`` would be printed in msgspec's format.
    """
    try:
        return _SORTED_ENCODER.encode(obj)
    except TypeError:
        return canonical_json(obj)


def canonical_lines(objs: list[Any]) -> list[bytes]:
    """:func:`canonical_json_parsed` of each tree of ``objs``, encoded in one call.

    msgspec writes the trees one a line; canonical JSON never holds a newline byte
    (a newline in a string is escaped, and no UTF-8 sequence holds 0x0A), so the
    lines are exactly the encodings.
    """
    try:
        return _SORTED_ENCODER.encode_lines(objs).split(b"\n")[:-1]
    except TypeError:  # a JsonFloat somewhere: each tree on its own (see canonical_json_parsed)
        return [canonical_json_parsed(obj) for obj in objs]


def compact_json_parsed(obj: Any) -> bytes:
    """How the registry serialises a document, for a tree produced by :func:`loads`:
    exactly ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False)`` in UTF-8,
    key order kept.

    msgspec encodes the float-free trees (byte-identical there, as for
    :func:`canonical_json_parsed`, and much faster than the reference rule); a
    :class:`JsonFloat` makes msgspec refuse and the reference rule is used.
    """
    try:
        return _ENCODER.encode(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def canonical_sha256(obj: Any) -> str:
    """Return ``sha256_hex(canonical_json(obj))``."""
    return sha256_hex(canonical_json(obj))


def _classify_failure(text: bytes, fallback: Exception) -> InputError:
    """Explain why ``text`` failed to decode, using the stdlib parser's precise hooks."""

    def reject_constant(name: str) -> Any:
        raise InputError(f"{name} is not a JSON number", code=codes.E_NON_FINITE)

    def reject_inf(literal: str) -> float:
        return _finite_float(literal)

    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputError(f"document is not valid UTF-8 (byte {exc.start})", code=codes.E_INVALID_UTF8)
    try:
        json.loads(decoded, parse_constant=reject_constant, parse_float=reject_inf, parse_int=_bounded_int)
    except InputError as exc:
        return exc
    except json.JSONDecodeError as exc:
        return InputError(
            f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", code=codes.E_NOT_JSON
        )
    except ValueError as exc:
        return InputError(f"not JSON: {exc}", code=codes.E_NON_FINITE)
    except RecursionError:
        return InputError(f"document nests deeper than {MAX_DEPTH} levels", code=codes.E_TOO_DEEP)
    # The stdlib accepted it; msgspec did not. The remaining difference is a lone
    # surrogate escape (the stdlib decodes "\ud800" to an unpaired code point).
    if re.search(rb"\\u[dD][89a-fA-F]", text):
        return InputError("document contains a lone surrogate escape", code=codes.E_LONE_SURROGATE)
    return InputError(f"not JSON: {fallback}", code=codes.E_NOT_JSON)


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _reject_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


_TOKEN: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]]')
_COLON: Final = re.compile(rb"[ \t\n\r]*:")


def _where(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line}, column {column} (byte {offset})"


def _duplicate_key_error(data: bytes) -> InputError:
    """The error for a document (valid JSON) in which some object repeats a key: the key
    and where its second occurrence is."""
    try:
        json.loads(data.decode("utf-8"), object_pairs_hook=_reject_duplicate_pairs)
    except _DuplicateKey as exc:
        key = exc.key
    else:  # pragma: no cover - the member count said a key repeats
        return InputError("duplicate object key", code=codes.E_DUPLICATE_KEY)
    where = _second_key_fast(data, key)
    if where is None:  # the key is spelled with escapes somewhere: the token by token pass
        where = _second_key_slow(data, key)
    place = "" if where is None else f" at {_where(data, where)}"
    return InputError(f"duplicate object key {key!r}{place}", code=codes.E_DUPLICATE_KEY)


def _net_brackets(segment: bytes) -> tuple[int, int]:
    """How many levels a stretch of JSON tokens closes, then opens (its brackets, matched
    pairs removed, are some closing ones followed by some opening ones)."""
    brackets = _structure(segment).translate(_ONE_BRACKET_TYPE, b":")
    while b"[]" in brackets:
        brackets = brackets.replace(b"[]", b"")
    closes = len(brackets) - len(brackets.lstrip(b"]"))
    return closes, len(brackets) - closes


def _second_key_fast(data: bytes, key: str) -> int | None:
    """Where ``key``, in its usual spelling, occurs a second time in one object.

    Each occurrence followed by ``:`` is a member name (a string value never is).
    Between two occurrences, the brackets outside strings say how many objects or
    arrays closed and then opened (:func:`_net_brackets`, at C speed), so a stack of
    open containers tells which object each occurrence belongs to, without walking
    the other tokens (an 83 MB document in seconds).
    """
    spelled = json.dumps(key, ensure_ascii=False).encode("utf-8")
    stack: list[int] = []
    opened = 0
    seen: set[int] = set()
    previous = 0
    for match in re.finditer(re.escape(spelled) + rb"[ \t\n\r]*:", data):
        closes, opens = _net_brackets(data[previous : match.start()])
        del stack[len(stack) - closes :]
        stack.extend(range(opened, opened + opens))
        opened += opens
        if stack and stack[-1] in seen:
            return match.start()
        if stack:
            seen.add(stack[-1])
        previous = match.start()
    return None


def _second_key_slow(data: bytes, key: str) -> int | None:
    """:func:`_second_key_fast` for any spelling of ``key``: one pass over every string and bracket."""
    seen: list[bool | None] = []  # per open bracket: whether the key was seen (None: an array)
    for token in _TOKEN.finditer(data):
        text = token.group()
        if text in (b"{", b"["):
            seen.append(False if text == b"{" else None)
        elif text in (b"}", b"]"):
            seen.pop()
        elif seen and seen[-1] is not None and json.loads(text) == key and _COLON.match(data, token.end()):
            if seen[-1]:
                return token.start()
            seen[-1] = True
    return None  # pragma: no cover


def _structure(data: bytes) -> bytes:
    """The structural characters of ``data`` (valid JSON): brackets and member colons.

    Escapes are neutralised first: dropping every escaped backslash, then every
    escaped quote, leaves exactly the quotes that delimit strings (backslashes
    only occur inside strings, and escapes parse left to right in pairs). Only
    quotes, brackets and colons are then kept, at C speed. Two adjacent quotes
    are either an emptied string or the end of one string and the start of the
    next with nothing structural between them: removing them never moves a
    character into or out of a string, so the quotes left after that delimit only
    the (rare) strings that hold a bracket or a colon, which the final split drops.
    """
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # In slices: translate allocates its output at the input's size before shrinking it.
    reduced = b"".join(
        data[start : start + _SLICE].translate(None, _NOT_STRUCTURAL) for start in range(0, len(data), _SLICE)
    ).replace(b'""', b"")
    if b'"' in reduced:
        reduced = b"".join(reduced.split(b'"')[::2])
    return reduced


def _members(obj: Any) -> int:
    """The number of object members in a decoded tree (plain dicts and lists only).

    An iterative walk: faster than re-encoding the tree and counting its
    structure, never holds a second copy of a large document, and cannot
    recurse too deep.
    """
    count = 0
    stack = [obj]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            count += len(value)
            stack.extend(value.values())
        elif kind is list:
            stack.extend(value)
    return count


def _reencodes(data: bytes, obj: Any) -> bool:
    """True when re-encoding the decoded tree gives back ``data`` byte for byte.

    Then the text has exactly the tree's members, and a decoded dict keeps one
    member per key: no key was repeated. True of compact text such as the
    registry's; anything else (white space, escapes msgspec writes differently,
    a float, text over :data:`_FAST_CHECK_MAX` bytes) is decided by the full
    member count. Together with a count of opening brackets (a text with at most
    ``max_depth`` bytes ``[`` or ``{``, in strings or not, nests no deeper), it
    spares a small compact event both :func:`_structure` and :func:`_members`; a
    compact text with more brackets (a bundle's shell, which embeds a state)
    still skips :func:`_members` (docs/performance.md, "Many small bundles").
    """
    if len(data) > _FAST_CHECK_MAX:
        return False
    try:
        return _ENCODER.encode(obj) == data
    except TypeError:  # a JsonFloat, which msgspec refuses to encode
        return False


def _check_depth(structure: bytes, max_depth: int) -> None:
    """Reject a document whose structure (:func:`_structure`) nests deeper than ``max_depth``."""
    # One bracket type is enough for depth (the text is valid JSON); each pass
    # removes the innermost level, so a document at most MAX_DEPTH deep is
    # empty after MAX_DEPTH passes.
    brackets = structure.translate(_ONE_BRACKET_TYPE, b":")
    for _ in range(max_depth):
        if not brackets:
            break
        brackets = brackets.replace(b"[]", b"")
    if brackets:
        raise InputError(f"document nests deeper than {max_depth} levels", code=codes.E_TOO_DEEP)


def check_depth(data: bytes, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`~pith_graph.errors.InputError` (``too_deep``) when valid JSON text
    ``data`` nests deeper than ``max_depth``: the one check of :func:`loads` that text
    this library wrote (strict JSON by construction) can still fail as part of another."""
    if data.count(b"[") + data.count(b"{") > max_depth:
        _check_depth(_structure(data), max_depth)


def _check_structure(data: bytes, obj: Any, max_depth: int = MAX_DEPTH) -> None:
    """Reject duplicate keys and excessive nesting, working on the raw bytes.

    Both checks run at C speed over the document reduced to its structural
    characters (:func:`_structure`): its ``:`` count is the number of object
    members in the text and its brackets give the nesting depth. Compact text
    passes cheaper sufficient tests first (:func:`_reencodes`).
    """
    compact = _reencodes(data, obj)
    if compact and data.count(b"[") + data.count(b"{") <= max_depth:
        return
    structure = _structure(data)
    _check_depth(structure, max_depth)
    if compact:
        return  # the tree re-encodes to the text: no object repeated a key (see _reencodes)
    # A decoded dict keeps one value per key: if the text has more members than
    # the decoded tree, some object repeated a key.
    members_in_text = structure.count(b":")
    if members_in_text != _members(obj):
        # Slow path only to name the key and its place in the error message.
        raise _duplicate_key_error(data)


def loads_accepted(data: bytes) -> Any:
    """Parse text that :func:`loads` has accepted before: the same values, without
    repeating the checks it passed (for a second pass over a bundle's events)."""
    return _DECODER.decode(data)


def loads(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` as strict JSON and return plain Python values.

    Floats come back as :class:`JsonFloat`. ``max_depth`` is lowered for a part
    of a larger document (the levels above it count too). Raises
    :class:`~pith_graph.errors.InputError` (with a code from
    :mod:`pith_graph.codes`) for anything that is not a single, unambiguous JSON
    document: see the module docstring.
    """
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError("document contains a lone surrogate", code=codes.E_LONE_SURROGATE) from exc
    if len(data) > max_bytes:
        raise InputError(
            f"document is {len(data)} bytes, over the limit of {max_bytes}", code=codes.E_TOO_LARGE
        )
    # gc_paused inlined: a generator-based context manager costs a noticeable
    # fraction of a small event (see gc_paused for why the collector is paused).
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        obj = _DECODER.decode(data)
    except RecursionError as exc:
        raise InputError(f"document nests deeper than {MAX_DEPTH} levels", code=codes.E_TOO_DEEP) from exc
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
        raise _classify_failure(data, exc) from exc
    finally:
        if collecting:
            gc.enable()
    _check_structure(data, obj, max_depth)
    # Where Python's own limit on int/str conversion is above ours (or off), a long integer
    # decodes: merge-v1 refuses it all the same. Only text with such a run of digits is walked.
    if _long_digit_run(data) and _has_long_int(obj):
        raise _too_long()
    return obj
