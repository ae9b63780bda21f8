"""The drain rules (drains/rules.py): pure functions, so plain values and a given ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drains import rules
from drains.rules import Liveness

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("backend_pid", "holder", "alive"),
    [(7, 7, True), (None, 7, True), (7, None, False), (None, None, False), (7, 8, False)],
)
def test_holds_lock__only_the_runs_own_backend_counts(backend_pid, holder, alive):
    assert rules.holds_lock(backend_pid=backend_pid, holder=holder) is alive


def test_run_liveness__dead_beats_hung_and_hung_counts_from_the_checkpoint_or_start():
    threshold = timedelta(minutes=10)
    started = NOW - timedelta(hours=1)

    def liveness(holder, checkpoint):
        return rules.run_liveness(
            backend_pid=7,
            holder=holder,
            last_checkpoint_at=checkpoint,
            started_at=started,
            threshold=threshold,
            now=NOW,
        )

    assert liveness(8, NOW) == Liveness.DEAD
    assert liveness(7, NOW - timedelta(minutes=10)) == Liveness.ALIVE  # exactly the threshold
    assert liveness(7, NOW - timedelta(minutes=10, seconds=1)) == Liveness.HUNG
    assert liveness(7, None) == Liveness.HUNG  # no checkpoint: counted from the start


def test_hung_after__the_override_else_the_default():
    assert rules.hung_after(override_seconds=600, default_seconds=1800) == timedelta(minutes=10)
    assert rules.hung_after(override_seconds=None, default_seconds=1800) == timedelta(minutes=30)


def test_burst_active__off_at_its_deadline():
    assert rules.burst_active(NOW + timedelta(seconds=1), now=NOW)
    assert not rules.burst_active(NOW, now=NOW)
    assert not rules.burst_active(None, now=NOW)


def row(name, until, quota_key=""):
    return {"name": name, "quota_key": quota_key, "backoff_until": until}


def test_backoff_in_force__own_or_same_quota_latest_wins_cleared_ones_ignored():
    soon, later = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    controls = [row("halacha", soon, "q"), row("metadata", later, "q"), row("other", later, "r")]

    found = rules.backoff_in_force(drain="halacha", quota_key="q", controls=controls, now=NOW)
    assert found["name"] == "metadata"  # the same quota, later reset
    own = rules.backoff_in_force(
        drain="halacha", quota_key="q", controls=controls, now=NOW, ignore={"metadata"}
    )
    assert own["name"] == "halacha"
    # The drain's own backoff stops it even when it has no quota key yet.
    assert rules.backoff_in_force(
        drain="halacha", quota_key="", controls=[row("halacha", soon)], now=NOW
    )
    # No key: another drain's backoff is not this drain's.
    assert not rules.backoff_in_force(
        drain="halacha", quota_key="", controls=[row("metadata", soon)], now=NOW
    )
    assert not rules.backoff_in_force(
        drain="halacha", quota_key="q", controls=[row("halacha", NOW, "q")], now=NOW
    )


def test_backoff_stale_because__fresh_until_its_reset_or_progress_since_it_was_observed():
    until, observed = NOW + timedelta(hours=1), NOW - timedelta(minutes=30)
    assert rules.backoff_stale_because(
        until=until, observed_at=observed, last_progress=None, now=NOW
    ) is None
    assert "has passed" in rules.backoff_stale_because(
        until=NOW, observed_at=observed, last_progress=None, now=NOW
    )
    progress = NOW - timedelta(minutes=5)
    assert rules.backoff_stale_because(
        until=until, observed_at=observed, last_progress=progress, now=NOW
    ) == (
        f"observed {observed.isoformat()}, before the last successful checkpoint "
        f"{progress.isoformat()}"
    )
