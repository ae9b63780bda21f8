"""The quota store (drains/quota/store.py) against the real PostgreSQL: one statement per
recorded signal, rows updated in place, samples kept and pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drains.quota.models import QuotaSample, QuotaWindow
from drains.quota.signals import QuotaSignal, WindowReading
from drains.quota.store import latest_windows, prune_samples, record_signal

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
FIVE_H = NOW + timedelta(hours=3)
WEEK = NOW + timedelta(days=3)


def signal(five=0.4, week=0.3, *, overage=False, week_reset=WEEK):
    return QuotaSignal(
        windows=(WindowReading("five_hour", five, FIVE_H, "allowed"),
                 WindowReading("seven_day", week, week_reset, "allowed")),
        using_overage=overage, source="cli",
    )


def rows(key="acct"):
    return {w.window: w for w in latest_windows(key)}


def test_record_signal__one_statement_upserts_rows_and_inserts_samples(django_assert_num_queries):
    with django_assert_num_queries(1):
        record_signal(quota_key="acct", drain="halacha", run_id=None, signal=signal(), now=NOW)
    with django_assert_num_queries(1):
        record_signal(quota_key="acct", drain="halacha", run_id=None,
                      signal=signal(0.45, 0.32), now=NOW + timedelta(minutes=1))
    stored = rows()
    assert QuotaWindow.objects.count() == 2  # updated in place
    assert stored["five_hour"].utilization == 0.45
    assert stored["seven_day"].utilization == 0.32
    assert stored["seven_day"].resets_at == WEEK
    assert stored["seven_day"].observed_at == NOW + timedelta(minutes=1)
    assert stored["seven_day"].observed_by == "halacha"
    assert QuotaSample.objects.filter(quota_key="acct").count() == 4


def test_empty_signal_is_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        record_signal(quota_key="acct", drain="d", run_id=None, signal=QuotaSignal(), now=NOW)


def test_drop_is_a_reset_and_an_older_reading_does_not_overwrite():
    record_signal(quota_key="acct", drain="d", run_id=None, signal=signal(0.9, 0.8), now=NOW)
    # The window reset (a new one opened, its reset hours later): the lower reading is kept.
    later = NOW + timedelta(minutes=10)
    reset = QuotaSignal(windows=(WindowReading("five_hour", 0.02, FIVE_H + timedelta(hours=5)),))
    record_signal(quota_key="acct", drain="d", run_id=None, signal=reset, now=later)
    assert rows()["five_hour"].utilization == 0.02
    # A call that finished late with an older reading: the row keeps the newer one.
    record_signal(quota_key="acct", drain="d", run_id=None, signal=signal(0.95, 0.8),
                  now=NOW + timedelta(minutes=5))
    assert rows()["five_hour"].utilization == 0.02
    assert rows()["five_hour"].observed_at == later


def test_missing_reset_keeps_the_stored_one_and_overage_is_the_quotas():
    record_signal(quota_key="acct", drain="d", run_id=None, signal=signal(), now=NOW)
    only_week = QuotaSignal(windows=(WindowReading("seven_day", 0.5, None, "allowed"),),
                            using_overage=True)
    record_signal(quota_key="acct", drain="d", run_id=None, signal=only_week,
                  now=NOW + timedelta(minutes=1))
    stored = rows()
    assert stored["seven_day"].resets_at == WEEK
    # The flag is on every row of the key, also the one the signal did not name.
    assert stored["five_hour"].using_overage and stored["seven_day"].using_overage
    record_signal(quota_key="acct", drain="d", run_id=None, signal=signal(),
                  now=NOW + timedelta(minutes=2))
    assert not any(w.using_overage for w in latest_windows("acct"))
    # Other keys are their own.
    record_signal(quota_key="other", drain="d", run_id=None, signal=signal(overage=True),
                  now=NOW + timedelta(minutes=3))
    assert not any(w.using_overage for w in latest_windows("acct"))
    assert [w.quota_key for w in latest_windows()] == ["acct", "acct", "other", "other"]


def test_prune_samples_keeps_the_recent_weeks(settings):
    settings.DRAINS_QUOTA_SAMPLE_DAYS = 28
    record_signal(quota_key="acct", drain="d", run_id=None, signal=signal(),
                  now=NOW - timedelta(days=29))
    record_signal(quota_key="acct", drain="d", run_id=None, signal=signal(), now=NOW)
    assert prune_samples(now=NOW) == 2
    assert QuotaSample.objects.count() == 2
    assert prune_samples(now=NOW + timedelta(seconds=1), keep_days=0) == 2


def test_record_signals__a_chunk_in_one_statement_latest_reading_wins(django_assert_num_queries):
    from drains.quota.store import record_signals

    calls = [(signal(0.40 + i / 100, 0.30 + i / 100), NOW + timedelta(seconds=i)) for i in range(5)]
    calls.reverse()  # the order they are given in does not matter: the latest observed wins
    with django_assert_num_queries(1):
        record_signals(quota_key="acct", drain="halacha", run_id=None, signals=calls)
    stored = rows()
    assert stored["five_hour"].utilization == pytest.approx(0.44)
    assert stored["seven_day"].utilization == pytest.approx(0.34)
    assert stored["seven_day"].observed_at == NOW + timedelta(seconds=4)
    assert QuotaSample.objects.count() == 10
    with django_assert_num_queries(0):
        record_signals(quota_key="acct", drain="halacha", run_id=None,
                       signals=[(QuotaSignal(), NOW)])


def test_quota_state__readings_and_policy_in_one_query(django_assert_num_queries):
    from drains.quota.models import QuotaPolicy
    from drains.quota.store import quota_state

    with django_assert_num_queries(1):
        assert quota_state("acct") == ([], None)
    record_signal(quota_key="acct", drain="d", run_id=None, signal=signal(), now=NOW)
    with django_assert_num_queries(1):
        windows, policy = quota_state("acct")
    assert [(w.window, w.utilization, w.resets_at) for w in windows] == [
        ("five_hour", 0.4, FIVE_H), ("seven_day", 0.3, WEEK)]
    assert policy is None
    QuotaPolicy.objects.create(quota_key="acct", weekly_reserve=0.2)
    windows, policy = quota_state("acct")
    assert len(windows) == 2 and policy.weekly_reserve == 0.2 and policy.session_reserve is None
    QuotaWindow.objects.all().delete()
    assert quota_state("acct")[1].weekly_reserve == 0.2


def test_out_of_order_answers__within_a_period_the_highest_reading_is_kept():
    from drains.quota.store import record_signals

    # Three calls in flight answered 0.90, 0.95 and 1.0 by the service, noted in another order.
    noted = [(signal(1.0, 0.5), NOW), (signal(0.90, 0.5), NOW + timedelta(milliseconds=5)),
             (signal(0.95, 0.5), NOW + timedelta(milliseconds=9))]
    record_signals(quota_key="acct", drain="d", run_id=None, signals=noted)
    assert rows()["five_hour"].utilization == 1.0
    # One by one, the same.
    record_signal(quota_key="acct", drain="d", run_id=None, signal=signal(0.92, 0.5),
                  now=NOW + timedelta(seconds=1))
    assert rows()["five_hour"].utilization == 1.0
    # A new period (the reset moved ahead by hours): the drop is the reset, kept.
    later = QuotaSignal(windows=(WindowReading("five_hour", 0.03, FIVE_H + timedelta(hours=5)),))
    record_signal(quota_key="acct", drain="d", run_id=None, signal=later,
                  now=NOW + timedelta(seconds=2))
    assert rows()["five_hour"].utilization == 0.03


def test_the_supervisor_tick_prunes_old_samples(settings):
    from django.utils import timezone

    from drains.supervisor.tick import supervise

    settings.DRAINS_QUOTA_SAMPLE_DAYS = 28
    now = timezone.now()
    record_signal(quota_key="acct", drain="d", run_id=None, signal=signal(),
                  now=now - timedelta(days=30))
    record_signal(quota_key="acct", drain="d", run_id=None, signal=signal(), now=now)
    supervise(dry_run=True, write=lambda line: None)
    assert QuotaSample.objects.count() == 4  # a dry run writes (and deletes) nothing
    supervise(write=lambda line: None)
    assert QuotaSample.objects.count() == 2
    assert QuotaSample.objects.filter(observed_at__lt=now - timedelta(days=28)).count() == 0


def test_quota_state__each_window_carries_the_step_one_call_moved_it(django_assert_num_queries):
    """The mean gain between consecutive samples of one run: pairs a wait apart or across a
    reset left out, a small drop with the same reset (answers out of order) kept."""
    from drains.quota.store import quota_state, record_signals
    from tests.factories import make_run

    run, other = make_run("halacha"), make_run("metadata")

    def five(utilization, reset=FIVE_H):
        return QuotaSignal(windows=(WindowReading("five_hour", utilization, reset, "allowed"),))

    at = NOW
    readings = [
        (run, five(0.50)), (run, five(0.54)), (run, five(0.52)),  # out of order: -0.02 kept
        (run, five(0.58)),
        (run, five(0.03, FIVE_H + timedelta(hours=5))),  # the window reset: left out
        (run, five(0.05, FIVE_H + timedelta(hours=5))),
        (other, five(0.09, FIVE_H + timedelta(hours=5))),  # another run's first: no pair
    ]
    for number, (of, sig) in enumerate(readings):
        at = NOW + timedelta(seconds=10 * number)
        record_signals(quota_key="acct", drain=of.drain, run_id=of.pk, signals=[(sig, at)])
    # A run's readings ten minutes and more apart: it waited; left out.
    record_signals(quota_key="acct", drain="metadata", run_id=other.pk,
                   signals=[(five(0.30, FIVE_H + timedelta(hours=5)), at + timedelta(hours=1))])
    with django_assert_num_queries(1):
        windows, _ = quota_state("acct")
    (row,) = windows
    # Pairs: +0.04, -0.02, +0.06, (reset), +0.02 -> 4 pairs, mean 0.025.
    assert row.step_pairs == 4
    assert row.step == pytest.approx(0.025)
    record_signal(quota_key="other", drain="d", run_id=None, signal=signal(), now=NOW)
    (unmeasured, _week), _ = quota_state("other")  # samples without a run: nothing measured
    assert unmeasured.step is None and unmeasured.step_pairs == 0


def test_a_compressed_5_hour_window__the_next_periods_reading_is_not_merged_into_the_old(settings):
    # bench/autopilot.py's 5-hour window is 18 s: its next period's reset is 18 s later, which the
    # hour-wide same-period rule took for the old period (the full window's 98 % kept under the
    # new reset, so the drains stopped at a window that had reset).
    settings.DRAINS_QUOTA_SESSION_HOURS = 18 / 3600
    reset = NOW + timedelta(seconds=5)

    def five(utilization, at_reset):
        return QuotaSignal(windows=(WindowReading("five_hour", utilization, at_reset, "allowed"),))

    record_signal(quota_key="acct", drain="d", run_id=None, signal=five(0.98, reset), now=NOW)
    record_signal(quota_key="acct", drain="d", run_id=None,
                  signal=five(0.02, reset + timedelta(seconds=18)),
                  now=NOW + timedelta(seconds=6))
    row = rows()["five_hour"]
    assert (row.utilization, row.resets_at) == (0.02, reset + timedelta(seconds=18))
