"""The autopilot (drains/quota/autopilot.py) and the spend rate (drains/quota/rate.py): the pure
rule with the worked example of docs/quota.md, the rate measured from samples, the forecast, the
status, and the acting function against the real PostgreSQL (bursts through the burst service)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from drains.bursts import DEFAULT_DEADLINE, get_drain_burst, set_drain_burst
from drains.models import DrainControl, DrainEvent, EventKind
from drains.quota import autopilot
from drains.quota.autopilot import AutopilotState, plan_start
from drains.quota.controls import set_quota_policy
from drains.quota.models import QuotaPolicy
from drains.quota.rate import bounded_rate, measure_spend_rate, spend_rate
from drains.quota.signals import QuotaSignal, WindowReading
from drains.quota.store import record_signal
from tests.factories import make_decisions, make_run

KEY = "cli:acct"
# Saturday 5 December 2026, 18:00 in Israel (+02:00): the worked example's weekly reset.
R = datetime(2026, 12, 5, 16, 0, tzinfo=UTC)
QUARTER = timedelta(minutes=15)


# --- the pure rule (no database) ----------------------------------------------------------


def test_worked_example__release_on__starts_37_h_45_min_before_the_reset():
    # u 55 %, reserve 10 % released over the last 6 h (the week ends at a ceiling of 100 %),
    # s = 1.5 %/h: room 45 % takes 30 h, x 1.25 = 37.5 h, + 15 min = 37 h 45 min.
    common = dict(utilization=0.55, resets_at=R, ceiling_now=0.90, ceiling_at_reset=1.0,
                  rate_per_hour=0.015, margin=1.25, interval=QUARTER)
    start = R - timedelta(hours=37, minutes=45)
    early = plan_start(now=start - timedelta(minutes=1), **common)
    assert not early.start and early.planned_start == start
    assert early.room == pytest.approx(0.45) and early.needed == timedelta(hours=37, minutes=45)
    due = plan_start(now=start, **common)
    assert due.start and due.planned_start == start


def test_worked_example__release_off__starts_later_by_the_reserve():
    # room 35 % at 1.5 %/h: 23 h 20 min, x 1.25 = 29 h 10 min, + 15 min = 29 h 25 min.
    plan = plan_start(utilization=0.55, resets_at=R, ceiling_now=0.90, ceiling_at_reset=0.90,
                      rate_per_hour=0.015, margin=1.25, interval=QUARTER, now=R - timedelta(days=2))
    assert plan.planned_start == R - timedelta(hours=29, minutes=25)
    assert not plan.start


def test_no_room__never_starts():
    plan = plan_start(utilization=0.95, resets_at=R, ceiling_now=0.90, ceiling_at_reset=0.90,
                      rate_per_hour=0.015, margin=1.25, interval=QUARTER, now=R - QUARTER)
    assert not plan.start and plan.planned_start is None and plan.room < 0


def test_due_but_at_the_ceiling_in_force_now__waits_for_the_release():
    plan = plan_start(utilization=0.92, resets_at=R, ceiling_now=0.90, ceiling_at_reset=1.0,
                      rate_per_hour=0.015, margin=1.25, interval=QUARTER, now=R - timedelta(hours=5))
    assert not plan.start and "ceiling in force now" in plan.reason


def test_rate__measured__bounded_by_the_5_hour_window__default_before_anything():
    assert bounded_rate(weekly_gain=0, weekly_seconds=0, weekly_pairs=0, session_gain=0,
                        session_ceiling=1, session_hours=5, default=0.01).source == "default"
    # 2 % of the week in 0.4 h is 5 %/h; the 5-hour window (10 % of the week per full window,
    # 5 h long) lets through only 2 %/h.
    rate = bounded_rate(weekly_gain=0.02, weekly_seconds=1440, weekly_pairs=4, session_gain=0.2,
                        session_ceiling=1.0, session_hours=5, default=0.01)
    assert rate.measured == pytest.approx(0.05) and rate.per_hour == pytest.approx(0.02)
    assert rate.source == "session bound"
    # A session reserve lowers the bound in proportion.
    reserved = bounded_rate(weekly_gain=0.02, weekly_seconds=1440, weekly_pairs=4,
                            session_gain=0.2, session_ceiling=0.5, session_hours=5, default=0.01)
    assert reserved.per_hour == pytest.approx(0.01)


# --- reading from the database --------------------------------------------------------------


def reading(week: float, five: float, *, week_reset=R, five_reset=None) -> QuotaSignal:
    return QuotaSignal(windows=(
        WindowReading("five_hour", five, five_reset or week_reset - timedelta(days=1), "allowed"),
        WindowReading("seven_day", week, week_reset, "allowed"),
    ), source="api")


def record(at: datetime, week: float, five: float, run=None, **kwargs) -> None:
    record_signal(quota_key=KEY, drain="halacha", run_id=run.pk if run else None,
                  signal=reading(week, five, **kwargs), now=at)


@pytest.mark.django_db
def test_spend_rate__from_the_runs_samples_left_out_waits_resets_and_other_keys(settings):
    settings.DRAINS_QUOTA_RATE_MAX_GAP_SECONDS = 600
    t0 = R - timedelta(days=2)
    run = make_run(started_at=t0)
    for i in range(5):  # 4 pairs, 6 min apart: +0.5 % of the week, +5 % of the session each
        record(t0 + timedelta(minutes=6 * i), 0.30 + 0.005 * i, 0.05 * i, run)
    # A wait of an hour (a 5-hour reset) with the session drop: left out.
    record(t0 + timedelta(minutes=84), 0.33, 0.0, run)
    # Samples without a run (the owner's calls seen by a manual extract) and another key: out.
    record(t0 + timedelta(minutes=90), 0.50, 0.5)
    other = make_run(started_at=t0)
    record_signal(quota_key="other", drain="halacha", run_id=other.pk, now=t0,
                  signal=reading(0.1, 0.1))
    record_signal(quota_key="other", drain="halacha", run_id=other.pk,
                  now=t0 + timedelta(minutes=1), signal=reading(0.9, 0.2))
    rate = measure_spend_rate(quota_key=KEY, now=R - timedelta(days=1))
    assert rate.work_hours == pytest.approx(0.4)
    assert rate.measured == pytest.approx(0.02 / 0.4)  # 5 %/h
    # 5 % of the session per 0.5 % of the week: a full 5-hour window is 10 % of the week.
    assert rate.session_bound == pytest.approx(0.1 / 5)
    assert spend_rate(quota_key=KEY, now=R - timedelta(days=1)) == pytest.approx(0.02)


@pytest.mark.django_db
def test_spend_rate__the_configuration_in_use_counts_alone_once_it_measured_enough(settings):
    """A model just chosen (its evaluation measured it) is planned with its own spend."""
    settings.DRAINS_QUOTA_RATE_MAX_GAP_SECONDS = 600
    t0 = R - timedelta(days=2)
    old = make_run(started_at=t0, extractor="claude-cli:opus")
    for i in range(5):  # the old model: +1 % of the week each 6 minutes, 10 %/h
        record(t0 + timedelta(minutes=6 * i), 0.30 + 0.01 * i, 0.01 * i, old)
    new = make_run(started_at=t0 + timedelta(hours=1), extractor="claude-cli:haiku:low")
    now = R - timedelta(days=1)

    def rate_in_use() -> float:
        return measure_spend_rate(quota_key=KEY, now=now,
                                  extractors=["claude-cli:haiku:low"]).measured

    for i in range(3):  # the chosen one: +0.25 % each 6 minutes, 2.5 %/h; 2 pairs: too few
        record(t0 + timedelta(hours=1, minutes=6 * i), 0.40 + 0.0025 * i, 0.1 + 0.001 * i, new)
    assert rate_in_use() == pytest.approx((0.04 + 0.005) / 0.6)  # both, over 6 pairs
    record(t0 + timedelta(hours=1, minutes=18), 0.4075, 0.103, new)  # the third pair
    assert rate_in_use() == pytest.approx(0.025)  # the chosen one's alone
    # Without the labels (or with one no run used), every run of the quota counts.
    assert measure_spend_rate(quota_key=KEY, now=now).measured == pytest.approx(
        (0.04 + 0.0075) / 0.7)


@pytest.mark.django_db
def test_spend_rate__nothing_measured__the_default(settings):
    settings.DRAINS_QUOTA_DEFAULT_SPEND_RATE = 0.01
    assert spend_rate(quota_key=KEY, now=R) == 0.01


@pytest.mark.django_db
def test_forecast__pace_of_the_week_so_far_and_what_would_lapse(settings):
    settings.DRAINS_QUOTA_RESERVE_RELEASE_HOURS = 0
    settings.DRAINS_QUOTA_WEEKLY_RESERVE = 0.10
    now = R - timedelta(days=2)  # 5 days (120 h) into the week
    record(now, 0.30, 0.1)
    forecast = autopilot.forecast(quota_key=KEY, now=now)
    assert forecast.pace_per_hour == pytest.approx(0.30 / 120)
    assert forecast.week_end_utilization == pytest.approx(0.30 + 0.30 / 120 * 48)  # 42 %
    assert forecast.ceiling_at_reset == pytest.approx(0.90)
    assert forecast.lapse == pytest.approx(0.90 - 0.42)
    assert forecast.planned_start is not None
    # With the release on, the week ends at a ceiling of 100 %, and more would lapse.
    settings.DRAINS_QUOTA_RESERVE_RELEASE_HOURS = 6
    assert autopilot.forecast(quota_key=KEY, now=now).lapse == pytest.approx(1.0 - 0.42)


@pytest.mark.django_db
def test_forecast__none_without_a_weekly_reading_or_past_its_reset():
    assert autopilot.forecast(quota_key=KEY, now=R) is None
    record(R - timedelta(days=1), 0.3, 0.1)
    assert autopilot.forecast(quota_key=KEY, now=R + timedelta(seconds=1)) is None


# --- acting: the bursts -----------------------------------------------------------------------


@pytest.fixture
def quota(db, settings):
    """The halacha drain on KEY with a backlog, the autopilot on, the default rate 1 %/h."""
    settings.DRAINS_QUOTA_DEFAULT_SPEND_RATE = 0.01
    settings.DRAINS_QUOTA_WEEKLY_RESERVE = 0.10
    settings.DRAINS_QUOTA_RESERVE_RELEASE_HOURS = 0
    settings.DRAINS_AUTOPILOT_SAFETY_MARGIN = 1.25
    settings.DRAINS_SUPERVISOR_INTERVAL_MINUTES = 15
    DrainControl.objects.create(name="halacha", quota_key=KEY)
    make_decisions(3)
    set_quota_policy(quota_key=KEY, actor="op", autopilot="on")


def planned_start_for(week: float) -> datetime:
    # room (0.90 - week) at 1 %/h, x 1.25, + 15 min, before R.
    return R - timedelta(hours=(0.90 - week) / 0.01 * 1.25) - QUARTER


def test_autopilot_starts_a_burst_only_when_its_rule_says_so(quota):
    start = planned_start_for(0.60)  # 37.5 h + 15 min before R
    record(start - timedelta(hours=3), 0.60, 0.1)
    with freeze_time(start - timedelta(minutes=5)):
        lines = autopilot.run_autopilot(quota_key=KEY, now=start - timedelta(minutes=5))
        assert not get_drain_burst("halacha").active
        assert "waiting" in lines[0]
        status = autopilot.autopilot_status(quota_key=KEY, now=start - timedelta(minutes=5))
        assert status.state == AutopilotState.WAITING and status.planned_start == start
    with freeze_time(start):
        autopilot.run_autopilot(quota_key=KEY, now=start)
        burst = get_drain_burst("halacha")
        assert burst.active and burst.burst_until == R  # deadline at the reset, never past it
        assert autopilot.autopilot_status(quota_key=KEY, now=start).state == AutopilotState.BURSTING
    event = DrainEvent.objects.get(kind=EventKind.BURST_ON)
    assert event.actor == "autopilot"
    for said in ("week at 60%", "room 30%", "1.00%/h", "until the weekly reset"):
        assert said in event.message
    assert DrainEvent.objects.filter(kind=EventKind.NOTE, actor="autopilot").count() == 1


def test_autopilot_off__never_starts(quota):
    set_quota_policy(quota_key=KEY, actor="op", autopilot="off")
    record(R - timedelta(hours=2), 0.60, 0.1)
    with freeze_time(R - timedelta(hours=1)):
        autopilot.run_autopilot(quota_key=KEY, now=R - timedelta(hours=1))
    assert not get_drain_burst("halacha").active


def test_never_touches_a_manual_burst(quota):
    record(R - timedelta(hours=30), 0.60, 0.1)
    now = R - timedelta(hours=20)
    with freeze_time(now):
        manual = now + timedelta(hours=2)
        set_drain_burst(name="halacha", until=manual, actor="op")
        autopilot.run_autopilot(quota_key=KEY, now=now)
        assert get_drain_burst("halacha").burst_until == manual  # neither shortened nor extended
        assert autopilot.autopilot_status(quota_key=KEY, now=now).state == AutopilotState.MANUAL


def test_an_operators_off_on_an_autopilot_burst_holds_until_the_weekly_reset(quota):
    record(R - timedelta(hours=30), 0.60, 0.1)
    now = R - timedelta(hours=20)
    with freeze_time(now):
        autopilot.run_autopilot(quota_key=KEY, now=now)
        assert get_drain_burst("halacha").active
        set_drain_burst(name="halacha", until=None, actor="op")
        assert QuotaPolicy.objects.get(quota_key=KEY).autopilot_held_until == R
        autopilot.run_autopilot(quota_key=KEY, now=now + QUARTER)
        assert not get_drain_burst("halacha").active
        status = autopilot.autopilot_status(quota_key=KEY, now=now)
        assert status.state == AutopilotState.HELD and status.held_until == R
    # The next week: held no more (the reading of the new week says due again).
    next_r = R + timedelta(days=7)
    record(R + timedelta(days=6), 0.60, 0.1, week_reset=next_r)
    later = next_r - timedelta(hours=20)
    with freeze_time(later):
        autopilot.run_autopilot(quota_key=KEY, now=later)
        assert get_drain_burst("halacha").burst_until == next_r


def test_switching_the_autopilot_off_ends_its_burst_and_not_a_manual_one(quota):
    record(R - timedelta(hours=30), 0.60, 0.1)
    now = R - timedelta(hours=20)
    with freeze_time(now):
        autopilot.run_autopilot(quota_key=KEY, now=now)
        assert get_drain_burst("halacha").active
        set_quota_policy(quota_key=KEY, actor="op", autopilot="off")
        assert not get_drain_burst("halacha").active
        # Switched off is not held: on again, it starts again.
        assert QuotaPolicy.objects.get(quota_key=KEY).autopilot_held_until is None
        set_drain_burst(name="halacha", until=now + QUARTER, actor="op")
        set_quota_policy(quota_key=KEY, actor="op", autopilot="on")
        set_quota_policy(quota_key=KEY, actor="op", autopilot="off")
        assert get_drain_burst("halacha").burst_until == now + QUARTER


def test_ends_its_burst_when_the_backlog_is_empty(quota):
    from halacha.models import CourtDecision

    record(R - timedelta(hours=30), 0.60, 0.1)
    now = R - timedelta(hours=20)
    with freeze_time(now):
        autopilot.run_autopilot(quota_key=KEY, now=now)
        CourtDecision.objects.all().delete()
        lines = autopilot.run_autopilot(quota_key=KEY, now=now + QUARTER)
    assert not get_drain_burst("halacha").active
    assert lines == ["halacha: autopilot burst ended: the backlog is empty"]


def test_the_burst_week_follows_the_observed_reset__saturday_the_fallback(db):
    DrainControl.objects.create(name="halacha", quota_key=KEY)
    # Tuesday: without a reading, the default deadline is the coming Saturday 18:00 (Israel).
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with freeze_time(now):
        assert set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="op").burst_until == R
        # The account's week resets on Thursday 09:17: the burst week follows it, both the
        # default deadline and the cap.
        thursday = datetime(2026, 12, 3, 7, 17, tzinfo=UTC)
        record(now, 0.3, 0.1, week_reset=thursday)
        assert set_drain_burst(name="halacha", until=DEFAULT_DEADLINE,
                               actor="op").burst_until == thursday
        from django.core.exceptions import ValidationError

        with pytest.raises(ValidationError, match="after the week boundary"):
            set_drain_burst(name="halacha", until=thursday + timedelta(minutes=1), actor="op")
        # An account's week may run past Saturday: the cap is its reset.
        sunday = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
        record(now + timedelta(minutes=1), 0.3, 0.1, week_reset=sunday)
        assert set_drain_burst(name="halacha", until=sunday, actor="op").burst_until == sunday
