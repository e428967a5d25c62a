"""The record's page in a real browser: headless Chromium (Debian's ``chromium``) loads it from a running server.

Skipped, with the reason shown, when chromium is not installed, unless
``PITH_GRAPH_REQUIRE_BROWSER=1`` (CI sets it): then a missing browser fails the test.
Screenshots are kept in ``$PITH_GRAPH_ARTIFACTS`` (default ``build/test-artifacts``).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pith_graph.store import EventStore

from .conftest import (
    AUTHOR,
    HOSTILE_TITLE,
    REGISTRY_CODE,
    MirrorStore,
    Served,
    attestation,
    code_of,
    make_store,
)

ARTIFACTS = Path(
    os.environ.get("PITH_GRAPH_ARTIFACTS", Path(__file__).parents[2] / "build" / "test-artifacts")
)
#: Flags for a quiet, offline, throwaway headless Chromium.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
BROWSER_S = 90


@pytest.fixture(scope="module")
def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("PITH_GRAPH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{message}, and PITH_GRAPH_REQUIRE_BROWSER=1")
        pytest.skip(f"{message}; set PITH_GRAPH_REQUIRE_BROWSER=1 to fail instead")
    return found


def run_browser(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=BROWSER_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def rendered_text(dom: str) -> str:
    """The visible text of a dumped DOM (tags dropped, entities decoded, spaces collapsed)."""
    body = dom.split("<body", 1)[1]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


@pytest.fixture(scope="module")
def forked_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MirrorStore, Served]]:
    """A mirror whose test subject holds a fork and an invalid event (imported locally, as evidence)."""
    store = make_store(tmp_path_factory.mktemp("browser"), ("2601.00051", "2601.00052"))
    history = store.histories["2601.00051"]
    left = attestation(history, "forked")
    right = attestation(history, "forked")  # a second root of the same stream: a fork
    broken = attestation(history, "broken")
    broken["payload"]["claim"] = "edited after signing"
    with EventStore(store.db) as events:
        events.import_bundle(history.bundle([left, right, broken]))
    served = store.serve()
    try:
        yield store, served
    finally:
        served.stop()


def test_the_registry_page_renders_with_the_papers_title(
    browser: str, mirror: Served, tmp_path: Path
) -> None:
    url = f"{mirror.url}/pith/{REGISTRY_CODE}"
    dom = run_browser(browser, tmp_path / "profile", "--dump-dom", url).stdout
    text = rendered_text(dom)
    assert (
        "CRAFT: Fine-Grained Cost-Aware Expert Replication For Efficient Mixture-of-Experts Serving" in text
    )
    assert "Adrian Zhao" in text
    assert "pith:2026:AG3PAJ22332P5QMVIKKH75CXNK" in text
    assert "1a7ac2e50ab382bc37366326f84cd1cf0cfd6e34c4b7a6e70a8b1a5df4ef92e5" in text
    assert "pith-v1-2026-05" in text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "mirror-page-AG3PAJ22.png"
    shot.unlink(missing_ok=True)
    run_browser(browser, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1200,1600", url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_payload_markup_shows_as_text_and_never_runs(
    browser: str, mirror: Served, mirror_store: MirrorStore, tmp_path: Path
) -> None:
    hostile = mirror_store.histories["2601.00002"]
    dom = run_browser(
        browser, tmp_path / "profile", "--dump-dom", f"{mirror.url}/pith/{code_of(hostile.subject)}"
    ).stdout
    # Had the payload's script run, it would have renamed the document to "pwned".
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None and html.unescape(title.group(1)) == f"{HOSTILE_TITLE} · pith-graph mirror"
    assert "<script>document.title" not in dom
    assert "<img src=" not in dom
    assert HOSTILE_TITLE in rendered_text(dom)


def test_forks_and_invalid_events_are_shown(
    browser: str, forked_mirror: tuple[MirrorStore, Served], tmp_path: Path
) -> None:
    store, served = forked_mirror
    history = store.histories["2601.00051"]
    url = f"{served.url}/pith/{code_of(history.subject)}"
    text = rendered_text(run_browser(browser, tmp_path / "profile", "--dump-dom", url).stdout)
    assert "Fork detected: 1 equivocation" in text
    assert "content_hash_mismatch" in text
    assert AUTHOR.signer_id in text
    with served.client() as client:
        state = client.get(f"/pith/{code_of(history.subject)}/state.json").json()
    assert state["equivocation_count"] == 1 and state["invalid_event_count"] == 1
    for event_id in state["equivocations"][0]["event_ids"]:
        assert event_id in text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "mirror-page-fork.png"
    shot.unlink(missing_ok=True)
    run_browser(browser, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1200,1600", url)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
