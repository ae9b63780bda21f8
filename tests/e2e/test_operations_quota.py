"""The /operations quota bars in real Chromium at a desktop size (1400×900) and a phone size
(390×844), under the strict CSP: each window a labelled bar with the reserve marked, the forecast
line, the API-key account's "no signal" line; redrawn from the API on refresh (a window reaching
its ceiling turns the bar red and says so); nothing wider than the screen; no console error, no
CSP violation, no serious or critical axe-core finding. Screenshots in test-output/."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from django.utils import timezone

from drains.models import DrainControl
from drains.quota.models import QuotaPolicy, QuotaWindow
from drains.quota.wording import NO_SIGNAL
from tests.e2e.test_operations_layout import WATCH_CSP
from tests.e2e.test_operations_page import ARGS, CHROMIUM, JERUSALEM
from tests.support.quota_rows import make_window

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="run `make browser` (Debian's chromium)"),
]

PASSWORD = "a-long-pass-phrase"
CHAIR = "anthropic:chair"


@pytest.fixture
def quota_state(transactional_db, django_user_model):
    user = django_user_model.objects.create_user("olga", password=PASSWORD, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_draincontrol"))
    now = timezone.now()
    DrainControl.objects.create(name="halacha", quota_key=CHAIR)
    DrainControl.objects.create(name="metadata", quota_key="anthropic:api-key")
    QuotaPolicy.objects.create(quota_key=CHAIR, autopilot=True)
    week_reset = (now + timedelta(days=2)).replace(second=0, microsecond=0)
    session_reset = (now + timedelta(hours=3)).replace(second=0, microsecond=0)
    make_window(CHAIR, "seven_day", 0.30, resets_at=week_reset, now=now)
    make_window(CHAIR, "five_hour", 0.42, resets_at=session_reset, now=now)
    return week_reset, session_reset


@pytest.fixture
def allow_orm_beside_playwright(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def hhmm(moment) -> str:
    """How the page says a time within six days: the operator's zone, with its abbreviation."""
    return moment.astimezone(JERUSALEM).strftime("%a %H:%M %Z")


@pytest.mark.parametrize(("width", "height"), [(1400, 900), (390, 844)])
def test_quota_bars_at_desktop_and_phone_widths(
    live_server, quota_state, output_dir, allow_orm_beside_playwright, width, height
):
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect, sync_playwright

    week_reset, session_reset = quota_state
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(timezone_id="America/New_York", locale="en-US",
                                          viewport={"width": width, "height": height})
            context.add_init_script(WATCH_CSP)
            page = context.new_page()
            errors = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{live_server.url}/operations")
            page.fill("#id_username", "olga")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{live_server.url}/operations")
            page.wait_for_load_state("networkidle")

            chair = page.locator(f'#quotas .quota[data-quota="{CHAIR}"]')
            week = chair.locator('li[data-window="seven_day"]')
            session = chair.locator('li[data-window="five_hour"]')
            # "seen 2 min ago" when the page loads at once; 3 on a slow machine.
            seen = r" · seen [23] min ago"
            expect(week.locator(".quota-text")).to_have_text(re.compile(
                re.escape(f"Week 30 % used · resets {hhmm(week_reset)}") + seen
                + re.escape(" · reserve 10 % (ceiling 90 %)") + "$"))
            expect(session.locator(".quota-text")).to_have_text(re.compile(
                re.escape(f"5 hours 42 % used · resets {hhmm(session_reset)}") + seen + "$"))
            # The bar: 30 of 100 used, the reserve marked from the ceiling (90) to the end.
            bar = week.locator("svg.quota-bar")
            assert bar.locator("rect.used").get_attribute("width") == "30"
            assert bar.locator("rect.reserve").get_attribute("x") == "90"
            assert bar.locator("rect.reserve").get_attribute("width") == "10"
            box = bar.bounding_box()
            assert box["width"] > 100 and box["x"] >= 0 and box["x"] + box["width"] <= width
            # Drawn, not just present: the used part is as wide as 30 % of the bar.
            used = bar.locator("rect.used").bounding_box()
            assert abs(used["width"] - 0.3 * box["width"]) < 2
            expect(chair.locator(".quota-forecast")).to_contain_text("at this pace the week ends at")
            expect(page.locator('#quotas .quota[data-quota="anthropic:api-key"] .quota-forecast')
                   ).to_have_text(NO_SIGNAL)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(path=str(output_dir / f"quota-{width}x{height}.png"), full_page=True)

            # The week reaches its ceiling: the next refresh redraws the bar from the API.
            QuotaWindow.objects.filter(quota_key=CHAIR, window="seven_day").update(
                utilization=0.95, observed_at=timezone.now())
            page.evaluate("window.operationsPage.refresh()")
            expect(week.locator(".quota-text")).to_contain_text(
                "Week 95 % used · resets")
            expect(week.locator(".quota-text")).to_contain_text(
                "seen just now · reserve 10 % (ceiling 90 %) · at the ceiling: no drain call starts")
            expect(week).to_have_class("quota-window full")
            assert week.locator("rect.used").get_attribute("width") == "95"
            assert page.evaluate("document.documentElement.scrollWidth") <= width

            results = Axe().run(page)
            serious = [(v["id"], v["impact"], len(v["nodes"])) for v in results.response["violations"]
                       if v["impact"] in ("serious", "critical")]
            assert serious == [], results.generate_snapshot()
            assert page.evaluate("window.__csp") == []
            assert errors == []
            page.locator("#quota-section").screenshot(
                path=str(output_dir / f"quota-{width}x{height}-full.png"))
        finally:
            browser.close()
            connections.close_all()

    assert (output_dir / f"quota-{width}x{height}.png").stat().st_size > 10_000
