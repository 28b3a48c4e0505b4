"""The atlas in a real browser: headless Chromium opens it from ``file://``, follows a link to a
layer page and from there to a map page, and every image on each page must have loaded with no
console error. Screenshots of the three pages are kept in ``artifacts/browser/`` (git-ignored).

Runs the small test study's atlas always, and the default study's ``atlas/default`` when the
pipeline has produced it. Needs Debian's ``chromium`` (``.ci/run`` installs it) and the
``playwright`` package, which drives the system browser (its own browser download is not used).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from atlas_study import build_atlas
from conftest import REPO_ROOT, synthetic_prepared

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "artifacts" / "browser"
DEFAULT_ATLAS = REPO_ROOT / "atlas" / "default" / "index.html"

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="chromium not installed (apt-get install chromium)"),
]


def _check_page(page: Any, errors: list[str], shot: Path) -> None:
    """All images on the page decoded (naturalWidth > 0), no console error; screenshot kept."""
    page.wait_for_load_state("load")
    widths = page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert widths, f"no images on {page.url}"
    broken = [src for src, width in widths if width == 0]
    assert not broken, f"{len(broken)} broken images on {page.url}: {broken[:3]}"
    assert not errors, f"console errors on {page.url}: {errors}"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=False)


def _browse(index: Path, name: str, layer_link: str, map_link: str) -> None:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda req: errors.append(f"failed: {req.url}"))
            page.goto(index.resolve().as_uri())
            _check_page(page, errors, ARTIFACTS / f"{name}-index.png")
            page.click(f"a[href='{layer_link}']")
            assert "/layers/" in page.url
            _check_page(page, errors, ARTIFACTS / f"{name}-layer.png")
            page.click(f"a[href='{map_link}']")
            assert "/maps/" in page.url
            _check_page(page, errors, ARTIFACTS / f"{name}-map.png")
        finally:
            browser.close()


def test_test_study_atlas_in_chromium(tmp_path: Path) -> None:
    index = build_atlas(synthetic_prepared(), tmp_path)
    _browse(index, "tiny", "layers/relu3--benchmark_seed0.html", "../maps/relu3/0.html")


@pytest.mark.skipif(not DEFAULT_ATLAS.is_file(), reason="no atlas/default: run the pipeline (dvc repro atlas)")
def test_default_study_atlas_in_chromium() -> None:
    _browse(DEFAULT_ATLAS, "default", "layers/relu3--benchmark_seed0.html", "../maps/relu3/0.html")
