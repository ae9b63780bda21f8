"""The burst service and its CLI: the deadline rules, validation messages, state and events.

Expected deadlines are worked out by hand from Israel's clock rules (2026: summer time from
Fri 27 March 02:00 to Sun 25 October 02:00; +02:00 in winter, +03:00 in summer), not read back
from the code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from freezegun import freeze_time

from drains import registry
from drains.bursts import (
    DEFAULT_DEADLINE,
    clear_expired_burst,
    get_drain_burst,
    get_drain_bursts,
    set_drain_burst,
    upcoming_week_boundary,
)
from drains.models import DrainControl, DrainEvent

IL = ZoneInfo("Asia/Jerusalem")
pytestmark = pytest.mark.django_db


def il(*args) -> datetime:
    return datetime(*args, tzinfo=IL)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# The week Sun 29 Nov - Sat 5 Dec 2026 (winter, +02:00): the boundary is Sat 5 Dec 16:00 UTC.
WINTER_BOUNDARY = utc(2026, 12, 5, 16, 0)
NEXT_WINTER_BOUNDARY = utc(2026, 12, 12, 16, 0)


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(il(2026, 11, 29, 12, 0), id="sunday"),
        pytest.param(il(2026, 11, 30, 0, 0), id="monday-midnight"),
        pytest.param(il(2026, 12, 1, 12, 0), id="tuesday"),
        pytest.param(il(2026, 12, 2, 23, 59), id="wednesday-late"),
        pytest.param(il(2026, 12, 3, 12, 0), id="thursday"),
        pytest.param(il(2026, 12, 4, 19, 0), id="friday-evening"),
        pytest.param(il(2026, 12, 5, 9, 0), id="saturday-morning"),
        pytest.param(il(2026, 12, 5, 17, 59), id="saturday-17:59"),
        pytest.param(il(2026, 12, 5, 17, 59, 59), id="saturday-17:59:59"),
    ],
)
def test_burst_default_deadline__every_day_of_the_week_ends_this_saturday_18(now):
    with freeze_time(now):
        state = set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="ops")
    assert state.burst_until == WINTER_BOUNDARY
    assert state.active


@pytest.mark.parametrize(
    "now",
    [
        pytest.param(il(2026, 12, 5, 18, 0), id="saturday-18:00"),
        pytest.param(il(2026, 12, 5, 18, 1), id="saturday-18:01"),
        pytest.param(il(2026, 12, 5, 23, 30), id="saturday-night"),
    ],
)
def test_burst_default_deadline__saturday_from_18_is_next_week(now):
    with freeze_time(now):
        state = set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="ops")
    assert state.burst_until == NEXT_WINTER_BOUNDARY


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Spring forward (Fri 27 Mar 2026 02:00 +02:00 -> 03:00 +03:00): the boundary is 18:00
        # summer time, 15:00 UTC — not 16:00, which counting whole days from winter time gives.
        pytest.param(il(2026, 3, 26, 12, 0), utc(2026, 3, 28, 15, 0), id="spring-thursday"),
        pytest.param(
            utc(2026, 3, 26, 23, 30), utc(2026, 3, 28, 15, 0), id="spring-just-before-jump"
        ),
        pytest.param(il(2026, 3, 27, 3, 30), utc(2026, 3, 28, 15, 0), id="spring-just-after-jump"),
        pytest.param(
            il(2026, 3, 21, 18, 0), utc(2026, 3, 28, 15, 0), id="spring-saturday-18-before"
        ),
        # Fall back (Sun 25 Oct 2026 02:00 +03:00 -> 01:00 +02:00): Sat 24 Oct is still summer
        # (15:00 UTC); from Sat 18:00 on, the next boundary is in winter time (16:00 UTC).
        pytest.param(il(2026, 10, 23, 12, 0), utc(2026, 10, 24, 15, 0), id="fall-friday"),
        pytest.param(il(2026, 10, 24, 18, 0), utc(2026, 10, 31, 16, 0), id="fall-saturday-18"),
        pytest.param(
            utc(2026, 10, 24, 22, 30), utc(2026, 10, 31, 16, 0), id="fall-repeated-hour-1st"
        ),
        pytest.param(
            utc(2026, 10, 24, 23, 30), utc(2026, 10, 31, 16, 0), id="fall-repeated-hour-2nd"
        ),
    ],
)
def test_burst_default_deadline__across_dst_transitions(now, expected):
    with freeze_time(now):
        state = set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="ops")
        assert upcoming_week_boundary() == expected
    assert state.burst_until == expected
    assert state.burst_until.astimezone(IL).hour == 18


def test_burst_chosen_deadline__aware_future_within_the_week_is_stored():
    with freeze_time(il(2026, 12, 1, 12, 0)):
        state = set_drain_burst(name="halacha", until="2026-12-03T20:30:00+02:00", actor="ops")
        assert get_drain_burst("halacha").burst_until == utc(2026, 12, 3, 18, 30)
    assert state.active


def test_burst_chosen_deadline__exactly_the_boundary_is_allowed():
    with freeze_time(il(2026, 12, 1, 12, 0)):
        state = set_drain_burst(name="halacha", until="2026-12-05T18:00:00+02:00", actor="ops")
    assert state.burst_until == WINTER_BOUNDARY


@pytest.mark.parametrize(
    ("value", "code", "words"),
    [
        pytest.param("2026-12-03T20:30:00", "naive", "has no time zone", id="naive-string"),
        pytest.param(
            datetime(2026, 12, 3, 20, 30),  # noqa: DTZ001 (naive on purpose)
            "naive",
            "has no time zone",
            id="naive-datetime",
        ),
        pytest.param("2026-12-01T09:00:00+02:00", "past", "not in the future", id="past"),
        pytest.param("2026-12-01T12:00:00+02:00", "past", "not in the future", id="now"),
        pytest.param(
            "2026-12-05T18:01:00+02:00",
            "beyond_week",
            "after the week boundary",
            id="beyond-by-a-minute",
        ),
        pytest.param(
            "2026-12-09T12:00:00+02:00", "beyond_week", "after the week boundary", id="next-week"
        ),
        pytest.param("next friday", "unparseable", "is not a date and time", id="unparseable"),
        pytest.param(
            "2026-13-40T25:00:00+02:00",
            "unparseable",
            "is not a date and time",
            id="impossible-date",
        ),
    ],
)
def test_burst_chosen_deadline__rejected_with_a_clear_message(value, code, words):
    DrainControl.objects.create(name="halacha")
    with freeze_time(il(2026, 12, 1, 12, 0)), pytest.raises(ValidationError) as caught:
        set_drain_burst(name="halacha", until=value, actor="ops")
    assert caught.value.code == code
    assert words in caught.value.messages[0]
    assert DrainControl.objects.get(name="halacha").burst_until is None
    assert not DrainEvent.objects.exists()


def test_burst_beyond_message__names_the_boundary_in_israel_time():
    with freeze_time(il(2026, 12, 1, 12, 0)), pytest.raises(ValidationError) as caught:
        set_drain_burst(name="halacha", until="2026-12-06T10:00:00+02:00", actor="ops")
    assert "Sat 2026-12-05 18:00" in caught.value.messages[0]


def test_burst_off__writes_null_and_an_event():
    with freeze_time(il(2026, 12, 1, 12, 0)):
        set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="alice")
        state = set_drain_burst(name="halacha", until=None, actor="bob")
    assert state.burst_until is None and not state.active
    assert DrainControl.objects.get(name="halacha").burst_until is None
    events = list(DrainEvent.objects.filter(drain="halacha").order_by("id"))
    assert [(e.kind, e.actor) for e in events] == [("burst_on", "alice"), ("burst_off", "bob")]
    assert datetime.fromisoformat(events[0].data["until"]) == WINTER_BOUNDARY
    assert events[1].data["until"] is None
    assert datetime.fromisoformat(events[1].data["previous"]) == WINTER_BOUNDARY
    assert DrainControl.objects.get(name="halacha").updated_by == "bob"


def test_burst_off__with_no_burst_on_changes_nothing_and_writes_no_event():
    with freeze_time(il(2026, 12, 1, 12, 0)):
        set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="alice")
        set_drain_burst(name="halacha", until=None, actor="bob")
        again = set_drain_burst(name="halacha", until=None, actor="carol")
    assert (again.changed, again.notice, again.active) == (False, "no burst to stop", False)
    assert list(DrainEvent.objects.values_list("kind", flat=True).order_by("id")) == [
        "burst_on", "burst_off"]
    assert DrainControl.objects.get(name="halacha").updated_by == "bob"
    with freeze_time(il(2026, 12, 1, 12, 0)):
        assert burst("halacha", "off") == "halacha: no burst to stop (no change)"
    assert DrainEvent.objects.count() == 2


def test_burst_past_its_deadline__is_off_everywhere_before_it_is_cleared():
    with freeze_time(il(2026, 12, 1, 12, 0)):
        set_drain_burst(name="halacha", until="2026-12-01T13:00:00+02:00", actor="ops")
        assert get_drain_burst("halacha").active
    with freeze_time(il(2026, 12, 1, 13, 0)):
        state = get_drain_burst("halacha")
        assert state.burst_until == utc(2026, 12, 1, 11, 0)  # still stored
        assert not state.active and state.effective_until is None
        assert not get_drain_bursts()["halacha"].active
        cleared = clear_expired_burst(name="halacha", actor="supervisor")
    assert cleared is not None and cleared.burst_until is None
    assert DrainControl.objects.get(name="halacha").burst_until is None
    assert DrainEvent.objects.filter(kind="burst_expired", actor="supervisor").count() == 1


def test_clear_expired_burst__leaves_an_active_burst_alone():
    with freeze_time(il(2026, 12, 1, 12, 0)):
        set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="ops")
        assert clear_expired_burst(name="halacha", actor="supervisor") is None
    assert DrainControl.objects.get(name="halacha").burst_until == WINTER_BOUNDARY


def test_get_drain_bursts__every_registered_drain_in_one_query(django_assert_num_queries):
    with freeze_time(il(2026, 12, 1, 12, 0)):
        set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="ops")
        with django_assert_num_queries(1):
            bursts = get_drain_bursts()
    assert set(bursts) == set(registry.names()) >= {"halacha", "metadata"}
    assert bursts["halacha"].active and not bursts["metadata"].active


def test_burst_unknown_drain__lists_the_known_ones():
    with pytest.raises(registry.UnknownDrain, match="known drains: halacha, metadata"):
        set_drain_burst(name="nope", until=DEFAULT_DEADLINE, actor="ops")


# --- manage.py burst ------------------------------------------------------------------------


def burst(*args) -> str:
    out = StringIO()
    call_command("burst", *args, stdout=out)
    return out.getvalue().strip()


def test_burst_command__on_off_status():
    with freeze_time(il(2026, 12, 1, 12, 0)):
        assert burst("halacha", "status") == "halacha: burst off"
        assert burst("halacha", "on", "--actor", "carol") == (
            "halacha: burst on until Sat 2026-12-05 18:00 IST"
        )
        assert burst("halacha", "status") == "halacha: burst on until Sat 2026-12-05 18:00 IST"
        assert burst("halacha", "on", "--until", "2026-12-02T09:15:00+02:00") == (
            "halacha: burst on until Wed 2026-12-02 09:15 IST"
        )
        assert burst("halacha", "off") == "halacha: burst off"
    events = DrainEvent.objects.filter(drain="halacha").order_by("id")
    assert [e.kind for e in events] == ["burst_on", "burst_on", "burst_off"]
    assert events[0].actor == "carol"
    assert events[1].actor.startswith("cli:")


def test_burst_command__status_after_the_deadline_says_it_passed():
    with freeze_time(il(2026, 12, 1, 12, 0)):
        burst("halacha", "on", "--until", "2026-12-01T12:30:00+02:00")
    with freeze_time(il(2026, 12, 1, 12, 0) + timedelta(hours=1)):
        assert burst("halacha", "status") == (
            "halacha: burst off (the deadline Tue 2026-12-01 12:30 IST has passed)"
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("halacha", "on", "--until", "2026-12-03T20:30:00"), "has no time zone"),
        (("halacha", "on", "--until", "2026-12-01T09:00:00+02:00"), "is not in the future"),
        (("halacha", "on", "--until", "2026-12-07T09:00:00+02:00"), "after the week boundary"),
        (("halacha", "on", "--until", "soon"), "is not a date and time"),
        (("halacha", "off", "--until", "2026-12-03T20:30:00+02:00"), "--until only goes with 'on'"),
        (("nope", "status"), "There is no drain named 'nope'"),
    ],
)
def test_burst_command__bad_input_is_a_command_error_with_the_service_message(args, message):
    with freeze_time(il(2026, 12, 1, 12, 0)), pytest.raises(CommandError, match=message):
        burst(*args)
    assert DrainControl.objects.filter(burst_until__isnull=False).count() == 0


@pytest.mark.django_db(transaction=True)  # the child commits to the test database
def test_burst_command__bad_input_from_the_shell_exits_2_without_a_traceback():
    from tests.support.db import manage

    result = manage("burst", "halacha", "on", "--until", "2026-12-03T20:30:00")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "has no time zone" in result.stderr
    assert "Traceback" not in result.stderr
    assert not DrainControl.objects.filter(burst_until__isnull=False).exists()
