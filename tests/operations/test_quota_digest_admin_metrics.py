"""The quota beyond the page: /metrics' gauges with exact values, the digest's lines (worded as
the page words them) and the admin (readings read-only; the policy changed only through the
quota policy service, with its audit event and its one-line refusal)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from drains.models import DrainControl, DrainEvent, EventKind
from drains.quota.models import QuotaPolicy, QuotaWindow
from drains.quota.wording import NO_SIGNAL
from operations.digest import build_digest, render_digest
from operations.metrics import render_metrics
from tests.operations.conftest import JERUSALEM
from tests.operations.test_metrics import samples, value
from tests.support.quota_rows import make_window

CHAIR = "anthropic:chair"
FRI_1757 = datetime(2026, 12, 4, 17, 57, tzinfo=JERUSALEM)
WEEK_LINE = "Week 60 % used · resets Fri 17:57 IST · seen 2 min ago · reserve 10 % (ceiling 90 %)"


@pytest.fixture
def chair(db, frozen, settings):
    settings.DRAINS_QUOTA_DEFAULT_SPEND_RATE = 0.01
    settings.DRAINS_AUTOPILOT_SAFETY_MARGIN = 1.25
    settings.DRAINS_SUPERVISOR_INTERVAL_MINUTES = 15
    DrainControl.objects.create(name="halacha", quota_key=CHAIR)
    DrainControl.objects.create(name="metadata", quota_key="anthropic:api-key")
    make_window(CHAIR, "seven_day", 0.60, resets_at=FRI_1757)
    make_window(CHAIR, "five_hour", 0.25, resets_at=None, using_overage=False)
    return timezone.now()


def test_metrics__quota_gauges_have_the_readings(chair):
    s = samples(render_metrics().decode())
    assert value(s, "drains_quota_utilization", quota=CHAIR, window="seven_day") == 0.6
    assert value(s, "drains_quota_utilization", quota=CHAIR, window="five_hour") == 0.25
    assert value(s, "drains_quota_reset_timestamp_seconds", quota=CHAIR,
                 window="seven_day") == FRI_1757.timestamp()
    assert value(s, "drains_quota_reset_timestamp_seconds", quota=CHAIR, window="five_hour") == 0
    assert value(s, "drains_quota_ceiling", quota=CHAIR, window="seven_day") == 0.9
    assert value(s, "drains_quota_observed_timestamp_seconds", quota=CHAIR, window="seven_day") == (
        chair - timedelta(minutes=2)).timestamp()
    assert value(s, "drains_quota_stale", quota=CHAIR, window="seven_day") == 0
    assert value(s, "drains_quota_signal_seen", quota=CHAIR) == 1
    assert value(s, "drains_quota_signal_seen", quota="anthropic:api-key") == 0
    assert value(s, "drains_quota_forecast_week_end_utilization", quota=CHAIR) == 0.8996
    assert value(s, "drains_quota_forecast_lapse_ratio", quota=CHAIR) == 0.1004
    assert value(s, "drains_quota_autopilot_enabled", quota=CHAIR) == 0
    # The API-key account has no window and no forecast: nothing but "no signal".
    assert not [k for k in s if dict(k[1]).get("quota") == "anthropic:api-key"
                and k[0] != "drains_quota_signal_seen" and k[0] != "drains_quota_using_overage"
                and k[0] != "drains_quota_autopilot_enabled"]


def test_digest__says_the_windows_and_the_forecast_as_the_page_does(chair):
    _, body = render_digest(build_digest())
    block = body.split(f"Quota {CHAIR}\n")[1].split("\n\n")[0].splitlines()
    assert block[-3:] == [  # after the week's usage lines
        "  5 hours 25 % used · reset not said · seen 2 min ago",
        f"  {WEEK_LINE}",
        "  at this pace the week ends at 90 %: 10 % would lapse; "
        "the autopilot is off (on, it would start a burst Wed 15:42 IST)",
    ]
    assert f"Quota anthropic:api-key\n  {NO_SIGNAL}\n" in body


def _admin(operator_user):
    client = Client()
    client.force_login(operator_user)
    return client


@pytest.fixture
def superuser(db, django_user_model):
    return django_user_model.objects.create_superuser("root", password="pw-root-long-enough")


def test_admin__windows_are_read_only_and_read_as_on_the_page(superuser, chair):
    client = _admin(superuser)
    listing = client.get("/admin/drains/quotawindow/")
    assert listing.status_code == 200
    assert WEEK_LINE in listing.content.decode()
    row = QuotaWindow.objects.get(quota_key=CHAIR, window="seven_day")
    assert client.get("/admin/drains/quotawindow/add/").status_code == 403
    change = client.post(f"/admin/drains/quotawindow/{row.pk}/change/", {"utilization": "0.1"})
    assert change.status_code in (200, 403)
    row.refresh_from_db()
    assert row.utilization == 0.6  # nothing written through the admin
    assert client.post(f"/admin/drains/quotawindow/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert QuotaWindow.objects.filter(pk=row.pk).exists()


def _policy_form(**fields):
    data = {"weekly_reserve": "", "session_reserve": "", "reserve_release_hours": ""}
    data.update(fields)
    return data


def test_admin__a_policy_change_goes_through_the_service_with_its_event(superuser, chair):
    client = _admin(superuser)
    response = client.post("/admin/drains/quotapolicy/add/",
                           _policy_form(quota_key=CHAIR, weekly_reserve="0.2", autopilot="on"),
                           follow=True)
    assert response.status_code == 200
    policy = QuotaPolicy.objects.get(quota_key=CHAIR)
    assert policy.weekly_reserve == 0.2 and policy.autopilot is True
    assert policy.updated_by == "root"
    event = DrainEvent.objects.get(kind=EventKind.QUOTA_POLICY)
    assert event.actor == "root" and CHAIR in event.message
    listing = client.get("/admin/drains/quotapolicy/").content.decode()
    assert "at this pace the week ends at 90 %" in listing  # the line the page shows


def test_admin__a_bad_reserve_is_the_services_one_line_and_nothing_changes(superuser, chair):
    QuotaPolicy.objects.create(quota_key=CHAIR, weekly_reserve=0.1)
    policy = QuotaPolicy.objects.get(quota_key=CHAIR)
    client = _admin(superuser)
    response = client.post(f"/admin/drains/quotapolicy/{policy.pk}/change/",
                           _policy_form(weekly_reserve="0.95"), follow=True)
    html = response.content.decode()
    assert "weekly reserve 0.95 is outside 0..0.9: give a fraction" in html.lower()
    assert "was changed successfully" not in html
    policy.refresh_from_db()
    assert policy.weekly_reserve == 0.1
    assert not DrainEvent.objects.filter(kind=EventKind.QUOTA_POLICY).exists()
