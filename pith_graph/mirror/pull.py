"""``mirror pull``: fetch records from any mirror into the local store, trusting none of them.

SOURCE is a mirror's base URL, the URL of a mirror manifest (a path ending in
``.json``) or a manifest file (``pith-mirrors.json`` shape, FORMAT-FACTS). For
each wanted subject the manifest's mirrors are tried in order, the primary
first; at each, ``bundle_pattern`` then ``well_known_pattern``. A mirror is
passed over on a connection error, a timeout, a ``5xx`` (after the client's
retries), a ``4xx``, an answer that is not a bundle, or a bundle of another
subject. The first usable bundle is admitted
(:func:`pith_graph.mirror.admit.admit_bundle`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from pith_graph import codes
from pith_graph.documents import read_json
from pith_graph.errors import InputError, PeerError
from pith_graph.identifiers import PITH_NUMBER_RE
from pith_graph.keys import KeyRing
from pith_graph.mirror.admit import Admitted, admit_bundle, parse_bundle
from pith_graph.mirror.client import MirrorClient, parse_json
from pith_graph.mirror.peers import normalise_url
from pith_graph.store import EventStore

__all__ = [
    "Mirror",
    "PullOutcome",
    "Wanted",
    "mirrors_from_manifest",
    "mirrors_from_source",
    "pull_subject",
    "wanted",
]

MANIFEST_TYPE: Final = "pith_mirror_manifest"
#: Most mirrors taken from one manifest.
MAX_MIRRORS: Final = 64
_CODE_RE: Final = re.compile(r"[A-Z2-7]{26}")
_SHORT_RE: Final = re.compile(r"(?:pith:)?([A-Z2-7]{8,25})")
#: Failures after which the same mirror's other URL is not worth trying.
_HOST_DOWN: Final = frozenset({codes.E_PEER_UNREACHABLE, codes.E_PEER_TIMEOUT})


@dataclass(frozen=True, slots=True)
class Mirror:
    """A mirror to fetch from: a name, its base URL and its bundle URL patterns (``{suffix}`` = the code)."""

    name: str
    base_url: str | None
    patterns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Wanted:
    """A subject asked for: a full Pith Number, a 26-character code, or a short form (a code prefix)."""

    text: str
    number: str | None = None
    code: str | None = None
    prefix: str | None = None

    def matches(self, number: str) -> bool:
        """Whether a bundle's Pith Number is the one asked for."""
        match = PITH_NUMBER_RE.fullmatch(number)
        if match is None:
            return False
        if self.number is not None:
            return number == self.number
        code = match.group(2)
        return code == self.code if self.code is not None else code.startswith(self.prefix or "\x00")


@dataclass
class PullOutcome:
    """The outcome for one wanted subject: what was admitted (None: nothing usable) and every failed attempt."""

    wanted: Wanted
    admitted: Admitted | None = None
    failures: list[str] = field(default_factory=list)


def wanted(text: str) -> Wanted:
    """Read a subject as given on the command line (``usage`` error if it is none of the accepted forms)."""
    value = text.strip()
    if PITH_NUMBER_RE.fullmatch(value):
        return Wanted(value, number=value, code=value.rsplit(":", 1)[1])
    if _CODE_RE.fullmatch(value):
        return Wanted(value, code=value)
    short = _SHORT_RE.fullmatch(value)
    if short is not None:
        return Wanted(value, prefix=short.group(1))
    raise InputError(f"not a Pith Number (pith:YEAR:CODE, CODE or pith:SHORT): {text!r}", code=codes.E_USAGE)


def _pattern(value: Any, where: str) -> str:
    if not isinstance(value, str) or "{suffix}" not in value:
        raise InputError(f"{where}: a bundle pattern must be a string holding {{suffix}}", code=codes.E_SHAPE)
    if urlsplit(value.replace("{suffix}", "X")).scheme not in ("http", "https"):
        raise InputError(f"{where}: {value!r} is not an http(s) URL pattern", code=codes.E_SHAPE)
    return value


def mirrors_from_manifest(manifest: Any, where: str) -> list[Mirror]:
    """The mirrors a ``pith_mirror_manifest`` lists, the primary first (then in listed order)."""
    if not isinstance(manifest, dict) or manifest.get("manifest_type") != MANIFEST_TYPE:
        raise InputError(f"{where} is not a {MANIFEST_TYPE}", code=codes.E_NOT_PITH)
    listed = manifest.get("mirrors")
    if not isinstance(listed, list) or not listed:
        raise InputError(f"{where}: the manifest lists no mirrors", code=codes.E_SHAPE)
    mirrors: list[tuple[bool, Mirror]] = []
    for index, entry in enumerate(listed[:MAX_MIRRORS]):
        at = f"{where}: mirrors[{index}]"
        if not isinstance(entry, dict):
            raise InputError(f"{at} is not an object", code=codes.E_SHAPE)
        base = entry.get("base_url") if isinstance(entry.get("base_url"), str) else None
        patterns = [
            _pattern(entry[key], at) for key in ("bundle_pattern", "well_known_pattern") if key in entry
        ]
        if not patterns and base is not None:
            patterns = [p.replace("{base}", normalise_url(base)) for p in _BASE_PATTERNS]
        if not patterns:
            raise InputError(f"{at} names neither bundle patterns nor a base_url", code=codes.E_SHAPE)
        name = entry.get("name") if isinstance(entry.get("name"), str) else base or f"mirror {index}"
        mirrors.append((entry.get("status") != "primary", Mirror(str(name), base, tuple(patterns))))
    return [
        mirror for _, mirror in sorted(mirrors, key=lambda pair: pair[0])
    ]  # stable: listed order otherwise


_BASE_PATTERNS: Final = ("{base}/pith/{suffix}/bundle.json", "{base}/.well-known/pith/{suffix}/bundle.json")


def mirrors_from_source(source: str, client: MirrorClient) -> list[Mirror]:
    """The mirrors SOURCE names (see the module). A manifest that cannot be had is a :class:`PeerError`."""
    if source.startswith(("http://", "https://")):
        if urlsplit(source).path.endswith(".json"):
            return mirrors_from_manifest(parse_json(client.get(source)), source)
        base = normalise_url(source)
        return [Mirror(base, base, tuple(p.replace("{base}", base) for p in _BASE_PATTERNS))]
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{source}: neither an http(s) URL nor a manifest file", code=codes.E_USAGE)
    return mirrors_from_manifest(read_json(path), source)


def _resolve_prefix(
    want: Wanted, store: EventStore, mirrors: Sequence[Mirror], client: MirrorClient
) -> Wanted:
    """A short form made into a code: from the store's subjects, else from a mirror's resolver (checked)."""
    held = [s for s in store.subjects() if PITH_NUMBER_RE.fullmatch(s) and want.matches(s)]
    if len(held) == 1:
        return Wanted(want.text, number=held[0], code=held[0].rsplit(":", 1)[1])
    for mirror in mirrors:
        if mirror.base_url is None:
            continue
        url = f"{normalise_url(mirror.base_url)}/api/pith-number/resolve?{urlencode({'short': want.prefix, 'json': 'true'})}"
        try:
            answer = parse_json(client.get(url))
        except PeerError:
            continue
        number = answer.get("pith_number") if isinstance(answer, dict) else None
        if isinstance(number, str) and want.matches(number):  # the resolver is checked, not trusted
            return Wanted(want.text, code=number.rsplit(":", 1)[1], prefix=want.prefix)
    return want


def pull_subject(
    store: EventStore,
    want: Wanted,
    mirrors: Sequence[Mirror],
    *,
    client: MirrorClient,
    ring: KeyRing,
) -> PullOutcome:
    """Try the mirrors in order until one serves a usable bundle of ``want``; admit it."""
    outcome = PullOutcome(want)
    if want.code is None:
        want = _resolve_prefix(want, store, mirrors, client)
        outcome.wanted = want
    if want.code is None:
        outcome.failures.append(
            f"cannot resolve {want.text!r} to a full Pith Number (no mirror's resolver knew it)"
        )
        return outcome
    for mirror in mirrors:
        for pattern in mirror.patterns:
            url = pattern.replace("{suffix}", want.code)
            try:
                body = client.get(url).body
                raw = parse_bundle(body, subject=want.number or want.matches, url=url)
            except PeerError as exc:
                outcome.failures.append(f"{url}: {exc.code}")
                if exc.code in _HOST_DOWN:
                    break  # the other pattern names the same host
                continue
            outcome.admitted = admit_bundle(store, raw, subject=raw["pith_number"], ring=ring, source=url)
            return outcome
    return outcome
