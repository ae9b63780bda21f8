"""/operations at a desktop size (1400×900) and a phone size (390×844) in real Chromium, under the
strict CSP: no horizontal scroll, Start and Stop clickable, long words wrapped, no console error or
CSP violation, no serious or critical axe-core finding, a 24-hour picker with a minimum, a
non-existent DST wall time refused. Screenshots of both sizes are saved in test-output/."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from django.utils import timezone

from drains.bursts import upcoming_week_boundary
from drains.controls import set_drain_enabled
from drains.models import DrainControl, DrainRun
from halacha.models import CourtDecision
from tests.e2e.test_operations_page import ARGS, CHROMIUM, JERUSALEM, pick
from tests.support.items import sync_all

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="run `make browser` (Debian's chromium)"),
]

LONG_WORD = "/var/lib/drains/" + "x" * 300  # one word: no space to break at
PASSWORD = "a-long-pass-phrase"

# Collects CSP violations from the first moment of the page (the init script is injected by
# the browser's devtools protocol, which the page's CSP does not govern).
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.fixture
def state(transactional_db, django_user_model):
    user = django_user_model.objects.create_user("olga", password=PASSWORD, is_staff=True)
    for codename in ("view_draincontrol", "change_draincontrol"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    CourtDecision.objects.bulk_create(
        CourtDecision(external_id=f"e2e-{i}", text="text") for i in range(7)
    )
    sync_all()
    now = timezone.now()
    DrainRun.objects.create(drain="halacha", host="host-a", pid=1, status="failed",
                            started_at=now - timedelta(minutes=30),
                            finished_at=now - timedelta(minutes=20),
                            error=f"could not open {LONG_WORD}")
    return user


@pytest.fixture
def allow_orm_beside_playwright(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.mark.parametrize(("width", "height"), [(1400, 900), (390, 844)])
def test_operations_page_fits_is_accessible_and_csp_clean(
    live_server, state, output_dir, allow_orm_beside_playwright, width, height
):
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect, sync_playwright

    boundary = upcoming_week_boundary(timezone.now())
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(timezone_id="America/New_York", locale="en-US",
                                          viewport={"width": width, "height": height})
            context.add_init_script(WATCH_CSP)
            page = context.new_page()
            console_errors = []
            page.on("console", lambda m: console_errors.append(f"{m.text} {m.location}") if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.on("response", lambda r: console_errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
            page.goto(f"{live_server.url}/operations")
            page.fill("#id_username", "olga")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{live_server.url}/operations")
            page.wait_for_load_state("networkidle")

            # Nothing is wider than the window: no horizontal scroll, even with a long word.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            last = page.locator('tbody[data-service="halacha"] [data-f="last"]')
            expect(last).to_contain_text("xxxxxxxx")
            box = last.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width

            row = page.locator('tbody[data-service="halacha"]')
            form = row.locator("form.burst-form")
            start, stop = form.locator('button[value="on"]'), form.locator('button[value="off"]')
            for button in (start, stop):
                button.scroll_into_view_if_needed()
                b = button.bounding_box()
                assert b["x"] >= 0 and b["x"] + b["width"] <= width, b

            # The picker: a 24-hour clock, no day before today, none after the week boundary.
            hours = form.locator("select[name=hour] option").all_inner_texts()
            assert hours == [f"{h:02d}" for h in range(24)]
            date = form.locator("input[name=date]")
            today = timezone.now().astimezone(JERUSALEM).strftime("%Y-%m-%d")
            assert date.get_attribute("min") == today
            assert date.get_attribute("max") == boundary.astimezone(JERUSALEM).strftime("%Y-%m-%d")

            # Start and Stop are clickable (Playwright refuses to click what is covered).
            start.click()
            expect(row.locator('[data-f="burst"]')).to_have_text(
                f"on until {boundary.astimezone(JERUSALEM):%a %H:%M %Z}")
            assert DrainControl.objects.get(name="halacha").burst_until == boundary
            page.screenshot(path=str(output_dir / f"operations-{width}x{height}.png"), full_page=True)
            stop.click()
            expect(row.locator('[data-f="burst"]')).to_have_text("off")
            assert DrainControl.objects.get(name="halacha").burst_until is None

            # A wall time skipped by the spring DST change is refused with a message.
            # (Israel moves its clocks from 02:00 to 03:00 on Friday 2027-03-26.)
            form.locator("input[name=date]").fill("2027-03-26")
            form.locator("select[name=hour]").select_option("02")
            form.locator("select[name=minute]").select_option("30")
            start.click()
            error = form.locator(".form-error")
            expect(error).to_have_text(
                "02:30 does not exist on 2027-03-26 in Asia/Jerusalem: the clocks jump forward an "
                "hour that night. Pick a time outside the skipped hour.")
            assert DrainControl.objects.get(name="halacha").burst_until is None
            pick(form, boundary)  # back to a valid choice

            # A burst on a disabled drain: accepted, and the page says nothing will run.
            set_drain_enabled(name="halacha", enabled=False, actor="vera")
            start.click()
            notice = "burst on, but the drain is disabled: nothing will run"
            expect(form.locator(".form-status")).to_contain_text(notice)
            expect(row.locator('[data-f="burst"] .burst-notice')).to_have_text(notice)
            expect(row.locator('[data-f="reason"]')).to_contain_text("disabled by vera")

            # Accessibility: no serious or critical axe-core finding.
            results = Axe().run(page)
            serious = [(v["id"], v["impact"], len(v["nodes"])) for v in results.response["violations"]
                       if v["impact"] in ("serious", "critical")]
            assert serious == [], results.generate_snapshot()

            assert page.evaluate("window.__csp") == []
            assert console_errors == []
            page.screenshot(path=str(output_dir / f"operations-{width}x{height}-after.png"),
                            full_page=True)
        finally:
            browser.close()
            connections.close_all()

    shot = output_dir / f"operations-{width}x{height}.png"
    assert shot.stat().st_size > 10_000
