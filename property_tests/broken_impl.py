"""A deliberately broken merge-v1 implementation, for testing the conformance runner.

It speaks the runner's protocol (``broken_impl.py TRUSTED_KEYS_PATH BUNDLE_PATH``,
state JSON on stdout) but accepts every Ed25519 signature without checking it,
so every case whose verdict depends on a signature must fail.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pith_graph.ed25519 import Verifier
from pith_graph.keys import KeyRing
from pith_graph.rebuild import rebuild


class IgnoreSignatures(Verifier):
    """The bug under test: every signature is 'valid'."""

    __slots__ = ()

    def verify(self, public_key: bytes, signature: bytes, message: bytes) -> bool:
        return True


def main() -> int:
    keys_path, bundle_path = sys.argv[-2:]
    ring = KeyRing.from_json(Path(keys_path).read_bytes())
    result = rebuild(Path(bundle_path), trusted_keys=ring, verifier=IgnoreSignatures())[0]
    sys.stdout.buffer.write(result.state.to_json() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
