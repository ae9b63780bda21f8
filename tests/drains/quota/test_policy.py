"""The quota's pure rules (drains/quota/policy.py): plain values and a given ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drains.quota import policy

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def row(name, until, quota_key=""):
    return {"name": name, "quota_key": quota_key, "backoff_until": until}


def test_blocking_backoff__own_or_same_quota_latest_wins_cleared_ones_ignored():
    soon, later = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    controls = [row("halacha", soon, "q"), row("metadata", later, "q"), row("other", later, "r")]

    found = policy.blocking_backoff(drain="halacha", quota_key="q", controls=controls, now=NOW)
    assert found["name"] == "metadata"  # the same quota, later reset
    own = policy.blocking_backoff(
        drain="halacha", quota_key="q", controls=controls, now=NOW, ignore={"metadata"}
    )
    assert own["name"] == "halacha"
    # The drain's own backoff stops it even when it has no quota key yet.
    assert policy.blocking_backoff(
        drain="halacha", quota_key="", controls=[row("halacha", soon)], now=NOW
    )
    # No key: another drain's backoff is not this drain's.
    assert not policy.blocking_backoff(
        drain="halacha", quota_key="", controls=[row("metadata", soon)], now=NOW
    )
    assert not policy.blocking_backoff(
        drain="halacha", quota_key="q", controls=[row("halacha", NOW, "q")], now=NOW
    )


def test_backoff_stale_because__fresh_until_its_reset_or_progress_since_it_was_observed():
    until, observed = NOW + timedelta(hours=1), NOW - timedelta(minutes=30)
    assert policy.backoff_stale_because(
        until=until, observed_at=observed, last_progress=None, now=NOW
    ) is None
    assert "has passed" in policy.backoff_stale_because(
        until=NOW, observed_at=observed, last_progress=None, now=NOW
    )
    progress = NOW - timedelta(minutes=5)
    assert policy.backoff_stale_because(
        until=until, observed_at=observed, last_progress=progress, now=NOW
    ) == (
        f"observed {observed.isoformat()}, before the last successful checkpoint "
        f"{progress.isoformat()}"
    )
