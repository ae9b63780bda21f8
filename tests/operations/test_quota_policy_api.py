"""POST /api/operations/quota/policy: the quota policy service over REST, with the burst
permissions, the API's JSON errors and the audit event."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from drains.models import DrainControl, DrainEvent, EventKind
from drains.quota.models import QuotaPolicy
from drains.quota.reserve import reserves_for

URL = "/api/operations/quota/policy"
KEY = "claude-cli:/usr/bin/claude"


@pytest.fixture
def known(db):
    DrainControl.objects.create(name="halacha", quota_key=KEY)


def post(client, body):
    return client.post(URL, body, format="json")


def test_set__written_audited_and_answered_with_the_values_in_force(api, known, settings):
    settings.DRAINS_QUOTA_SESSION_RESERVE = 0.0
    response = post(api, {"weekly_reserve": 0.15, "reserve_release_hours": 0, "autopilot": True})
    assert response.status_code == 200, response.content
    assert response.json() == {
        "quota_key": KEY, "weekly_reserve": 0.15, "session_reserve": 0.0,
        "reserve_release_hours": 0.0, "autopilot": True, "defaults": ["session_reserve"],
        "updated_by": "olga",
    }
    assert reserves_for(KEY).weekly == 0.15
    event = DrainEvent.objects.get(kind=EventKind.QUOTA_POLICY)
    assert event.actor == "olga" and event.data["after"]["autopilot"] is True
    # null: back to the setting's default.
    response = post(api, {"quota": KEY, "weekly_reserve": None})
    assert response.json()["weekly_reserve"] == 0.10
    assert "weekly_reserve" in response.json()["defaults"]


BAD = [
    ({"weekly_reserve": 0.95}, "weekly_reserve", "weekly reserve 0.95 is outside 0..0.9"),
    ({"session_reserve": -0.1}, "session_reserve", "is outside 0..0.9"),
    ({"session_reserve": "0.1"}, "session_reserve", "Must be a number"),
    ({"weekly_reserve": True}, "weekly_reserve", "Must be a number"),
    ({"reserve_release_hours": 1000}, "reserve_release_hours", "not a number of hours 0..168"),
    ({"autopilot": "on"}, "autopilot", "Must be true or false"),
    ({"quota": "nope", "weekly_reserve": 0.1}, "quota", "unknown quota key 'nope'"),
    ({"quota": 7, "weekly_reserve": 0.1}, "quota", "Must be a string"),
    ({}, "body", "nothing to change"),
    ({"weekly_reserve": 0.1, "force": True}, "force", "Unknown field"),
]


@pytest.mark.parametrize(("body", "field", "message"), BAD, ids=[repr(b) for b, _, _ in BAD])
def test_bad_input_is_400_with_a_field_message_and_nothing_changed(api, known, body, field,
                                                                    message):
    response = post(api, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert any(message in text for text in error["fields"][field]), error
    assert not QuotaPolicy.objects.exists()
    assert not DrainEvent.objects.exists()


def test_two_keys_need_the_quota_field(api, known):
    DrainControl.objects.create(name="metadata", quota_key="anthropic:abc")
    response = post(api, {"weekly_reserve": 0.2})
    assert response.status_code == 400
    assert "2 quota keys are known" in response.json()["error"]["fields"]["quota"][0]
    assert post(api, {"quota": "anthropic:abc", "weekly_reserve": 0.2}).status_code == 200


def test_the_burst_permission_is_needed(viewer, known):
    client = APIClient()
    client.force_login(viewer)
    response = post(client, {"weekly_reserve": 0.2})
    assert response.status_code == 403
    assert "drains.change_draincontrol" in response.json()["error"]["message"]
    assert post(APIClient(), {"weekly_reserve": 0.2}).status_code == 401
    assert not QuotaPolicy.objects.exists()


def test_the_schema_documents_it(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/operations/quota/policy"]["post"]
    assert operation["operationId"] == "quota_policy"
    assert set(operation["responses"]) >= {"200", "400", "401", "403"}
