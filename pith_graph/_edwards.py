"""A tiny, slow, pure-Python edwards25519 (RFC 8032, section 5.1), for crafting and
checking edge-case signatures: the conformance corpus's crafted Ed25519 cases
(:mod:`pith_graph.conformance`) and the tests of the pinned rule.

Never used to verify anything a bundle carries: :mod:`pith_graph.ed25519` and
its backends do that. Points are extended coordinates (X, Y, Z, T).
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = [
    "BASE",
    "D",
    "IDENTITY",
    "L",
    "P",
    "Point",
    "challenge",
    "cofactored_equation",
    "cofactorless_equation",
    "decode",
    "encode",
    "encode_y",
    "order_8_point",
    "point_add",
    "point_equal",
    "point_mul",
    "recover_x",
]

Point = tuple[int, int, int, int]

P: Final = 2**255 - 19
L: Final = 2**252 + 27742317777372353535851937790883648493
D: Final = -121665 * pow(121666, P - 2, P) % P
_SQRT_M1: Final = pow(2, (P - 1) // 4, P)
IDENTITY: Final[Point] = (0, 1, 1, 0)


def point_add(a: Point, b: Point) -> Point:
    """a + b (the unified addition formula: also doubles)."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = 2 * t1 * t2 * D % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_mul(n: int, point: Point) -> Point:
    """[n]point, n >= 0 (double and add; not constant time, and need not be)."""
    result = IDENTITY
    while n:
        if n & 1:
            result = point_add(result, point)
        point = point_add(point, point)
        n >>= 1
    return result


def point_equal(a: Point, b: Point) -> bool:
    """Whether two extended-coordinate tuples are the same point."""
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def recover_x(y: int, sign: int) -> int | None:
    """The x of the point with this y and x's sign bit (None: y >= p, or no such point)."""
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * _SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def decode(encoding: bytes) -> Point | None:
    """The point a 32-byte encoding names under RFC 8032 (None: not canonical, or no point)."""
    value = int.from_bytes(encoding, "little")
    y, sign = value & ((1 << 255) - 1), value >> 255
    x = recover_x(y, sign)
    return None if x is None else (x, y, 1, x * y % P)


def encode_y(y: int, sign: int = 0) -> bytes:
    """The 32 bytes spelling ``y`` (any value below 2^255, so non-canonical ones too) and a sign bit."""
    return (y | (sign << 255)).to_bytes(32, "little")


def encode(point: Point) -> bytes:
    """The canonical encoding of a point."""
    x, y, z, _ = point
    inverse = pow(z, P - 2, P)
    x, y = x * inverse % P, y * inverse % P
    return encode_y(y, x & 1)


_BASE = decode(encode_y(4 * pow(5, P - 2, P) % P))
assert _BASE is not None  # RFC 8032: the base point, y = 4/5, x even
BASE: Final[Point] = _BASE


def order_8_point() -> Point:
    """A point of order exactly 8: [L]Q for the first curve point Q (by y = 2, 3, ...)
    whose torsion part has order 8 (the curve has 8L points, so [L]Q is torsion)."""
    for y in range(2, 1000):
        point = decode(encode_y(y))
        if point is None:
            continue
        torsion = point_mul(L, point)
        if not point_equal(point_mul(4, torsion), IDENTITY):
            return torsion
    raise AssertionError("unreachable: half of all curve points have a torsion part of order 8")


def challenge(r: bytes, a: bytes, message: bytes) -> int:
    """k = SHA-512(R || A || M) mod L."""
    return int.from_bytes(hashlib.sha512(r + a + message).digest(), "little") % L


def _sides(public_key: bytes, signature: bytes, message: bytes) -> tuple[Point, Point] | None:
    """([S]B, R + [k]A) of a signature, S taken as it is (not reduced); None: A or R is no point."""
    a, r = decode(public_key), decode(signature[:32])
    if a is None or r is None:
        return None
    s = int.from_bytes(signature[32:], "little")
    return point_mul(s, BASE), point_add(r, point_mul(challenge(signature[:32], public_key, message), a))


def cofactorless_equation(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether [S]B = R + [k]A (A and R canonical points; no other check)."""
    sides = _sides(public_key, signature, message)
    return sides is not None and point_equal(*sides)


def cofactored_equation(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether [8][S]B = [8](R + [k]A) (A and R canonical points; no other check)."""
    sides = _sides(public_key, signature, message)
    return sides is not None and point_equal(point_mul(8, sides[0]), point_mul(8, sides[1]))
