"""The ceiling (drains/quota/ceiling.py): a pure rule over plain readings and a given ``now``.
Expected ceilings are worked out by hand from the reserves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drains.quota.ceiling import (
    DEFAULT_CALL_STEP,
    MAX_CALL_STEP,
    call_step,
    first_over_ceiling,
    weekly_ceiling_rises_past,
    weekly_reserve_now,
    window_ceiling,
)
from drains.quota.reserve import Reserves
from drains.quota.signals import WindowReading

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
RESERVES = Reserves(weekly=0.10, session=0.05, release_hours=6)


def test_session_window_uses_the_session_reserve_never_released():
    for resets_at in (NOW + timedelta(minutes=5), NOW + timedelta(hours=4), None):
        assert window_ceiling(window="five_hour", reserves=RESERVES, resets_at=resets_at,
                              now=NOW) == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("hours_left", "ceiling"),
    [(48, 0.90), (6.0001, 0.90), (6, 0.90), (3, 0.95), (1.5, 0.975), (0, 1.0), (-1, 1.0)],
)
def test_weekly_reserve_released_linearly_over_the_last_hours(hours_left, ceiling):
    resets_at = NOW + timedelta(hours=hours_left)
    for window in ("seven_day", "seven_day_opus"):
        assert window_ceiling(window=window, reserves=RESERVES, resets_at=resets_at,
                              now=NOW) == pytest.approx(ceiling)


def test_release_hours_zero_never_releases():
    never = Reserves(weekly=0.2, session=0.0, release_hours=0)
    assert weekly_reserve_now(reserves=never, resets_at=NOW + timedelta(minutes=1), now=NOW) == 0.2
    # No reset known: the full reserve, too.
    assert weekly_reserve_now(reserves=RESERVES, resets_at=None, now=NOW) == 0.10


def reading(window, utilization, hours):
    return WindowReading(window, utilization, NOW + timedelta(hours=hours), "allowed")


def test_first_over_ceiling__below_none_at_breach_kind_and_latest_reset():
    below = [reading("five_hour", 0.94, 2), reading("seven_day", 0.89, 50)]
    assert first_over_ceiling(readings=below, using_overage=False, reserves=RESERVES,
                              now=NOW) is None
    at = [reading("five_hour", 0.95, 2), reading("seven_day", 0.90, 50)]
    breach = first_over_ceiling(readings=at, using_overage=False, reserves=RESERVES, now=NOW)
    assert breach.window == "seven_day" and breach.kind == "weekly"  # resets last
    assert breach.resets_at == NOW + timedelta(hours=50)
    assert "90%" in breach.reason and "reserve 10%" in breach.reason
    session = first_over_ceiling(readings=at[:1], using_overage=False, reserves=RESERVES, now=NOW)
    assert session.kind == "session" and session.ceiling == pytest.approx(0.95)
    model = first_over_ceiling(readings=[reading("seven_day_opus", 1, 30)],
                               using_overage=False, reserves=RESERVES, now=NOW)
    assert (model.kind, model.model) == ("weekly_model", "opus")


def test_a_reading_whose_reset_passed_says_nothing():
    stale = [reading("five_hour", 1.0, -0.1)]
    assert first_over_ceiling(readings=stale, using_overage=False, reserves=RESERVES,
                              now=NOW) is None


def test_overage_is_a_ceiling_whatever_the_windows_say():
    low = [reading("five_hour", 0.1, 2), reading("seven_day", 0.2, 50)]
    breach = first_over_ceiling(readings=low, using_overage=True, reserves=RESERVES, now=NOW)
    assert breach.kind == "extra_usage" and breach.window == "overage"
    assert breach.resets_at == NOW + timedelta(hours=50)
    assert "isUsingOverage" in breach.reason


def test_reserve_released_near_reset_lets_the_drain_go_on():
    # 95 % used, 2 hours before the weekly reset: reserve 10 % * 2/6 = 3.3 %, ceiling 96.7 %.
    near = [reading("seven_day", 0.95, 2)]
    assert first_over_ceiling(readings=near, using_overage=False, reserves=RESERVES,
                              now=NOW) is None
    # The same 95 % a day before: the reserve holds.
    assert first_over_ceiling(readings=[reading("seven_day", 0.95, 24)], using_overage=False,
                              reserves=RESERVES, now=NOW).kind == "weekly"


def test_call_step__measured_bounded_and_the_default_before_it_is_measured():
    assert call_step(None, 0) == DEFAULT_CALL_STEP == 0.01
    assert call_step(0.03, 2) == DEFAULT_CALL_STEP  # too few pairs to trust
    assert call_step(0.03, 3) == pytest.approx(0.03)
    assert call_step(0.4, 50) == MAX_CALL_STEP == 0.05  # a weird measurement cannot freeze them
    assert call_step(-0.01, 50) == 0.0
    assert call_step(float("nan"), 50) == DEFAULT_CALL_STEP


def test_one_calls_headroom__a_reading_within_a_step_of_the_ceiling_stops_the_next_call():
    session = Reserves(weekly=0.10, session=0.0, release_hours=6)
    steps = {"five_hour": 0.02, "seven_day": 0.002}
    # 96 % + 2 % is below 100 %: the call may run; 98 % + 2 % would run it into its ceiling.
    below = [reading("five_hour", 0.96, 2), reading("seven_day", 0.50, 50)]
    assert first_over_ceiling(readings=below, using_overage=False, reserves=session, now=NOW,
                              steps=steps) is None
    near = [reading("five_hour", 0.98, 2), reading("seven_day", 0.50, 50)]
    breach = first_over_ceiling(readings=near, using_overage=False, reserves=session, now=NOW,
                                steps=steps)
    assert breach.kind == "session" and breach.headroom == pytest.approx(0.02)
    assert breach.reason == "five_hour at 98% is within one call (2.0%) of its ceiling 100%"
    # Without steps (the command, the page): only a window at its ceiling.
    assert first_over_ceiling(readings=near, using_overage=False, reserves=session,
                              now=NOW) is None
    # With calls in flight, each counts: 3 calls of 2 % from 96 % reach 100 %.
    three = first_over_ceiling(readings=below, using_overage=False, reserves=session, now=NOW,
                               steps=steps, calls=3)
    assert three.headroom == pytest.approx(0.06) and "within 3 calls" in three.reason
    # A window with no step known takes the default (1 %).
    week = [reading("seven_day", 0.895, 50)]
    assert first_over_ceiling(readings=week, using_overage=False, reserves=session, now=NOW,
                              steps={}).kind == "weekly"
    # At or over the ceiling, the reason says so as before.
    full = [reading("five_hour", 1.0, 2)]
    assert "is at or over its ceiling 100%" in first_over_ceiling(
        readings=full, using_overage=False, reserves=session, now=NOW, steps=steps).reason


def test_the_release_lifts_the_ceiling_past_the_reading_and_its_headroom():
    # The runner asks when the ceiling passes 89 % + 1 %: 6 h x 10 % / 10 % = 6 h before.
    reset = NOW + timedelta(hours=30)
    rises = weekly_ceiling_rises_past(window="seven_day", utilization=0.89 + 0.01,
                                      reserves=RESERVES, resets_at=reset, now=NOW)
    assert abs(rises - (reset - timedelta(hours=6))) < timedelta(seconds=1)
