"""What the page, the API and the CLI say matches what will happen: a burst on a disabled drain
says nothing will run, "disabled by" names who disabled the drain, the projection waits out a
backoff, and a refused page names the permission it needs."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from drains.bursts import MSG_DISABLED_BURST
from drains.controls import set_drain_enabled
from drains.models import DrainControl, DrainEvent

URL = "/api/operations/drains/halacha/burst"
SNAPSHOT = "/api/operations/"
NOTICE = "burst on, but the drain is disabled: nothing will run"


def _by_name(snapshot):
    return {s["name"]: s for s in snapshot["services"]}


def test_burst_on_a_disabled_drain__200_and_says_nothing_will_run(api, frozen):
    set_drain_enabled(name="halacha", enabled=False, actor="olga", reason="maintenance")
    response = api.post(URL, {"on": True}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["burst_active"] is True and body["enabled"] is False
    assert body["notice"] == NOTICE == MSG_DISABLED_BURST
    assert body["state"] == "disabled"
    event = DrainEvent.objects.filter(kind="burst_on").get()
    assert event.message == f"burst on until Sat 2026-12-05 18:00 IST ({NOTICE})"
    # An enabled drain: no notice.
    set_drain_enabled(name="halacha", enabled=True, actor="olga")
    assert api.post(URL, {"on": True}, format="json").json()["notice"] == ""
    assert api.post(URL, {"on": False}, format="json").json()["notice"] == ""


def test_burst_on_a_disabled_drain__the_page_and_the_cli_say_so(operator, frozen):
    set_drain_enabled(name="halacha", enabled=False, actor="olga")
    out = StringIO()
    call_command("burst", "halacha", "on", stdout=out)
    assert out.getvalue().strip() == (
        f"halacha: burst on until Sat 2026-12-05 18:00 IST ({NOTICE})")
    client = Client()
    client.force_login(operator)
    html = client.get("/operations").content.decode()
    row = html.split('data-service="halacha"')[1].split("</tbody>")[0]
    assert f'<span class="burst-notice">{NOTICE}</span>' in row
    metadata = html.split('data-service="metadata"')[1].split("</tbody>")[0]
    assert "burst-notice" not in metadata


def test_disabled_by_names_who_disabled_not_who_toggled_a_burst_since(api, token, frozen):
    set_drain_enabled(name="halacha", enabled=False, actor="olga", reason="maintenance")
    bot = APIClient()
    bot.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert bot.post(URL, {"on": True}, format="json").status_code == 200
    assert DrainControl.objects.get(name="halacha").updated_by == "cronbot"
    halacha = _by_name(api.get(SNAPSHOT).json())["halacha"]
    assert halacha["reason"] == "disabled by olga: no run starts until it is enabled again"
    # Disabled again later by someone else: the newest one is named.
    set_drain_enabled(name="halacha", enabled=True, actor="olga")
    set_drain_enabled(name="halacha", enabled=False, actor="vera")
    halacha = _by_name(api.get(SNAPSHOT).json())["halacha"]
    assert halacha["reason"].startswith("disabled by vera:")


def test_projection_waits_out_the_backoff(api, frozen, decisions, make_run):
    decisions(pending=100)
    now = timezone.now()
    make_run(started_at=now - timedelta(hours=1), finished_at=now, items_done=50)
    DrainControl.objects.create(name="halacha", backoff_until=now + timedelta(hours=3),
                                backoff_reason="usage limit", backoff_observed_at=now)
    halacha = _by_name(api.get(SNAPSHOT).json())["halacha"]
    assert halacha["reason"] == "backing off until Wed 13:00 IST: usage limit"
    # 100 pending at 50/h is 2 h of work, which starts when the backoff ends (13:00), not now.
    assert halacha["projection"]["finish_at"] == "2026-12-02T15:00:00+02:00"
    assert halacha["projection"]["text"].startswith("done by Wed 15:00 IST")


def test_the_403_page_names_the_missing_permission(staff_without_perm):
    client = Client()
    client.force_login(staff_without_perm)
    response = client.get("/operations")
    assert response.status_code == 403
    html = response.content.decode()
    assert "sam lacks the permission drains.view_draincontrol" in html
    assert "An administrator can grant it in the admin" in html
    chart = client.get("/operations/burndown/halacha.svg")
    assert chart.status_code == 403
    assert "drains.view_draincontrol" in chart.content.decode()
