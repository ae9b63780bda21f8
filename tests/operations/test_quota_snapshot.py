"""The snapshot's ``quotas``: known readings in (seeded QuotaWindow / QuotaPolicy rows), the exact
windows, reserves, ceilings in force, staleness and words out; a key whose calls report no windows
says so in one line; the page renders the same bars; the query count does not grow with windows."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from drains.models import DrainControl
from drains.quota.models import QuotaPolicy, QuotaSample
from drains.quota.wording import NO_QUOTA, NO_SIGNAL
from tests.operations.conftest import JERUSALEM
from tests.support.quota_rows import make_window

URL = "/api/operations/"
CHAIR = "anthropic:chair"
FRI_1757 = datetime(2026, 12, 4, 17, 57, tzinfo=JERUSALEM)  # the account's weekly reset
WED_1230 = datetime(2026, 12, 2, 12, 30, tzinfo=JERUSALEM)  # its 5-hour reset


@pytest.fixture
def chair(db, frozen):
    """The chair's subscription as the calls last reported it, drawn on by the halacha drain; the
    metadata drain draws on an API key, whose calls report no window."""
    DrainControl.objects.create(name="halacha", quota_key=CHAIR)
    DrainControl.objects.create(name="metadata", quota_key="anthropic:api-key")
    make_window(CHAIR, "seven_day", 0.30, resets_at=FRI_1757)
    make_window(CHAIR, "five_hour", 0.42, resets_at=WED_1230, seen_ago=timedelta(seconds=20))
    make_window(CHAIR, "seven_day_opus", 0.05, resets_at=FRI_1757, seen_ago=timedelta(hours=3))
    return timezone.now()


def quotas(api) -> dict[str, dict]:
    response = api.get(URL)
    assert response.status_code == 200
    return {q["key"]: q for q in response.json()["quotas"]}


def test_quotas__each_window_read_with_reserve_ceiling_and_words(api, chair):
    q = quotas(api)[CHAIR]
    assert q["signal_seen"] is True and q["using_overage"] is False
    assert q["drains"] == ["halacha"]
    # Session first, then the week, then the model weeks.
    assert [w["window"] for w in q["windows"]] == ["five_hour", "seven_day", "seven_day_opus"]
    week = q["windows"][1]
    assert week == {
        "window": "seven_day", "label": "Week", "utilization": 0.3,
        "resets_at": "2026-12-04T17:57:00+02:00", "status": "allowed",
        "observed_at": "2026-12-02T09:58:00+02:00", "stale": False,
        "ceiling": 0.9, "reserve": 0.1, "releasing": False,
        "text": "Week 30 % used · resets Fri 17:57 IST · seen 2 min ago · reserve 10 % (ceiling 90 %)",
    }
    # The session reserve defaults to 0: no reserve said, the ceiling is the window itself.
    assert q["windows"][0]["text"] == "5 hours 42 % used · resets Wed 12:30 IST · seen just now"
    assert q["windows"][0]["ceiling"] == 1.0
    opus = q["windows"][2]
    assert opus["stale"] is True  # older than DRAINS_QUOTA_STALE_MINUTES (60)
    assert opus["text"] == ("Week (Opus) 5 % used · resets Fri 17:57 IST · seen 3 h ago · "
                            "reserve 10 % (ceiling 90 %) · stale")
    assert q["weekly_reserve"] == 0.1 and q["session_reserve"] == 0.0
    assert q["reserve_release_hours"] == 6.0
    assert q["ceilings"] == {"five_hour": 1.0, "seven_day": 0.9, "seven_day_opus": 0.9}


def test_quotas__a_key_whose_calls_report_no_window_says_so_in_one_line(api, chair):
    q = quotas(api)["anthropic:api-key"]
    assert q["signal_seen"] is False
    assert q["windows"] == [] and q["ceilings"] == {} and q["forecast"] is None
    assert q["text"] == NO_SIGNAL
    assert q["drains"] == ["metadata"]


def test_quotas__none_known_is_an_empty_list_and_the_page_says_no_signal(api, operator, frozen):
    assert api.get(URL).json()["quotas"] == []
    client = Client()
    client.force_login(operator)
    html = client.get("/operations").content.decode()
    assert f'<p class="none quota-none">{NO_QUOTA}</p>' in html


def test_quotas__the_ceiling_in_force_now_follows_the_policy_and_the_release(api, frozen):
    now = timezone.now()
    QuotaPolicy.objects.create(quota_key=CHAIR, weekly_reserve=0.2, session_reserve=0.15,
                               reserve_release_hours=6)
    # Three of the six release hours left before this week's reset: half the reserve is released.
    make_window(CHAIR, "seven_day", 0.85, resets_at=now + timedelta(hours=3))
    make_window(CHAIR, "five_hour", 0.86, resets_at=now + timedelta(hours=1))
    q = quotas(api)[CHAIR]
    week, session = q["windows"][1], q["windows"][0]
    assert week["ceiling"] == 0.9 and week["reserve"] == 0.1 and week["releasing"] is True
    assert week["text"] == ("Week 85 % used · resets Wed 13:00 IST · seen 2 min ago · "
                            "reserve 10 % (ceiling 90 %, being released)")
    assert session["releasing"] is False
    assert session["ceiling"] == 0.85  # the session reserve is never released
    assert session["text"] == ("5 hours 86 % used · resets Wed 11:00 IST · seen 2 min ago · "
                               "reserve 15 % (ceiling 85 %) · at the ceiling: no drain call starts")
    assert "at the ceiling" not in week["text"]


def test_quotas__a_window_past_its_reset_is_stale_and_says_why(api, frozen):
    now = timezone.now()
    make_window(CHAIR, "five_hour", 1, resets_at=now - timedelta(minutes=5), status="rejected",
                seen_ago=timedelta(minutes=10))
    w = quotas(api)[CHAIR]["windows"][0]
    assert w["stale"] is True
    assert w["text"].endswith("· refused · stale (reset since)")


def test_quotas__overage_in_use_leads_the_line(api, frozen):
    make_window(CHAIR, "seven_day", 0.5, resets_at=FRI_1757, using_overage=True)
    q = quotas(api)[CHAIR]
    assert q["using_overage"] is True
    assert q["text"].startswith("extra usage is being spent: no drain call starts")


def test_quotas__the_page_draws_each_window_as_a_labelled_bar_with_the_reserve(operator, chair):
    client = Client()
    client.force_login(operator)
    html = client.get("/operations").content.decode()
    section = html.split('id="quota-section"')[1].split("</section>")[0]
    week = section.split('data-window="seven_day"')[1].split("</li>")[0]
    assert "Week 30 % used · resets Fri 17:57 IST · seen 2 min ago · reserve 10 % (ceiling 90 %)" in week
    assert '<rect class="used" x="0" y="1" width="30" height="8">' in week
    assert '<rect class="reserve" x="90" y="0" width="10" height="10">' in week
    assert '<rect class="ceiling" x="90"' in week
    assert 'class="quota-window stale"' in section.split('data-window="seven_day_opus"')[0]
    assert NO_SIGNAL in section  # the API-key account's one line
    assert "/static/operations/quota.js" in html and "/static/operations/quota.css" in html


# The autopilot's rule (drains/quota/autopilot.py) pinned: room / 1 %/h x 1.25 + 15 min.
AUTOPILOT = {"DRAINS_AUTOPILOT_SAFETY_MARGIN": 1.25, "DRAINS_QUOTA_DEFAULT_SPEND_RATE": 0.01,
             "DRAINS_SUPERVISOR_INTERVAL_MINUTES": 15, "DRAINS_QUOTA_WEEK_HOURS": 168}


@pytest.mark.parametrize(("autopilot", "line"), [
    (True, "at this pace the week ends at 90 %: 10 % would lapse; "
           "an autopilot burst would start Wed 15:42 IST"),
    (False, "at this pace the week ends at 90 %: 10 % would lapse; "
            "the autopilot is off (on, it would start a burst Wed 15:42 IST)"),
])
def test_quotas__the_forecast_line_and_the_autopilot(api, settings, frozen, autopilot, line):
    for name, value in AUTOPILOT.items():
        setattr(settings, name, value)
    DrainControl.objects.create(name="halacha", quota_key=CHAIR)
    QuotaPolicy.objects.create(quota_key=CHAIR, autopilot=autopilot)
    # 60 % used 112 h into the week: on that pace 90 % at Fri 17:57 IST (the ceiling then is 100 %
    # with the reserve released); the room of 40 % takes 40 h x 1.25 + 15 min = 50 h 15 min.
    make_window(CHAIR, "seven_day", 0.60, resets_at=FRI_1757)
    q = quotas(api)[CHAIR]
    assert q["forecast"] == {"week_end_utilization": 0.8996, "lapse": 0.1004,
                             "resets_at": "2026-12-04T17:57:00+02:00"}
    assert q["autopilot"]["enabled"] is autopilot
    assert q["autopilot"]["state"] == ("waiting" if autopilot else "off")
    assert q["autopilot"]["planned_start"].startswith("2026-12-02T15:42:00")
    assert q["text"] == line


def test_quotas__the_query_count_does_not_grow_with_windows_or_samples(api, chair):
    with CaptureQueriesContext(connection) as few:
        api.get(URL)
    now = timezone.now()
    for model in ("sonnet", "haiku", "m1", "m2", "m3", "m4"):
        make_window(CHAIR, f"seven_day_{model}", 0.1, resets_at=now + timedelta(days=2))
    QuotaSample.objects.bulk_create(  # the spend rate's history: read by one statement
        QuotaSample(quota_key=CHAIR, window="seven_day", utilization=i / 1000, resets_at=FRI_1757,
                    observed_at=now - timedelta(minutes=300 - i), drain="halacha")
        for i in range(300))
    with CaptureQueriesContext(connection) as many:
        data = api.get(URL).json()
    assert len(many.captured_queries) == len(few.captured_queries)
    assert len({q["key"]: q for q in data["quotas"]}[CHAIR]["windows"]) == 9


@pytest.mark.django_db(transaction=True)
def test_quotas__the_fast_rendering_equals_the_documented_serializers():
    from operations import selectors
    from operations.serializers import SnapshotSerializer, as_json

    now = timezone.now()
    DrainControl.objects.create(name="halacha", quota_key=CHAIR)
    DrainControl.objects.create(name="metadata", quota_key="anthropic:api-key")
    QuotaPolicy.objects.create(quota_key=CHAIR, autopilot=True)
    make_window(CHAIR, "seven_day", 0.3, resets_at=now + timedelta(days=2))
    make_window(CHAIR, "five_hour", 0.4, resets_at=None)
    snapshot = selectors.snapshot()
    fast = as_json(snapshot)
    assert fast == SnapshotSerializer(snapshot).data
    assert len(fast["quotas"]) == 2 and fast["quotas"][1]["windows"]
    assert fast["quotas"][1]["autopilot"]["enabled"] is True
