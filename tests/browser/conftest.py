"""Playwright driving Debian's chromium (no downloaded browsers, no outside network)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "browser"


@pytest.fixture(scope="module")
def chromium(gateway_url):
    """One browser per module. Module-scoped on purpose: Playwright's sync API keeps an
    event loop running in this thread, which later (async_to_sync) tests must not see."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (CI installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    # The gateway subprocess is already up (gateway_url), so this only affects this
    # process: the test's ORM calls between page actions are plain synchronous calls.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium, gateway_url):
    context = chromium.new_context(base_url=gateway_url, accept_downloads=True,
                                   viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway_url)
    # Belt and braces: nothing but the gateway under test may be reached.
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(gateway_url)
                  else route.abort())
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
