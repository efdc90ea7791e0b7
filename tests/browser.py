"""Headless Chromium for the dashboard tests: Debian's browser (playwright must not download its
own), and the marks that skip a test with a message where either is missing. The tests import
playwright's names from here, so a machine without it skips them instead of failing to import."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine; the marks below skip the tests
    Browser = Page = expect = sync_playwright = None  # type: ignore[assignment,misc]

NEEDS_CHROMIUM = [
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not installed (pip install playwright)"),
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} is missing (apt-get install chromium fonts-noto-cjk); "
                              "playwright must not download its own browser"),
]


def launch_chromium() -> Iterator[Browser]:
    """One browser for a module's tests (a fixture's body): each test opens its own context."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
