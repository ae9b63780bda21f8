"""Every /api/ error is JSON in one shape: {"error": {"code", "message", "fields"}}.

One test per input that used to end in a 500 or an HTML page (issue 13, items 1-4), each with its
status and body, and the CLI refusing the same inputs in one line.
"""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import RequestDataTooBig
from django.core.management import CommandError, call_command
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from drains.models import DrainControl, DrainEvent
from operations.errors import MAX_JSON_DEPTH, json_error_view

URL = "/api/operations/drains/halacha/burst"
SNAPSHOT = "/api/operations/"


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert "\n" not in body["error"]["message"]
    return body["error"]


def _nothing_changed():
    assert not DrainControl.objects.filter(burst_until__isnull=False).exists()
    assert not DrainEvent.objects.exists()


# --- item 1: offsets PostgreSQL cannot store ------------------------------------------------------

@pytest.mark.parametrize("offset", ["+16:00", "-16:00", "+23:59"])
def test_offset_beyond_15_59__is_400_with_a_field_message(api, frozen, offset):
    until = f"2026-12-03T14:00:00{offset}"
    error = _error(api.post(URL, {"on": True, "until": until}, format="json"), 400)
    assert error["code"] == "invalid"
    assert error["fields"] == {"until": [
        f"{until} has the UTC offset {offset}, beyond the ±15:59 a time zone can have "
        "(PostgreSQL stores no more). Israel is +02:00 in winter and +03:00 in summer."
    ]}
    _nothing_changed()


def test_offset_of_15_59__is_stored(api, frozen):
    # 2026-12-03T14:00+15:59 is 2026-12-02 22:01 UTC: in the future and before the boundary.
    response = api.post(URL, {"on": True, "until": "2026-12-03T14:00:00+15:59"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["burst_until"] == "2026-12-03T00:01:00+02:00"


# --- item 2: deep nesting ------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1000, 10000, MAX_JSON_DEPTH + 1])
def test_deeply_nested_json__is_400_not_a_recursion_error(api, frozen, depth):
    body = "[" * depth + "]" * depth
    response = api.post(URL, body, content_type="application/json")
    error = _error(response, 400)
    message = (f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels; send a flat object "
               'such as {"on": true}.')
    assert error == {"code": "parse_error", "message": message, "fields": {"body": [message]}}
    _nothing_changed()


def test_nesting_at_the_limit__reaches_the_serializer(api, frozen):
    body = {"on": True, "until": json.loads("[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1))}
    error = _error(api.post(URL, body, format="json"), 400)
    assert error["fields"] == {"until": ["Must be a string: an ISO 8601 date and time with a UTC offset."]}


def test_nan_is_not_json(api, frozen):
    error = _error(api.post(URL, '{"on": true, "until": NaN}', content_type="application/json"), 400)
    assert error["code"] == "parse_error"
    assert "NaN is not a JSON value" in error["message"]


# --- item 3: errors that used to be HTML ---------------------------------------------------------

def test_body_over_the_upload_limit__is_413_json(api, frozen, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = json.dumps({"on": True, "until": "x" * 4096})
    error = _error(api.post(URL, body, content_type="application/json"), 413)
    assert error == {
        "code": "request_too_large",
        "message": "The request body is larger than 2048 bytes; the API's bodies are small JSON "
                   'objects such as {"on": true}.',
        "fields": {},
    }
    _nothing_changed()


def test_a_forced_500_in_an_api_view__is_json_and_logged(api, frozen, monkeypatch, caplog):
    from operations import selectors

    def broken():
        raise RuntimeError("the snapshot query broke")

    monkeypatch.setattr(selectors, "snapshot", broken)
    error = _error(api.get(SNAPSHOT), 500)
    assert error == {
        "code": "server_error",
        "message": "The server failed; the error is in the server log. Try again in a minute.",
        "fields": {},
    }
    # Never swallowed: the traceback is in the log for the operator.
    record = next(r for r in caplog.records if r.name == "operations.errors")
    assert record.levelname == "ERROR"
    assert "GET /api/operations/ failed" in record.getMessage()
    assert "the snapshot query broke" in str(record.exc_info[1])


def test_a_500_outside_any_view__is_json_under_api_and_html_elsewhere():
    factory = RequestFactory()
    view = json_error_view(500)
    response = view(factory.get("/api/operations/"))
    assert response.status_code == 500
    assert json.loads(response.content)["error"]["code"] == "server_error"
    page = view(factory.get("/operations"))
    assert page.status_code == 500
    assert page["Content-Type"].startswith("text/html")


def test_request_data_too_big_outside_a_view__is_413_json():
    response = json_error_view(400)(RequestFactory().post("/api/x"), RequestDataTooBig("big"))
    assert response.status_code == 413
    assert json.loads(response.content)["error"]["code"] == "request_too_large"


def test_unknown_api_path__is_404_json(db):
    error = _error(Client().get("/api/nothing-here/"), 404)
    assert error["code"] == "not_found"
    assert "/api/docs/" in error["message"]


def test_not_authenticated__is_401_json_with_the_challenge(db):
    response = APIClient().get(SNAPSHOT)
    error = _error(response, 401)
    assert error["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


def test_html_accept__is_still_json(api):
    response = api.get(SNAPSHOT, HTTP_ACCEPT="text/html")
    error = _error(response, 406)
    assert error["code"] == "not_acceptable"


# --- item 4: non-ASCII digits --------------------------------------------------------------------

@pytest.mark.parametrize("until", [
    "٢٠٢٦-١٢-٠٣T١٤:٠٠:٠٠+٠٢:٠٠",  # Arabic-Indic digits
    "2026-12-03T14:00:00+0２:00",  # one full-width digit
    "２０２６-12-03T14:00:00+02:00",
])
def test_non_ascii_digits__are_400(api, frozen, until):
    error = _error(api.post(URL, {"on": True, "until": until}, format="json"), 400)
    assert error["fields"]["until"] == [
        f"{until!r} contains characters other than ASCII digits, letters and punctuation. Write "
        "the date and time with the digits 0-9, e.g. 2026-12-05T18:00:00+02:00."
    ]
    _nothing_changed()


# --- the CLI refuses the same inputs in one line ---------------------------------------------------

@pytest.mark.parametrize(("until", "expected"), [
    ("2026-12-03T14:00:00+16:00", "has the UTC offset +16:00, beyond the ±15:59"),
    ("2026-12-03T14:00:00-16:00", "has the UTC offset -16:00, beyond the ±15:59"),
    ("٢٠٢٦-١٢-٠٣T١٤:٠٠:٠٠+٠٢:٠٠", "contains characters other than ASCII digits"),
])
def test_burst_command__refuses_the_same_inputs_in_one_line(db, frozen, until, expected):
    with pytest.raises(CommandError) as caught:
        call_command("burst", "halacha", "on", "--until", until)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)
    _nothing_changed()
