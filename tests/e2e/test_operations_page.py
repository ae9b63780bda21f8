"""The /operations page in a real browser (Debian's Chromium driven by Playwright) against a real
server: log in, switch a burst on with a picked date, see state and deadline change, switch it
off, see the error for a past date. The browser runs in New York time on purpose: the page must
still read and send the picked time as Asia/Jerusalem."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from django.utils import timezone

from drains.bursts import upcoming_week_boundary
from drains.models import DrainControl, DrainEvent, DrainRun
from drains.selectors.usage import quota_weeks
from halacha.models import CourtDecision
from tests.support.items import sync_all

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
JERUSALEM = ZoneInfo("Asia/Jerusalem")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="run `make browser` (Debian's chromium)"),
]


def pick(form, moment) -> None:
    """Set the picker (date, hour 00-23, minute) to ``moment``'s Asia/Jerusalem wall time."""
    local = moment.astimezone(JERUSALEM)
    form.locator("input[name=date]").fill(local.strftime("%Y-%m-%d"))
    form.locator("select[name=hour]").select_option(local.strftime("%H"))
    form.locator("select[name=minute]").select_option(local.strftime("%M"))


def pick_value(form) -> str:
    return (f'{form.locator("input[name=date]").input_value()}T'
            f'{form.locator("select[name=hour]").input_value()}:'
            f'{form.locator("select[name=minute]").input_value()}')


@pytest.fixture
def operator_login(transactional_db, django_user_model):
    user = django_user_model.objects.create_user("olga", password="a-long-pass-phrase", is_staff=True)
    for codename in ("view_draincontrol", "change_draincontrol"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    CourtDecision.objects.bulk_create(
        CourtDecision(external_id=f"e2e-{i}", text="text") for i in range(7)
    )
    sync_all()
    now = timezone.now()
    # Inside the current quota week, whenever the test runs (the usage line counts that week).
    started = max(now - timedelta(hours=2), quota_weeks(now, 1)[0].start + timedelta(seconds=1))
    DrainControl.objects.create(name="halacha", quota_key="anthropic:e2e")
    DrainRun.objects.create(
        drain="halacha", host="host-a", pid=4100, started_at=started, status="succeeded",
        finished_at=started + timedelta(minutes=5), items_done=3, input_tokens=6300,
        cost_usd="0.07",
        model_usage={"claude-sonnet-4-6": {"calls": 3, "input_tokens": 6300, "cost_usd": 0.07}},
    )
    return "olga", "a-long-pass-phrase"


@pytest.fixture
def allow_orm_beside_playwright(monkeypatch):
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM reads are
    # plain synchronous code between browser steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def test_operations_page__burst_on_with_a_picked_date_off_and_a_past_date_error(
    live_server, operator_login, output_dir, allow_orm_beside_playwright
):
    from playwright.sync_api import expect, sync_playwright

    username, password = operator_login
    now = timezone.now()
    boundary = upcoming_week_boundary(now)
    # Half way to the week boundary, on a whole minute: always in the future and allowed.
    target = (now + (boundary - now) / 2).astimezone(JERUSALEM).replace(second=0, microsecond=0)
    if target <= now:
        target += timedelta(minutes=1)
    past = (now - timedelta(days=1)).astimezone(JERUSALEM)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(timezone_id="America/New_York", locale="en-US",
                                          viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"{live_server.url}/operations")
            page.fill("#id_username", username)
            page.fill("#id_password", password)
            page.click("input[type=submit]")
            page.wait_for_url(f"{live_server.url}/operations")

            row = page.locator('tbody[data-service="halacha"]')
            form = row.locator("form.burst-form")
            expect(row.locator('[data-f="burst"]')).to_have_text("off")
            expect(row.locator('[data-f="state"]')).to_have_text("idle")
            expect(row.locator('[data-f="reason"]')).to_contain_text("7 pending")
            # The last run says which model its calls were spent on.
            expect(row.locator('[data-f="last"]')).to_contain_text("model claude-sonnet-4-6")
            # This quota week's usage per quota key (rendered on the server) ...
            usage = page.locator("#usage li").first
            # (each drain's product in its own words: the halacha drain made none yet)
            expect(usage).to_have_text(
                "anthropic:e2e: this week: 3 items, 6.3 k input tokens, $0.07; 0 halachot")
            # ... and rebuilt from the API on refresh.
            started = DrainRun.objects.get(pid=4100).started_at
            DrainRun.objects.create(
                drain="halacha", host="host-a", pid=4101, started_at=started, status="rate_limited",
                finished_at=started + timedelta(minutes=6), items_done=2, input_tokens=700,
                cost_usd="0.03")
            page.evaluate("window.operationsPage.refresh()")
            expect(usage).to_have_text("anthropic:e2e: this week: 5 items, 7.0 k input tokens, "
                                       "$0.10, 1 refused call; 0 halachot")
            # The picker starts at the upcoming Saturday 18:00 Asia/Jerusalem, on a 24-hour clock.
            assert pick_value(form) == boundary.strftime("%Y-%m-%dT%H:%M")

            # On, with a picked date.
            pick(form, target)
            form.locator('button[value="on"]').click()
            shown = target.strftime("%a %H:%M %Z")
            expect(row.locator('[data-f="burst"]')).to_have_text(f"on until {shown}")
            expect(row.locator('[data-f="reason"]')).to_contain_text(f"burst until {shown}")
            expect(row.locator('[data-f="projection"]')).to_contain_text("burst deadline")
            expect(page.locator("#timeline li").first).to_contain_text("burst on until")
            expect(form.locator(".form-error")).to_be_hidden()
            control = DrainControl.objects.get(name="halacha")
            assert control.burst_until == target  # the wall time was read as Asia/Jerusalem
            assert control.updated_by == "olga"
            page.screenshot(path=str(output_dir / "operations-burst-on.png"), full_page=True)

            # Off.
            form.locator('button[value="off"]').click()
            expect(row.locator('[data-f="burst"]')).to_have_text("off")
            assert DrainControl.objects.get(name="halacha").burst_until is None

            # A past date: the service's message, in plain words, and nothing changed.
            pick(form, past)
            form.locator('button[value="on"]').click()
            error = form.locator(".form-error")
            expect(error).to_be_visible()
            expect(error).to_contain_text("is not in the future")
            expect(error).to_contain_text("Pick a later time.")
            page.screenshot(path=str(output_dir / "operations.png"), full_page=True)
            # The page refreshes itself from the API ...
            with page.expect_response(lambda r: r.url.endswith("/api/operations/")) as refreshed:
                page.evaluate("window.operationsPage.refresh()")
            assert refreshed.value.status == 200
            expect(page.locator("#page-error")).to_be_hidden()
            # ... and says in plain words when the API fails (the browser is handed a 500).
            page.route("**/api/operations/", lambda route: route.fulfill(
                status=500, content_type="text/html", body="<h1>Server Error (500)</h1>"))
            page.evaluate("window.operationsPage.refresh()")
            banner = page.locator("#page-error")
            expect(banner).to_be_visible()
            expect(banner).to_have_text("Could not refresh: The server failed (HTTP 500); the error "
                                        "is in the server log. Try again in a minute.")
            page.unroute("**/api/operations/")
        finally:
            browser.close()
            # Inside Playwright's sync API this code runs in a context of its own, so Django
            # gave it a connection of its own: close it, or the test database cannot be dropped.
            connections.close_all()

    assert DrainControl.objects.get(name="halacha").burst_until is None
    assert list(DrainEvent.objects.order_by("id").values_list("kind", "actor")) == [
        ("burst_on", "olga"),
        ("burst_off", "olga"),
    ]
    for name in ("operations.png", "operations-burst-on.png"):
        shot = output_dir / name
        assert shot.stat().st_size > 10_000, shot
    assert os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] == "true"
