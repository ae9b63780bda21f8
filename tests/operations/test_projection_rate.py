"""The projection's rate (operations/projection.py ``window_rate``) and what the snapshot makes of
it: backoff windows left out, working time per call slot in a burst scaled to the concurrency the
drain runs at, and the projection starting at the known reset of a backoff in force.

The pure cases use known runs; the snapshot cases write the same kind of runs to the real
database and read the projection through the API the page uses.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from drains.bursts import set_drain_burst
from drains.quota.backoff import record_backoff
from drains.selectors import snapshot as reads
from drains.selectors.rows import RunSpan
from operations.projection import SESSION_BOUND, window_rate
from tests.operations.conftest import BOUNDARY, WEDNESDAY

URL = "/api/operations/"
H = timedelta(hours=1)
NOW = WEDNESDAY


def at(hours: float):
    """``hours`` before NOW."""
    return NOW - timedelta(hours=hours)


def run(start_h, end_h, items, *, concurrency=1, status="succeeded") -> RunSpan:
    return RunSpan(at(start_h), at(end_h), items, concurrency, status)


# --- the rule, on known runs --------------------------------------------------------------

def test_burst__a_backoff_window_in_the_history_does_not_drag_the_rate_down():
    # 60 an hour while working, a limit at -2 h, its backoff until -30 min, then work again.
    runs = [run(3, 2, 60, status="rate_limited"), run(0.5, 0, 30)]
    assert window_rate(runs, now=NOW, window=3 * H, burst=True) == pytest.approx(60)
    assert window_rate(runs, now=NOW, window=3 * H, burst=False) == pytest.approx(60)
    # The old rule (items done in the last hour) said 30 an hour.


def test_burst__only_working_time_counts():
    # A burst run, 90 minutes with no run (the drain was off), then the burst again: in a burst
    # the drain runs back to back, so the pause is not its pace. Without a burst, cron's pauses
    # are: 150 items over 3 h.
    runs = [run(3, 2, 120), run(0.5, 0, 30)]
    assert window_rate(runs, now=NOW, window=1.5 * H, burst=True) == pytest.approx(100)
    assert window_rate(runs, now=NOW, window=3 * H, burst=False) == pytest.approx(50)


def test_burst__double_concurrency_doubles_the_rate():
    runs = [run(3, 0, 150)]
    one = window_rate(runs, now=NOW, window=3 * H, burst=True, concurrency=1)
    two = window_rate(runs, now=NOW, window=3 * H, burst=True, concurrency=2)
    assert one == pytest.approx(50)
    assert two == pytest.approx(100)


def test_burst__the_rate_is_per_call_slot_and_scaled_to_the_newest_runs_concurrency():
    # 60 per call slot and hour: at concurrency 1 for 2 h, then at concurrency 2 for 30 min.
    runs = [run(3, 1, 120, concurrency=1), run(1, 0.5, 60, concurrency=2, status="running")]
    # 180 items over 2 + 1 = 3 slot-hours; the drain now runs 2 slots.
    assert window_rate(runs, now=NOW, window=3 * H, burst=True) == pytest.approx(120)


def test_burst__the_rate_is_per_busy_second_where_the_run_recorded_it():
    # An hour at concurrency 4 whose workers were busy 2.5 of the 4 slot-hours (a probe's lone
    # call, start-up, the last calls in flight): 80 per busy slot-hour, at 4 slots.
    busy = RunSpan(at(1), at(0), 200, 4, "succeeded", busy=2.5 * 3600)
    assert window_rate([busy], now=NOW, window=3 * H, burst=True) == pytest.approx(320)
    # Not recorded (older runs): the whole span at the run's concurrency.
    assert window_rate([run(1, 0, 200, concurrency=4)], now=NOW, window=3 * H,
                       burst=True) == pytest.approx(200)


def test_burst__the_window_reaches_past_a_backoff_longer_than_itself():
    # A 4-hour session backoff ended just now: the window's 2 h of work are before it.
    runs = [run(6, 4, 100, status="rate_limited")]
    assert window_rate(runs, now=NOW, window=2 * H, burst=True) == pytest.approx(50)


def test_the_window_keeps_the_newest_counted_time():
    # 10/h long ago, 100/h in the newest hour: a 1-hour window sees only the newest.
    runs = [run(4, 1, 30), run(1, 0, 100)]
    assert window_rate(runs, now=NOW, window=H, burst=True) == pytest.approx(100)
    assert window_rate(runs, now=NOW, window=H, burst=False) == pytest.approx(100)
    # Half of the older run falls inside a 2.5-hour window: 15 of its items over 1.5 h.
    assert window_rate(runs, now=NOW, window=2.5 * H, burst=True) == pytest.approx(115 / 2.5)


def test_normal__cron_pauses_count_but_backoffs_do_not():
    # Cron batches of 50 in 10 minutes every 15 minutes: 200 an hour, pauses included.
    m = 1 / 60
    batches = [run(30 * m, 20 * m, 50), run(15 * m, 5 * m, 50)]
    assert window_rate(batches, now=NOW, window=30 * m * H, burst=False) == pytest.approx(200)
    # A batch that hit a limit, 50 minutes of backoff, then a batch: only 25 minutes count
    # (10 + 10 minutes of work and the 5-minute pause since the last batch).
    limited = [run(75 * m, 65 * m, 50, status="rate_limited"), run(15 * m, 5 * m, 50)]
    assert window_rate(limited, now=NOW, window=3 * H, burst=False) == pytest.approx(240)


def test_normal__the_unchecked_tail_of_a_running_run_is_not_counted_as_idle():
    # A running run's counters are known up to its last checkpoint (-30 min).
    runs = [run(1, 0.5, 30, status="running")]
    assert window_rate(runs, now=NOW, window=3 * H, burst=False) == pytest.approx(60)


# --- the selector, on the real database --------------------------------------------------

def test_recent_runs_reads_the_window_and_the_run_before_it(frozen, make_run):
    make_run(started_at=at(12), finished_at=at(11), items_done=5)  # before the run before
    make_run(started_at=at(9), finished_at=at(8), items_done=60, status="rate_limited",
             concurrency=4)
    make_run(started_at=at(1), status="running", last_checkpoint_at=at(0.5), items_done=7,
             busy_seconds=2.5)
    [rows] = reads.fetch([reads.recent_runs(["halacha"], NOW, NOW - 3 * H - SESSION_BOUND)])
    assert rows["halacha"] == [
        RunSpan(at(1), at(0.5), 7, 1, "running", 2.5, "offline"),
        RunSpan(at(9), at(8), 60, 4, "rate_limited", 0.0, "offline"),
    ]


def _projection(api):
    services = {s["name"]: s for s in api.get(URL).json()["services"]}
    return services["halacha"]["projection"]


@override_settings(DRAINS_PROJECTION_WINDOW_MINUTES=180)
def test_snapshot__a_backoff_in_the_history_leaves_the_burst_rate_alone(api, frozen, decisions,
                                                                        make_run):
    set_drain_burst(name="halacha", until=BOUNDARY, actor="olga")
    decisions(pending=120)
    make_run(started_at=at(3), finished_at=at(2), items_done=60, status="rate_limited")
    make_run(started_at=at(0.5), finished_at=NOW, items_done=30)
    projection = _projection(api)
    assert projection["rate_per_hour"] == 60.0  # the old rule (the last hour) said 30
    assert projection["finish_at"] == (NOW + 2 * H).isoformat()


@pytest.mark.parametrize(("concurrency", "rate"), [(1, 60.0), (2, 120.0)])
def test_snapshot__the_burst_rate_scales_to_the_running_runs_concurrency(
    api, frozen, decisions, make_run, concurrency, rate
):
    set_drain_burst(name="halacha", until=BOUNDARY, actor="olga")
    decisions(pending=120)
    make_run(started_at=at(3), finished_at=at(1), items_done=120, concurrency=1)
    # The run now going: 60 per call slot and hour, at ``concurrency`` slots.
    make_run(started_at=at(1), status="running", last_checkpoint_at=at(0.5),
             items_done=30 * concurrency, concurrency=concurrency)
    assert _projection(api)["rate_per_hour"] == rate


def test_snapshot__with_a_backoff_in_force_the_projection_starts_at_its_reset(
    api, frozen, decisions, make_run
):
    set_drain_burst(name="halacha", until=BOUNDARY, actor="olga")
    decisions(pending=100)
    limited = make_run(started_at=at(3), finished_at=at(1), items_done=100, status="rate_limited")
    reset = timezone.now() + 2 * H
    record_backoff(drain="halacha", quota_key="q", reset_at=reset, reason="session limit",
                   run=limited)
    projection = _projection(api)
    # Nothing was done in the last hour (the old rule had no projection); 50 an hour while
    # working, from the reset on: 2 h of backoff, then 2 h of work.
    assert projection["rate_per_hour"] == 50.0
    assert projection["finish_at"] == (NOW + 4 * H).isoformat()


@override_settings(DRAINS_PROJECTION_WINDOW_MINUTES=120)
def test_snapshot__the_window_is_a_setting(api, frozen, decisions, make_run):
    decisions(pending=10)
    make_run(started_at=at(4), finished_at=at(2), items_done=40)
    make_run(started_at=at(1), finished_at=NOW, items_done=50)
    # No burst: cron's pause between the runs counts. 50 over the last 2 h (3 h: 70 / 3; the
    # last hour alone: 50).
    assert _projection(api)["rate_per_hour"] == 25.0
