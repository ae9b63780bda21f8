"""The drain rules (drains/rules.py): pure functions, so plain values and a given ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drains import rules

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("backend_pid", "holder", "alive"),
    [(7, 7, True), (None, 7, True), (7, None, False), (None, None, False), (7, 8, False)],
)
def test_holds_lock__only_the_runs_own_backend_counts(backend_pid, holder, alive):
    assert rules.holds_lock(backend_pid=backend_pid, holder=holder) is alive


def test_hung_after__the_override_else_the_default():
    assert rules.hung_after(override_seconds=600, default_seconds=1800) == timedelta(minutes=10)
    assert rules.hung_after(override_seconds=None, default_seconds=1800) == timedelta(minutes=30)


def test_burst_active__off_at_its_deadline():
    assert rules.burst_active(NOW + timedelta(seconds=1), now=NOW)
    assert not rules.burst_active(NOW, now=NOW)
    assert not rules.burst_active(None, now=NOW)
