"""Fixtures the drain tests share."""

from __future__ import annotations

import pytest


@pytest.fixture
def call_log(tmp_path):
    """Where the test extractors (tests/support/extractors.py) append one line per call."""
    return tmp_path / "calls.log"


@pytest.fixture
def cron_in_jerusalem(settings):
    """A host whose cron runs in Israel time: the schedule's hours are the operator's."""
    settings.DRAINS_CRON_TZ = "Asia/Jerusalem"
