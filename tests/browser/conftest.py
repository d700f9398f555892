"""Fixtures for real-browser tests: one headless Chromium per session, a fresh page per test.

Playwright's own browser download is not used; the system Chromium is launched instead
(QUANYI_CHROMIUM, default /usr/bin/chromium). Without it the browser tests are skipped,
unless QUANYI_REQUIRE_BROWSER=1 demands them (then they fail loudly).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Playwright's sync API runs an asyncio event loop in this thread; Django would otherwise
# refuse the ORM calls the tests (and pytest-django's live_server setup) make from it.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DEFAULT_TIMEOUT_MS = 15_000


def _chromium_path() -> str:
    return os.environ.get("QUANYI_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    path = _chromium_path()
    if not Path(path).is_file():
        if os.environ.get("QUANYI_REQUIRE_BROWSER") == "1":
            pytest.fail(
                f"Chromium not found at {path} and QUANYI_REQUIRE_BROWSER=1: install it "
                "(apt-get install chromium) or point QUANYI_CHROMIUM at a Chromium binary."
            )
        pytest.skip(f"Chromium not found at {path}; browser tests skipped (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(locale="zh-CN")  # type: ignore[attr-defined]
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    context.set_default_navigation_timeout(DEFAULT_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
