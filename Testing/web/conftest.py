"""Fixtures of the review page's tests: a copy of the assessed phantom, Chromium driven by Playwright.

Screenshots go to the test's folder and, when SPINEASSIST_SCREENSHOTS names a folder, there too (how the
README's picture is made); look at them after a change to the page.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("SPINEASSIST_CHROMIUM", "/usr/bin/chromium"))
VIEWPORT = {"width": 1400, "height": 850}


@pytest.fixture
def assessed_out(assessed, tmp_path) -> Path:
    """A private copy of the phantom's output folder (the session's `assessed`), for a test that writes to it."""
    _, out, _ = assessed
    return Path(shutil.copytree(out, tmp_path / "out"))


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `make setup` installs it (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(tmp_path):
    """``screenshot(page, "name")``: save the page as name.png beside the test (and in $SPINEASSIST_SCREENSHOTS)."""
    extra = os.environ.get("SPINEASSIST_SCREENSHOTS")

    def take(page, name: str) -> Path:
        path = tmp_path / "screenshots" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(path))
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, Path(extra) / path.name)
        return path

    return take
