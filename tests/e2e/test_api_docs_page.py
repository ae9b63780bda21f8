"""/api/docs/ (Swagger UI, served from drf-spectacular-sidecar) in real Chromium under the strict
CSP: it renders the operations, with no CSP violation and no console error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_operations_layout import WATCH_CSP
from tests.e2e.test_operations_page import ARGS, CHROMIUM

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="run `make browser` (Debian's chromium)"),
]


def test_api_docs__renders_under_the_csp_without_a_console_error(live_server, transactional_db,
                                                                  output_dir):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_init_script(WATCH_CSP)
            page = context.new_page()
            errors = []
            page.on("console", lambda m: errors.append(f"{m.text} {m.location}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
            page.goto(f"{live_server.url}/api/docs/")
            expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=20_000)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(output_dir / "api-docs-1400.png"), full_page=True)
            assert page.evaluate("window.__csp") == []
            assert errors == []
        finally:
            browser.close()
