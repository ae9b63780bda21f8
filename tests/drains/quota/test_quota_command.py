"""``manage.py quota`` and ``manage.py quota set``: what they print, and bad input as one line
with exit status 2 and nothing changed."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from freezegun import freeze_time

from drains.models import DrainControl, DrainEvent, EventKind
from drains.quota.models import QuotaPolicy
from drains.quota.signals import QuotaSignal, WindowReading
from drains.quota.store import record_signal
from drains.quota.wording import NO_QUOTA, NO_SIGNAL
from drains.selectors.quota import quota_entries
from operations.quota import quota_json
from tests.support.db import ROOT, child_env

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # Tue 12:00 in Israel (+02:00)
KEY = "claude-cli:/usr/bin/claude"


def quota(*args) -> str:
    out = StringIO()
    call_command("quota", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def seen(key=KEY, *, five=0.42, week=0.3, week_reset=NOW + timedelta(days=3), at=NOW):
    record_signal(quota_key=key, drain="halacha", run_id=None, now=at, signal=QuotaSignal(
        windows=(WindowReading("five_hour", five, NOW + timedelta(hours=3), "allowed"),
                 WindowReading("seven_day", week, week_reset, "allowed"))))


@freeze_time(NOW)
def test_show__windows_reserves_ceilings_now():
    seen(at=NOW - timedelta(minutes=2))
    lines = quota().splitlines()
    assert lines[:3] == [
        f"quota {KEY}",
        "  reserves: weekly 10 % (default), released over the last 6 h before the weekly "
        "reset (default); session 0 % (default)",
        "  5 hours 42 % used · resets Tue 15:00 IST · seen 2 min ago",
    ]
    assert lines[3] == ("  Week 30 % used · resets Fri 12:00 IST · seen 2 min ago · "
                        "reserve 10 % (ceiling 90 %)")
    assert lines[4] == "  drains may call: every window is below its ceiling by more than one call"
    assert lines[5].startswith("  at this pace the week ends at ")
    assert lines[5].endswith("would lapse; the autopilot is off")
    assert lines[6].startswith("defaults: DRAINS_QUOTA_WEEKLY_RESERVE=0.1, ")


@freeze_time(NOW)
def test_show__says_what_the_page_says_in_the_same_words():
    seen(at=NOW - timedelta(minutes=2))
    [page] = [quota_json(entry, NOW) for entry in quota_entries(now=NOW)]
    lines = quota().splitlines()
    for window in page["windows"]:
        assert f"  {window['text']}" in lines
    assert f"  {page['text']}" in lines


@freeze_time(NOW)
def test_show__released_reserve_and_a_stop():
    seen(week=0.93, week_reset=NOW + timedelta(hours=3))
    text = quota()
    # 3 of the 6 release hours left: half the 10 % reserve, ceiling 95 %.
    assert ("  Week 93 % used · resets Tue 15:00 IST · seen just now · "
            "reserve 5 % (ceiling 95 %, being released)") in text.splitlines()
    assert "drains may call" in text
    QuotaPolicy.objects.create(quota_key=KEY, reserve_release_hours=0)
    text = quota()
    assert "never released" in text
    assert "reserve 10 % (ceiling 90 %) · at the ceiling: no drain call starts" in text
    assert "drains stopped: seven_day at 93% is at or over its ceiling 90%" in text


def test_show__no_signal_and_no_key():
    assert quota().splitlines()[0] == NO_QUOTA
    DrainControl.objects.create(name="halacha", quota_key="anthropic:abc")
    lines = quota().splitlines()
    assert lines[0] == "quota anthropic:abc" and f"  {NO_SIGNAL}" in lines
    assert not any(line.startswith("  drains may call") for line in lines)


def test_set__the_one_known_key_written_and_audited():
    seen()
    text = quota("set", "--weekly-reserve", "0.2", "--reserve-release-hours", "4",
                 "--autopilot", "on", "--actor", "ops")
    policy = QuotaPolicy.objects.get(quota_key=KEY)
    assert (policy.weekly_reserve, policy.reserve_release_hours, policy.autopilot) == (0.2, 4, True)
    assert "reserves: weekly 20 %, released over the last 4 h before the weekly reset; " \
           "session 0 % (default)" in text
    event = DrainEvent.objects.get(kind=EventKind.QUOTA_POLICY)
    assert event.actor == "ops" and event.data["after"]["weekly_reserve"] == 0.2
    quota("set", "--quota", KEY, "--weekly-reserve", "default")
    assert QuotaPolicy.objects.get(quota_key=KEY).weekly_reserve is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "--weekly-reserve", "0.95"], "weekly reserve '0.95' is outside 0..0.9"),
        (["set", "--session-reserve", "lots"], "session reserve 'lots' is not a number"),
        (["set", "--reserve-release-hours", "-2"], "reserve release hours '-2' is not a number"),
        (["set", "--autopilot", "maybe"], "autopilot 'maybe' is not on or off"),
        (["set", "--quota", "nope", "--weekly-reserve", "0.1"], "unknown quota key 'nope'"),
        (["set"], "nothing to change"),
        (["show", "--weekly-reserve", "0.1"], "go with 'set'"),
        (["frob"], "unknown action 'frob'"),
    ],
)
def test_bad_input__one_line_exit_2_nothing_changed(args, message):
    seen()
    with pytest.raises(CommandError) as caught:
        quota(*args)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert caught.value.returncode == 2
    assert not QuotaPolicy.objects.exists()
    assert not DrainEvent.objects.filter(kind=EventKind.QUOTA_POLICY).exists()


def test_two_keys__the_key_must_be_named():
    seen()
    seen("anthropic:abc")
    with pytest.raises(CommandError, match="2 quota keys are known; name one with --quota"):
        quota("set", "--weekly-reserve", "0.1")
    quota("set", "--quota", "anthropic:abc", "--session-reserve", "0.05")
    assert QuotaPolicy.objects.get().quota_key == "anthropic:abc"


@pytest.mark.django_db(transaction=True)
def test_exit_status_2_and_one_line_from_the_shell():
    seen()
    done = subprocess.run(
        [sys.executable, "manage.py", "quota", "set", "--weekly-reserve", "2"],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "CommandError: weekly reserve '2' is outside 0..0.9: give a fraction of the window, "
        "e.g. 0.1 keeps 10 % for the owner"
    ]
