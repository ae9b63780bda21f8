from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.test import Client
from rest_framework.test import APIClient

from drains.models import DrainControl, DrainEvent
from tests.operations.conftest import BOUNDARY

URL = "/api/operations/drains/{}/burst"
SNAPSHOT = "/api/operations/"


def post(client, body, name="halacha", **kwargs):
    return client.post(URL.format(name), body, format="json", **kwargs)


# --- the contract -------------------------------------------------------------------------------


def test_burst_on__default_deadline_is_the_upcoming_saturday_18(api, frozen):
    response = post(api, {"on": True})
    assert response.status_code == 200
    entry = response.json()
    assert entry["name"] == "halacha"
    assert entry["burst_active"] is True
    assert entry["burst_until"] == "2026-12-05T18:00:00+02:00"
    assert entry["projection"]["deadline_kind"] == "burst"
    control = DrainControl.objects.get(name="halacha")
    assert control.burst_until == BOUNDARY
    assert control.updated_by == "olga"
    event = DrainEvent.objects.get()
    assert (event.kind, event.actor, event.drain) == ("burst_on", "olga", "halacha")
    assert event.data["until"] == BOUNDARY.isoformat()


def test_burst_on__until_a_chosen_time(api, frozen):
    response = post(api, {"on": True, "until": "2026-12-04T14:30:00+02:00"})
    assert response.status_code == 200
    assert response.json()["burst_until"] == "2026-12-04T14:30:00+02:00"


def test_burst_on__until_in_utc_is_shown_in_jerusalem_time(api, frozen):
    response = post(api, {"on": True, "until": "2026-12-04T12:30:00Z"})
    assert response.json()["burst_until"] == "2026-12-04T14:30:00+02:00"


def test_burst_off(api, frozen):
    post(api, {"on": True})
    response = post(api, {"on": False})
    assert response.status_code == 200
    assert response.json()["burst_active"] is False
    assert response.json()["burst_until"] is None
    assert DrainControl.objects.get(name="halacha").burst_until is None
    assert list(DrainEvent.objects.order_by("id").values_list("kind", "actor")) == [
        ("burst_on", "olga"),
        ("burst_off", "olga"),
    ]


def test_burst_off__twice_is_idempotent(api, frozen):
    post(api, {"on": True})
    assert post(api, {"on": False}).json()["changed"] is True
    again = post(api, {"on": False})
    assert again.status_code == 200
    assert (again.json()["changed"], again.json()["notice"]) == (False, "no burst to stop")
    assert list(DrainEvent.objects.values_list("kind", flat=True)) == ["burst_off", "burst_on"]


def test_burst__the_snapshot_shows_the_new_state(api, frozen):
    post(api, {"on": True, "until": "2026-12-03T20:00:00+02:00"})
    services = {s["name"]: s for s in api.get(SNAPSHOT).json()["services"]}
    assert services["halacha"]["burst_until"] == "2026-12-03T20:00:00+02:00"
    assert services["metadata"]["burst_active"] is False


# --- bad input: 400 with a field message, nothing changed -----------------------------------------

BAD = [
    ({"on": True, "until": "next friday"}, "until", "'next friday' is not a date and time"),
    ({"on": True, "until": "2026-12-04T14:30:00"}, "until", "has no time zone. Add a UTC offset"),
    ({"on": True, "until": "2026-12-01T14:30:00+02:00"}, "until", "is not in the future"),
    ({"on": True, "until": "2026-12-05T18:01:00+02:00"}, "until", "is after the week boundary"),
    ({"on": True, "until": "2026-12-12T12:00:00+02:00"}, "until", "is after the week boundary"),
    ({"on": True, "until": "2026-02-30T12:00:00+02:00"}, "until", "is not a date and time"),
    ({"on": "yes"}, "on", "Must be true or false"),
    ({"on": 1}, "on", "Must be true or false"),
    ({"on": None}, "on", "may not be null"),
    ({}, "on", "This field is required"),
    ({"until": "2026-12-04T14:30:00+02:00"}, "on", "This field is required"),
    ({"on": True, "until": 1733300000}, "until", "Must be a string"),
    ({"on": True, "until": ["2026-12-04T14:30:00+02:00"]}, "until", "Must be a string"),
    ({"on": False, "until": "2026-12-04T14:30:00+02:00"}, "until", "A deadline only goes with on=true"),
    ({"on": True, "force": True}, "force", "Unknown field"),
    ([{"on": True}], "non_field_errors", "Expected a dictionary"),
]


@pytest.mark.parametrize(("body", "field", "message"), BAD, ids=[repr(b) for b, _, _ in BAD])
def test_burst__bad_input_is_400_with_a_field_message(api, frozen, body, field, message):
    response = post(api, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    errors = error["fields"]
    assert field in errors, errors
    assert any(message in text for text in errors[field]), errors
    assert message in error["message"]
    assert not DrainControl.objects.filter(burst_until__isnull=False).exists()
    assert not DrainEvent.objects.exists()


def test_burst__past_deadline_message_is_the_service_message_verbatim(api, frozen):
    body = post(api, {"on": True, "until": "2026-12-01T14:30:00+02:00"}).json()
    message = ("The deadline Tue 2026-12-01 14:30 IST is not in the future (now is Wed 2026-12-02 "
               "10:00 IST). Pick a later time.")
    assert body == {"error": {"code": "invalid", "message": f"until: {message}",
                              "fields": {"until": [message]}}}


def test_burst__malformed_json_is_400(api, frozen):
    response = api.post(URL.format("halacha"), "{on: true", content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "parse_error"
    assert error["message"].startswith("The body is not valid JSON: Expecting property name")
    assert error["fields"] == {"body": [error["message"]]}


def test_burst__form_encoded_body_is_415(api, frozen):
    response = api.post(URL.format("halacha"), {"on": "true"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert "multipart/form-data" in response.json()["error"]["message"]


def test_burst__unknown_drain_is_404_naming_the_known_ones(api, frozen):
    response = post(api, {"on": True}, name="nope")
    assert response.status_code == 404
    assert response.json() == {"error": {
        "code": "not_found",
        "message": "There is no drain named 'nope'; known drains: halacha, metadata.",
        "fields": {},
    }}
    assert not DrainControl.objects.exists()


def test_burst__get_is_not_allowed(api):
    response = api.get(URL.format("halacha"))
    assert response.status_code == 405
    assert response.json()["error"] == {"code": "method_not_allowed",
                                        "message": 'Method "GET" not allowed.', "fields": {}}
    assert response["Allow"] == "POST, OPTIONS"


# --- who may -------------------------------------------------------------------------------------


def _session(user):
    client = APIClient()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("who", "read", "toggle"),
    [
        ("anonymous", 401, 401),
        ("plain_user", 403, 403),  # logged in, not staff, no permission
        ("staff_without_perm", 403, 403),
        ("viewer", 200, 403),  # staff with view only
        ("operator", 200, 200),  # staff with both
        ("non_staff", 200, 200),  # the API goes by permissions, not by staff status
        ("token", 200, 200),
        ("bad_token", 401, 401),
    ],
)
def test_auth_matrix(request, db, frozen, who, read, toggle):
    if who == "anonymous":
        client = APIClient()
    elif who == "token":
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Token " + request.getfixturevalue("token"))
    elif who == "bad_token":
        request.getfixturevalue("token")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    else:
        client = _session(request.getfixturevalue(who))
    read_response = client.get(SNAPSHOT)
    assert read_response.status_code == read
    toggle_response = post(client, {"on": True})
    assert toggle_response.status_code == toggle
    if toggle == 401:
        assert toggle_response["WWW-Authenticate"] == "Token"
    changed = DrainControl.objects.filter(burst_until__isnull=False).exists()
    assert changed is (toggle == 200)
    if toggle == 200:
        assert DrainEvent.objects.get().actor == ("cronbot" if who == "token" else
                                                  request.getfixturevalue(who).username)
    if read == 403:
        assert "drains.view_draincontrol" in read_response.json()["error"]["message"]
        assert read_response.json()["error"]["code"] == "permission_denied"


def test_csrf__a_session_post_without_the_token_is_refused(operator, frozen):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post(URL.format("halacha"), {"on": True}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert not DrainEvent.objects.exists()


def test_csrf__a_session_post_with_the_page_token_is_accepted(operator, frozen):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    page = client.get("/operations")
    token = page.context["csrf_token"]
    response = client.post(URL.format("halacha"), {"on": True}, content_type="application/json",
                           headers={"X-CSRFToken": str(token)})
    assert response.status_code == 200, response.content


def test_csrf__token_clients_need_no_csrf(token, frozen):
    client = Client(enforce_csrf_checks=True)
    response = client.post(URL.format("halacha"), {"on": False}, content_type="application/json",
                           headers={"Authorization": f"Token {token}"})
    assert response.status_code == 200


def test_burst__moving_a_running_burst_records_the_previous_deadline(api, frozen):
    post(api, {"on": True})
    frozen.tick(timedelta(hours=1))
    post(api, {"on": True, "until": "2026-12-04T09:00:00+02:00"})
    last = DrainEvent.objects.order_by("-id").first()
    assert last.data["until"] == "2026-12-04T09:00:00+02:00"
    assert datetime.fromisoformat(last.data["previous"]) == BOUNDARY
