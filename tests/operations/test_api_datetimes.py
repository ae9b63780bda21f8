"""Every datetime field of the API at the extremes of the calendar and at every UTC offset
Python accepts (generated): a 200 when the time is a valid deadline, else a 400 whose
``fields`` names the field in one line — never a 500, and nothing changed on a 400.

The API's only datetime input is the burst's ``until`` (``BurstInputSerializer``); the test
reads the input serializers so that a new datetime field is not missed silently.
Also: ``Authorization: Bearer <token>`` works as ``Token <token>`` does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.utils.dateparse import parse_datetime
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from drains.models import DrainControl, DrainEvent
from operations import inputs

URL = "/api/operations/drains/halacha/burst"
ONE_DAY = timedelta(hours=23, minutes=59, seconds=59, microseconds=999999)
DATETIME_INPUTS = {"until"}  # every datetime field of an input serializer, by name


def test_the_inputs_have_no_other_datetime_field():
    found = {
        name for name, field in inputs.BurstInputSerializer().fields.items()
        if isinstance(field, inputs.StrictStringField | inputs.serializers.DateTimeField)
    }
    assert found == DATETIME_INPUTS


@pytest.fixture
def unthrottled(settings):
    """Hundreds of requests in seconds: the throttles are tested on their own."""
    settings.DRAINS_API_THROTTLE_RATES = dict.fromkeys(settings.DRAINS_API_THROTTLE_RATES, None)


def _post(api, until: str):
    return api.post(URL, {"on": True, "until": until}, format="json")


def _check(response, until: str):
    assert response.status_code in (200, 400), (until, response.status_code, response.content)
    body = response.json()
    if response.status_code == 400:
        error = body["error"]
        assert list(error["fields"]) == ["until"], body
        (message,) = error["fields"]["until"]
        assert message and "\n" not in message
        assert not DrainControl.objects.filter(burst_until__isnull=False).exists()
        assert not DrainEvent.objects.exists()
    else:
        stored = parse_datetime(body["burst_until"])
        assert stored == parse_datetime(until).replace(microsecond=stored.microsecond)
        DrainControl.objects.all().delete()
        DrainEvent.objects.all().delete()


offsets = st.timedeltas(min_value=-ONE_DAY, max_value=ONE_DAY)
moments = st.datetimes()  # naive, year 1 to 9999: the offset is drawn on its own
EXTREMES = [
    datetime.min.replace(tzinfo=timezone(ONE_DAY)), datetime.min.replace(tzinfo=timezone(-ONE_DAY)),
    datetime.max.replace(tzinfo=timezone(ONE_DAY)), datetime.max.replace(tzinfo=timezone(-ONE_DAY)),
    datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=15, minutes=59))),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=15, minutes=59))),
]


@hsettings(max_examples=150, deadline=None, database=None,
           suppress_health_check=list(HealthCheck))
@given(moment=moments, offset=offsets)
@example(moment=datetime(2026, 12, 3, 14, 0), offset=timedelta(hours=2))  # noqa: DTZ001 - valid
@example(moment=datetime(2026, 12, 3, 14, 0), offset=timedelta(hours=2, seconds=1))  # noqa: DTZ001
def test_until__any_moment_at_any_offset(api, frozen, unthrottled, moment, offset):
    until = moment.replace(tzinfo=timezone(offset)).isoformat()
    _check(_post(api, until), until)


@pytest.mark.parametrize("moment", EXTREMES, ids=lambda m: m.isoformat())
def test_until__the_edges_of_the_calendar_are_400(api, frozen, unthrottled, moment):
    until = moment.isoformat()
    response = _post(api, until)
    _check(response, until)
    assert response.status_code == 400


@pytest.mark.parametrize("scheme", ["Token", "Bearer", "bearer"])
def test_a_token_works_under_either_scheme(db, token, scheme):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {token}")
    assert client.get("/api/operations/").status_code == 200


def test_a_wrong_bearer_token_is_401_invalid_token(db, token):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token[:-1]}x")
    response = client.get("/api/operations/")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid token."
