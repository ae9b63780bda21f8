"""The evaluations on the API and the page, and choosing one for the drains: audited, refused
for another backend, and what the drains' next call then sends."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.test import Client

from drains.models import DrainEvent, EventKind
from halacha.drain import HalachaDrain
from halacha.models import CourtDecision, Evaluation
from tests.support.anthropic_stub import AnthropicStub, StubResponse, message_body

pytestmark = pytest.mark.django_db(transaction=True)

USE = "/api/operations/evaluations/use"


@pytest.fixture
def sdk(monkeypatch, settings):
    """The SDK against a stand-in answering every call with no halacha, in the model asked."""
    def respond(request) -> StubResponse:
        return StubResponse(200, message_body(json.dumps({"halachot": []}),
                                              model=request.body["model"]))

    with AnthropicStub(responder=respond) as stub:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.url)
        settings.HALACHA_EXTRACTOR = "anthropic"
        settings.ANTHROPIC_API_KEY = "sk-ant-test-key"
        settings.HALACHA_MODEL = "claude-sonnet-4-6"
        yield stub


def _evaluate(*args: str) -> Evaluation:
    call_command("evaluate", "--limit", "2", *args, stdout=io.StringIO(), stderr=io.StringIO())
    return Evaluation.objects.latest("id")


def test_the_api_lists_each_configuration_and_choosing_one_changes_what_the_drains_send(
    api, sdk, settings
):
    sonnet = _evaluate("--backend", "anthropic")
    haiku = _evaluate("--backend", "anthropic", "--model", "claude-haiku-4-5", "--effort", "low")
    offline = _evaluate("--backend", "offline")
    listed = api.get("/api/operations/evaluations").json()
    rows = {r["configuration"]: r for r in listed["configurations"]}
    assert set(rows) == {"anthropic:claude-sonnet-4-6", "anthropic:claude-haiku-4-5:low",
                         "offline:cue-rules-1"}
    assert listed["in_use"] == "anthropic:claude-sonnet-4-6"
    assert rows["anthropic:claude-sonnet-4-6"]["in_use"] is True
    assert rows["anthropic:claude-haiku-4-5:low"]["decisions"] == 2

    # Another backend's evaluation cannot be chosen: the drains run on anthropic.
    refused = api.post(USE, {"evaluation": offline.pk}, format="json")
    assert refused.status_code == 409
    assert "ran on the offline backend and the drains run on anthropic" in refused.json()[
        "error"]["message"]
    assert api.post(USE, {"evaluation": "x"}, format="json").status_code == 400

    done = api.post(USE, {"evaluation": haiku.pk}, format="json")
    assert done.status_code == 200, done.content
    assert done.json()["message"] == (f"the drains now run anthropic:claude-haiku-4-5:low "
                                      f"(evaluation {haiku.pk}) from their next run")
    events = DrainEvent.objects.filter(kind=EventKind.MODEL_CHOSEN).order_by("drain")
    assert [(e.drain, e.actor, e.data["model"], e.data["effort"]) for e in events] == [
        ("halacha", "olga", "claude-haiku-4-5", "low"), ("metadata", "olga", "claude-haiku-4-5",
                                                         "low")]
    assert HalachaDrain.extractor_label() == "anthropic:claude-haiku-4-5:low"
    assert api.get("/api/operations/evaluations").json()["in_use"] == \
        "anthropic:claude-haiku-4-5:low"

    # The drains' next call asks for the chosen model and effort.
    CourtDecision.objects.create(external_id="after-choice", text="We hold that rules bind.")
    call_command("drain_halacha", "--trigger", "manual", stdout=io.StringIO(),
                 stderr=io.StringIO())
    body = sdk.requests[-1].body
    assert (body["model"], body["output_config"]["effort"]) == ("claude-haiku-4-5", "low")

    # Back to the settings' model, by the command this time.
    out = io.StringIO()
    call_command("evaluate", "--use-settings", "--actor", "olga", stdout=out)
    assert out.getvalue().strip() == ("the drains now run the settings' model and effort from "
                                      "their next run")
    assert HalachaDrain.extractor_label() == "anthropic:claude-sonnet-4-6"
    assert sonnet.label == "anthropic:claude-sonnet-4-6"


def test_the_page_shows_the_table_with_the_one_in_use_and_a_viewer_cannot_choose(
    operator, viewer, settings
):
    settings.HALACHA_EXTRACTOR = "offline"
    _evaluate()
    client = Client()
    client.force_login(operator)
    page = client.get("/operations/evaluations").content.decode()
    assert "offline:cue-rules-1" in page and "in use" in page and "F1" in page
    client.force_login(viewer)
    page = client.get("/operations/evaluations").content.decode()
    assert "You can view only" in page
    refused = client.post(USE, {"evaluation": Evaluation.objects.get().pk},
                          content_type="application/json")
    assert refused.status_code == 403 and not DrainEvent.objects.filter(
        kind=EventKind.MODEL_CHOSEN).exists()
    assert Client().get("/operations/evaluations").status_code == 302  # login first
