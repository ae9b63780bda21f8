"""The operator's actions on the page in real Chromium (desktop and phone), under the strict
CSP: each button's state before, the result after, the audit event naming the user, and — for
a view-only user — the disabled button saying which permission it needs. The run page of a
failed run shows its one-line reason and, to staff, the traceback; the failed list retries one
item. axe finds nothing serious, no CSP violation, no console error; screenshots of the page,
the run page and the failed list at both widths go to test-output/."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from django.utils import timezone

from drains.models import DrainControl, DrainEvent, DrainRun
from drains.quota.backoff import record_backoff
from halacha.models import CourtDecision
from tests.e2e.test_operations_layout import WATCH_CSP
from tests.e2e.test_operations_page import ARGS, CHROMIUM
from tests.support.items import set_state, sync_all

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="run `make browser` (Debian's chromium)"),
]
PASSWORD = "a-long-pass-phrase"
REASON = "ImproperlyConfigured: HALACHA_EXTRACTOR='bogus' is not a known backend"


@pytest.fixture
def state(transactional_db, django_user_model):
    olga = django_user_model.objects.create_user("olga", password=PASSWORD, is_staff=True)
    vera = django_user_model.objects.create_user("vera", password=PASSWORD, is_staff=True)
    for codename in ("view_draincontrol", "change_draincontrol"):
        olga.user_permissions.add(Permission.objects.get(codename=codename))
    vera.user_permissions.add(Permission.objects.get(codename="view_draincontrol"))
    CourtDecision.objects.bulk_create(
        [CourtDecision(external_id=f"p-{i}", text="text", text_sha256=f"{i:064d}")
         for i in range(3)])
    failed = CourtDecision.objects.bulk_create(
        [CourtDecision(external_id=f"f-{i}", text="text", text_sha256=f"{100 + i:064d}")
         for i in range(2)])
    set_state("halacha", failed, "failed", attempts=3, last_error="the reply is not JSON")
    now = timezone.now()
    run = DrainRun.objects.create(
        drain="halacha", host="host-a", pid=1, status="failed", stop_reason="error",
        started_at=now - timedelta(minutes=30), finished_at=now - timedelta(minutes=29),
        error=REASON, error_kind="configuration",
        error_traceback="Traceback (most recent call last):\n  File \"x.py\", line 1\n" + REASON)
    record_backoff(drain="halacha", quota_key="q", reset_at=now + timedelta(hours=2),
                   reason="usage limit reached")
    return run


@pytest.fixture
def allow_orm_beside_playwright(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _open(p, live_server, width, height, username, *, clock=False):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    context = browser.new_context(timezone_id="America/New_York", locale="en-US",
                                  viewport={"width": width, "height": height})
    if clock:  # the page's timers under the test's hand (time flows on until fast-forwarded)
        context.clock.install()
    context.add_init_script(WATCH_CSP)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.text} {m.location}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    # A refused action is a 409/400 the page explains; anything else ≥ 400 is a fault.
    page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}")
            if r.status >= 400 and r.status not in (409,) else None)
    page.goto(f"{live_server.url}/operations")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/operations")
    return browser, page, errors


def _clean(page, errors):
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    serious = [(v["id"], v["impact"], len(v["nodes"])) for v in results.response["violations"]
               if v["impact"] in ("serious", "critical")]
    assert serious == [], results.generate_snapshot()
    assert page.evaluate("window.__csp") == []
    assert errors == []
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


@pytest.mark.parametrize(("width", "height"), [(1400, 900), (390, 844)])
def test_actions_on_the_page__before_after_and_audited(
    live_server, state, output_dir, allow_orm_beside_playwright, width, height
):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page, errors = _open(p, live_server, width, height, "olga")
        try:
            row = page.locator('tbody[data-service="halacha"]')
            actions = row.locator(".actions")
            run_now = actions.locator("form.run-now button")
            retry_now = actions.locator("form.retry-now button")
            stop = actions.locator("form.stop-run button")
            enabled = actions.locator("form.enabled")
            # Before: run now is refused while backing off, and says why; retry now can apply.
            expect(run_now).to_be_disabled()
            expect(run_now).to_have_attribute("title", "a backoff is in force until "
                                              + run_now.get_attribute("title").split("until ")[1])
            expect(stop).to_be_disabled()
            expect(actions.locator('[data-f="stop-why"]')).to_have_text("no run to stop")
            expect(retry_now).to_be_enabled()
            expect(row.locator('[data-f="last"] a')).to_have_text(f"run {state.pk}")
            expect(row.locator('[data-f="last"]')).to_contain_text("configuration error: " + REASON)
            page.screenshot(path=str(output_dir / f"page-{width}.png"), full_page=True)

            # Retry now: the backoff is cleared, audited, and the button then says why not.
            retry_now.click()
            expect(actions.locator("form.retry-now .form-status")).to_contain_text(
                "the next run probes the quota")
            expect(retry_now).to_be_disabled()
            expect(actions.locator('[data-f="retry-now-why"]')).to_have_text("no backoff to clear")
            assert DrainControl.objects.get(name="halacha").backoff_until is None
            assert DrainEvent.objects.get(kind="retry_now").actor == "olga"

            # Disable with a reason, then the same button enables.
            enabled.locator("input[name=reason]").fill("rotating the key")
            enabled.locator("button").click()
            expect(enabled.locator("button")).to_have_text("Enable")
            expect(row.locator('[data-f="state"]')).to_have_text("disabled")
            event = DrainEvent.objects.get(kind="disabled")
            assert (event.actor, event.message) == ("olga", "drain disabled: rotating the key")
            enabled.locator("button").click()
            expect(enabled.locator("button")).to_have_text("Disable")
            assert DrainControl.objects.get(name="halacha").enabled is True
            _clean(page, errors)

            # The failed run's page: the one-line reason, and the traceback for staff.
            row.locator('[data-f="last"] a').click()
            page.wait_for_url(f"{live_server.url}/operations/runs/{state.pk}")
            expect(page.locator('[data-f="reason"]')).to_have_text("configuration error: " + REASON)
            page.locator("#traceback summary").click()
            expect(page.locator("#traceback pre")).to_contain_text("Traceback (most recent call last)")
            stop_here = page.locator("form.action-form button")
            expect(stop_here).to_be_disabled()
            expect(page.locator("#stop-why")).to_have_text(f"run {state.pk} is not running (it failed)")
            page.screenshot(path=str(output_dir / f"run-{width}.png"), full_page=True)
            _clean(page, errors)

            # The failed list: retry one item; the list and the audit say so.
            page.goto(f"{live_server.url}/operations/failed?drain=halacha")
            section = page.locator('section[data-drain="halacha"]')
            expect(section.locator('[data-f="count"]')).to_have_text("2")
            page.screenshot(path=str(output_dir / f"failed-{width}.png"), full_page=True)
            section.locator("tr[data-item] button").first.click()
            expect(page.locator(".flash")).to_have_text("halacha: 1 failed item back in the backlog")
            expect(section.locator('[data-f="count"]')).to_have_text("1")
            assert DrainEvent.objects.get(kind="retried").actor == "olga"
            _clean(page, errors)
        finally:
            browser.close()
            connections.close_all()


@pytest.mark.parametrize(("width", "height"), [(1400, 900), (390, 844)])
def test_actions__a_view_only_user_sees_each_button_disabled_with_the_permission(
    live_server, state, output_dir, allow_orm_beside_playwright, width, height
):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page, errors = _open(p, live_server, width, height, "vera")
        try:
            row = page.locator('tbody[data-service="halacha"]')
            expect(page.locator("#view-only")).to_contain_text("drains.change_draincontrol")
            for selector in ("form.run-now button", "form.retry-now button", "form.enabled button",
                             "form.stop-run button", 'button[value="on"]', 'button[value="off"]'):
                button = row.locator(selector)
                expect(button).to_be_disabled()
                assert "needs the permission drains.change_draincontrol" in button.get_attribute("title")
            _clean(page, errors)
            page.goto(f"{live_server.url}/operations/runs/{state.pk}")
            button = page.locator("form.action-form button")
            expect(button).to_be_disabled()
            assert "drains.change_draincontrol" in button.get_attribute("title")
            page.goto(f"{live_server.url}/operations/failed")
            for button in page.locator("form.action-form button").all():
                expect(button).to_be_disabled()
            _clean(page, errors)
            assert not DrainEvent.objects.exclude(kind="backoff").exists()
        finally:
            browser.close()
            connections.close_all()


# --- run now, stop a run, and the run-now button following the refresh ----------------------------

RUN_BOUND = 25  # seconds: a drain child starts, runs or stops well within it, even under load


def _poll(what, condition, bound=RUN_BOUND):
    """``condition()``'s first truthy answer within ``bound`` seconds (fails saying ``what``)."""
    import time

    limit = time.monotonic() + bound
    while True:
        answer = condition()
        if answer:
            return answer
        assert time.monotonic() < limit, f"{what} within {bound} s"
        time.sleep(0.1)


@pytest.fixture
def runnable(transactional_db, django_user_model, monkeypatch, settings, tmp_path):
    """olga may act; halacha has pending decisions, no backoff, no cron line near (real time:
    its :10/:25/:40/:55 start would refuse run now) and a drain child reaches this database."""
    from tests.support.db import database_url

    olga = django_user_model.objects.create_user("olga", password=PASSWORD, is_staff=True)
    for codename in ("view_draincontrol", "change_draincontrol"):
        olga.user_permissions.add(Permission.objects.get(codename=codename))
    monkeypatch.setenv("DATABASE_URL", database_url())
    settings.DRAINS_LOG_DIR = tmp_path
    settings.CRONJOBS = [job for job in settings.CRONJOBS if job[2] != ["drain_halacha"]]

    def decisions(n):
        CourtDecision.objects.bulk_create(
            [CourtDecision(external_id=f"r-{i}", text="We hold that the rule binds.",
                           text_sha256=f"{200 + i:064d}") for i in range(n)])
        sync_all()

    return decisions


def _refresh(page):
    """What the 15 s timer does, now (window.operationsPage.refresh: the snapshot API)."""
    page.evaluate("window.operationsPage.refresh()")


def _kill_leftover_runs():
    import os
    import signal

    for pid in DrainRun.objects.filter(status="running").values_list("pid", flat=True):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize(("width", "height"), [(1400, 900), (390, 844)])
def test_run_now_on_the_page__starts_a_manual_run_audited(
    live_server, runnable, allow_orm_beside_playwright, monkeypatch, output_dir, width, height
):
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("HALACHA_EXTRACTOR", "tests.support.extractors:InstantExtractor")
    runnable(2)
    with sync_playwright() as p:
        browser, page, errors = _open(p, live_server, width, height, "olga")
        try:
            actions = page.locator('tbody[data-service="halacha"] .actions')
            run_now = actions.locator("form.run-now button")
            # Before: it can apply, so it is enabled and gives no reason.
            expect(run_now).to_be_enabled()
            expect(actions.locator('[data-f="run-now-why"]')).to_have_text("")
            assert not DrainRun.objects.exists()

            run_now.click()
            expect(actions.locator("form.run-now .form-status")).to_contain_text(
                "run now: started drain_halacha (pid ")
            # After: the started child's run row, manual, ran the backlog.
            run = _poll("the run-now child's run finishes",
                        lambda: DrainRun.objects.filter(finished_at__isnull=False).first())
            assert (run.drain, run.trigger, run.status, run.items_done) == (
                "halacha", "manual", "succeeded", 2)
            event = DrainEvent.objects.get(kind="run_now")
            assert (event.actor, event.data["pid"]) == ("olga", run.pid)
            # The page shows that run, and run now now says why it cannot apply.
            _refresh(page)
            expect(page.locator('tbody[data-service="halacha"] [data-f="last"] a')).to_have_text(
                f"run {run.pk}")
            expect(run_now).to_be_disabled()
            expect(actions.locator('[data-f="run-now-why"]')).to_have_text(
                "the backlog is empty: nothing to run")
            page.screenshot(path=str(output_dir / f"run-now-{width}.png"), full_page=True)
            _clean(page, errors)
        finally:
            browser.close()
            _kill_leftover_runs()
            connections.close_all()


@pytest.mark.parametrize(("width", "height"), [(1400, 900), (390, 844)])
def test_stop_on_the_page__sigterm_stops_a_real_run_audited(
    live_server, runnable, allow_orm_beside_playwright, monkeypatch, output_dir, width, height
):
    from playwright.sync_api import expect, sync_playwright

    from drains import operator

    # 0.3 s an item, 100 items: the run would go on for 30 s unless stopped; its first
    # checkpoint (items_done ≥ 1: it is really working) comes after 10 items.
    monkeypatch.setenv("HALACHA_EXTRACTOR", "tests.support.extractors:SleepingExtractor")
    monkeypatch.setenv("TEST_EXTRACTOR_SLEEP", "0.3")
    runnable(100)
    with sync_playwright() as p:
        browser, page, errors = _open(p, live_server, width, height, "olga")
        try:
            actions = page.locator('tbody[data-service="halacha"] .actions')
            stop = actions.locator("form.stop-run button")
            expect(stop).to_be_disabled()
            expect(actions.locator('[data-f="stop-why"]')).to_have_text("no run to stop")
            operator.run_now(name="halacha", actor="olga")  # a real drain child on this host
            run = _poll("the drain child's run is going", lambda: DrainRun.objects.filter(
                status="running", items_done__gte=1).first())

            # Before: the refreshed row shows the run; Stop applies, run now says why not.
            _refresh(page)
            expect(stop).to_be_enabled()
            expect(actions.locator('[data-f="stop-why"]')).to_have_text("")
            expect(actions.locator("form.run-now button")).to_be_disabled()
            expect(actions.locator('[data-f="run-now-why"]')).to_contain_text("a run is going")

            stop.click()
            expect(actions.locator("form.stop-run .form-status")).to_contain_text(
                f"stop run {run.pk}: SIGTERM sent to pid {run.pid}")
            # After: the runner stopped on the signal, long before its 100 items were done.
            run = _poll("the run ends on SIGTERM", lambda: DrainRun.objects.filter(
                pk=run.pk, finished_at__isnull=False).first())
            assert (run.status, run.stop_reason) == ("stopped", "signal"), run.error
            assert run.items_done < 100
            event = DrainEvent.objects.get(kind="stop_run")
            assert (event.actor, event.run_id) == ("olga", run.pk)
            _refresh(page)
            expect(stop).to_be_disabled()
            expect(actions.locator('[data-f="stop-why"]')).to_have_text("no run to stop")
            expect(page.locator('tbody[data-service="halacha"] [data-f="last"]')).to_contain_text(
                f"run {run.pk} stopped")
            page.screenshot(path=str(output_dir / f"stopped-{width}.png"), full_page=True)
            _clean(page, errors)
        finally:
            browser.close()
            _kill_leftover_runs()
            connections.close_all()


@pytest.mark.parametrize(("width", "height"), [(1400, 900), (390, 844)])
def test_run_now_button_follows_the_15_s_refresh(
    live_server, runnable, allow_orm_beside_playwright, width, height
):
    """Disabled elsewhere (the command, another operator), the drain's run-now button turns
    disabled with the reason at the page's next 15 s refresh, and back when it is enabled."""
    from playwright.sync_api import expect, sync_playwright

    from drains.controls import set_drain_enabled

    runnable(1)
    with sync_playwright() as p:
        browser, page, errors = _open(p, live_server, width, height, "olga", clock=True)
        try:
            actions = page.locator('tbody[data-service="halacha"] .actions')
            run_now = actions.locator("form.run-now button")
            why = actions.locator('[data-f="run-now-why"]')
            expect(run_now).to_be_enabled()
            set_drain_enabled(name="halacha", enabled=False, actor="someone-else")
            page.clock.fast_forward(5_000)  # not yet the 15 s tick: the page still says enabled
            expect(run_now).to_be_enabled()
            # The page's own timer (setInterval, 15 s) refreshes it; nothing here calls refresh.
            page.clock.fast_forward(10_500)
            expect(run_now).to_be_disabled()
            expect(run_now).to_have_attribute("title", "the drain is disabled: enable it first")
            expect(why).to_have_text("the drain is disabled: enable it first")
            set_drain_enabled(name="halacha", enabled=True, actor="someone-else")
            page.clock.fast_forward(15_500)
            expect(run_now).to_be_enabled()
            expect(why).to_have_text("")
            assert run_now.get_attribute("title") == ""
            _clean(page, errors)
        finally:
            browser.close()
            connections.close_all()
