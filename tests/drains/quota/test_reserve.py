"""The reserves and the quota policy service (drains/quota/reserve.py)."""

from __future__ import annotations

import pytest

from drains.models import DrainEvent, EventKind
from drains.quota.controls import set_quota_policy
from drains.quota.models import QuotaPolicy
from drains.quota.reserve import (
    DEFAULT,
    QuotaPolicyError,
    Reserves,
    reserves_for,
)

pytestmark = pytest.mark.django_db


def test_reserves_default_to_the_settings(settings):
    settings.DRAINS_QUOTA_WEEKLY_RESERVE = 0.15
    settings.DRAINS_QUOTA_SESSION_RESERVE = 0.05
    settings.DRAINS_QUOTA_RESERVE_RELEASE_HOURS = 4
    assert reserves_for("acct") == Reserves(weekly=0.15, session=0.05, release_hours=4)
    QuotaPolicy.objects.create(quota_key="acct", weekly_reserve=0.2)
    assert reserves_for("acct") == Reserves(weekly=0.2, session=0.05, release_hours=4)


def test_set_quota_policy__writes_and_audits():
    policy = set_quota_policy(quota_key="acct", actor="ops", weekly_reserve=0.2,
                              reserve_release_hours=0, autopilot="on")
    assert (policy.weekly_reserve, policy.reserve_release_hours, policy.autopilot) == (0.2, 0, True)
    assert policy.session_reserve is None and policy.updated_by == "ops"
    assert reserves_for("acct").release_hours == 0
    event = DrainEvent.objects.get(kind=EventKind.QUOTA_POLICY)
    assert event.actor == "ops" and event.data["quota_key"] == "acct"
    assert event.data["before"]["weekly_reserve"] is None
    assert event.data["after"]["weekly_reserve"] == 0.2
    assert "weekly_reserve 20%" in event.message and "autopilot on" in event.message
    # Back to the default.
    set_quota_policy(quota_key="acct", actor="ops", weekly_reserve=DEFAULT)
    assert QuotaPolicy.objects.get(quota_key="acct").weekly_reserve is None


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("weekly_reserve", 0.95, "outside 0..0.9"),
        ("weekly_reserve", -0.1, "outside 0..0.9"),
        ("session_reserve", "lots", "not a number"),
        ("session_reserve", float("nan"), "outside 0..0.9"),
        ("reserve_release_hours", -1, "not a number of hours"),
        ("reserve_release_hours", 500, "not a number of hours"),
        ("autopilot", "maybe", "not on or off"),
        ("weekly_reserve", True, "not a number"),
    ],
)
def test_bad_values__one_line_nothing_changed(field, value, fragment):
    set_quota_policy(quota_key="acct", actor="ops", weekly_reserve=0.1)
    before = DrainEvent.objects.count()
    with pytest.raises(QuotaPolicyError) as caught:
        # A good value beside the bad one is not written either.
        good = {"autopilot": True} if field != "autopilot" else {"session_reserve": 0.05}
        set_quota_policy(quota_key="acct", actor="ops", **good, **{field: value})
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    policy = QuotaPolicy.objects.get(quota_key="acct")
    assert policy.session_reserve is None and policy.weekly_reserve == 0.1
    assert policy.autopilot is False
    assert DrainEvent.objects.count() == before


def test_nothing_to_change_and_empty_key_are_errors():
    with pytest.raises(QuotaPolicyError, match="nothing to change"):
        set_quota_policy(quota_key="acct", actor="ops")
    with pytest.raises(QuotaPolicyError, match="quota key is empty"):
        set_quota_policy(quota_key=" ", actor="ops", weekly_reserve=0.1)
    assert not QuotaPolicy.objects.exists()
