"""The operator's actions through the API: permissions, CSRF for session auth, JSON errors,
idempotence and the audit event of each (drains/operator.py, drains/controls.py,
drains/retries.py); the run's detail and the failed list."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from drains.models import DrainControl, DrainEvent, DrainRun, Item
from drains.quota.backoff import record_backoff
from drains.selectors import probe_evidence
from halacha.models import CourtDecision
from tests.support.items import state

DRAIN = "/api/operations/drains/halacha/{}"
ACTIONS = ["enabled", "run-now", "retry-now", "retry-failed"]
BODIES = {"enabled": {"enabled": False}, "run-now": {}, "retry-now": {}, "retry-failed": {}}


def post(client, path, body=None, **kwargs):
    return client.post(path, body if body is not None else {}, format="json", **kwargs)


def kinds() -> list[str]:
    return list(DrainEvent.objects.order_by("id").values_list("kind", flat=True))


@pytest.fixture
def backoff(frozen):
    record_backoff(drain="halacha", quota_key="q", reset_at=timezone.now() + timedelta(hours=2),
                   reason="usage limit reached")


# --- permissions, CSRF --------------------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_actions__a_view_only_user_is_refused_and_told_the_permission(viewer, frozen, action):
    client = APIClient()
    client.force_login(viewer)
    response = post(client, DRAIN.format(action), BODIES[action])
    assert response.status_code == 403
    assert "drains.change_draincontrol" in response.json()["error"]["message"]
    assert kinds() == []


@pytest.mark.parametrize("action", ACTIONS)
def test_actions__anonymous_is_401(db, action):
    response = post(APIClient(), DRAIN.format(action), BODIES[action])
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("action", ACTIONS)
def test_actions__a_session_post_without_the_csrf_token_is_refused(operator, frozen, action):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post(DRAIN.format(action), BODIES[action], content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["error"]["message"]
    assert kinds() == []


def test_actions__an_unknown_drain_is_a_json_404(api, frozen):
    response = post(api, "/api/operations/drains/nope/run-now")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_actions__an_unknown_field_is_a_json_400(api, frozen):
    response = post(api, DRAIN.format("retry-now"), {"force": True})
    assert response.status_code == 400
    assert "Unknown field(s): force" in response.json()["error"]["fields"]["body"][0]


# --- enable / disable -----------------------------------------------------------------------------


def test_enabled__disable_with_a_reason_then_again_is_no_change(api, frozen):
    response = post(api, DRAIN.format("enabled"), {"enabled": False, "reason": "key rotated"})
    assert response.status_code == 200
    assert response.json()["changed"] is True
    assert DrainControl.objects.get(name="halacha").enabled is False
    event = DrainEvent.objects.get()
    assert (event.kind, event.actor, event.message) == ("disabled", "olga",
                                                        "drain disabled: key rotated")
    again = post(api, DRAIN.format("enabled"), {"enabled": False})
    assert again.status_code == 200
    assert (again.json()["changed"], again.json()["message"]) == (
        False, "halacha: already disabled (no change)")
    assert kinds() == ["disabled"]


def test_enabled__a_reason_too_long_is_refused(api, frozen):
    response = post(api, DRAIN.format("enabled"), {"enabled": False, "reason": "x" * 501})
    assert response.status_code == 400
    assert "reason" in response.json()["error"]["fields"]
    assert DrainControl.objects.filter(name="halacha", enabled=False).count() == 0


def test_enabled__a_token_client_needs_no_csrf(token, frozen):
    client = Client(enforce_csrf_checks=True)
    response = client.post(DRAIN.format("enabled"), {"enabled": False},
                           content_type="application/json", headers={"Authorization": f"Token {token}"})
    assert response.status_code == 200
    assert DrainEvent.objects.get().actor == "cronbot"


# --- retry now ------------------------------------------------------------------------------------


def test_retry_now__clears_the_backoff_the_next_run_probes_and_again_is_409(api, backoff):
    response = post(api, DRAIN.format("retry-now"))
    assert response.status_code == 200, response.content
    assert "the next run probes the quota" in response.json()["message"]
    assert DrainControl.objects.get(name="halacha").backoff_until is None
    event = DrainEvent.objects.filter(kind="retry_now").get()
    assert event.actor == "olga"
    # The operator's reset is the quota's latest: a probe is due (drains/rules.py probe_due).
    evidence = probe_evidence(drain="halacha", quota_key="q")
    assert evidence.backoff_until == timezone.now()
    again = post(api, DRAIN.format("retry-now"))
    assert again.status_code == 409
    assert again.json()["error"] == {"code": "conflict", "message": "halacha: no backoff to clear.",
                                     "fields": {}}
    assert kinds().count("retry_now") == 1


# --- run now --------------------------------------------------------------------------------------


def test_run_now__refused_while_a_backoff_is_in_force(api, backoff):
    CourtDecision.objects.create(external_id="d1", text="t")
    response = post(api, DRAIN.format("run-now"))
    assert response.status_code == 409
    assert "a backoff is in force until Wed 2026-12-02 12:00 IST" in response.json()["error"]["message"]
    assert not DrainRun.objects.exists() and "run_now" not in kinds()


def test_run_now__refused_when_disabled_or_empty(api, frozen):
    response = post(api, DRAIN.format("run-now"))
    assert response.status_code == 409
    assert "the backlog is empty" in response.json()["error"]["message"]
    post(api, DRAIN.format("enabled"), {"enabled": False})
    response = post(api, DRAIN.format("run-now"))
    assert "the drain is disabled: enable it first" in response.json()["error"]["message"]


def test_run_now__refused_just_before_its_scheduled_run(api, decisions, settings):
    decisions(pending=1)
    from datetime import datetime

    from freezegun import freeze_time

    from tests.operations.conftest import JERUSALEM
    with freeze_time(datetime(2026, 12, 2, 10, 9, tzinfo=JERUSALEM)):  # halacha fires at :10
        response = post(api, DRAIN.format("run-now"))
    assert response.status_code == 409
    assert "its scheduled run starts at Wed 2026-12-02 10:10 IST" in response.json()["error"]["message"]


@pytest.mark.django_db(transaction=True)
def test_run_now__starts_a_manual_run_through_the_start_path(operator, monkeypatch, settings,
                                                           tmp_path):
    from tests.support.db import database_url

    monkeypatch.setenv("DATABASE_URL", database_url())
    monkeypatch.setenv("HALACHA_EXTRACTOR", "tests.support.extractors:InstantExtractor")
    settings.DRAINS_LOG_DIR = tmp_path
    # Real time: keep the drain's cron minute (:10/:25/:40/:55) from refusing the start.
    settings.CRONJOBS = [job for job in settings.CRONJOBS if job[2] != ["drain_halacha"]]
    for i in range(2):
        CourtDecision.objects.create(external_id=f"d{i}", text="We hold that rule binds.",
                                     text_sha256=f"{i:064d}")
    client = APIClient()
    client.force_login(operator)
    response = post(client, DRAIN.format("run-now"))
    assert response.status_code == 200, response.content
    assert response.json()["message"].startswith("run now: started drain_halacha (pid ")
    limit = time.monotonic() + 60
    while time.monotonic() < limit and not DrainRun.objects.filter(finished_at__isnull=False).exists():
        time.sleep(0.1)
    run = DrainRun.objects.get()
    assert (run.trigger, run.status, run.items_done) == ("manual", "succeeded", 2)
    assert DrainEvent.objects.get(kind="run_now").actor == "olga"
    assert (tmp_path / "halacha-manual.log").exists()
    detail = client.get(f"/api/operations/runs/{run.pk}").json()
    assert detail["log"]["path"].endswith("halacha-manual.log")
    assert any("run" in line for line in detail["log"]["lines"])


# --- stop a run -----------------------------------------------------------------------------------


def test_stop_run__sigterm_to_a_process_on_this_host_then_409(api, make_run, frozen):
    import socket

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = make_run(status="running", host=socket.gethostname(), pid=child.pid)
        response = post(api, f"/api/operations/runs/{run.pk}/stop")
        assert response.status_code == 200, response.content
        assert f"SIGTERM sent to pid {child.pid}" in response.json()["message"]
        assert child.wait(timeout=10) == -15
        event = DrainEvent.objects.get(kind="stop_run")
        assert (event.actor, event.run_id) == ("olga", run.pk)
    finally:
        child.kill()
    run.status, run.finished_at = "stopped", timezone.now()
    run.save()
    again = post(api, f"/api/operations/runs/{run.pk}/stop")
    assert again.status_code == 409
    assert again.json()["error"]["message"] == f"run {run.pk} is not running (it stopped): nothing to stop."
    assert kinds() == ["stop_run"]


def test_stop_run__on_another_host_fences_its_lock_session(api, make_run, frozen):
    run = make_run(status="running", host="elsewhere", backend_pid=None)
    response = post(api, f"/api/operations/runs/{run.pk}/stop")
    assert response.status_code == 200
    assert "not this host" in response.json()["message"]
    assert DrainEvent.objects.get().kind == "stop_run"


def test_stop_run__unknown_run_is_404(api, frozen):
    assert post(api, "/api/operations/runs/999999/stop").status_code == 404


# --- failed items ---------------------------------------------------------------------------------


def test_retry_failed__one_then_all_then_nothing(api, decisions, frozen):
    decisions(failed=3)
    Item.objects.filter(drain="halacha").update(last_error="the reply is not JSON")
    listed = api.get("/api/operations/failed?drain=halacha").json()["drains"][0]
    assert listed["count"] == 3
    assert listed["items"][0]["attempts"] == 3
    assert listed["items"][0]["error"] == "the reply is not JSON"
    first = listed["items"][0]["key"]
    one = post(api, DRAIN.format("retry-failed"), {"items": [first]})
    assert one.status_code == 200 and one.json()["data"]["items"] == [first]
    assert state("halacha", int(first)) == ("pending", 0, "the reply is not JSON")
    rest = post(api, DRAIN.format("retry-failed"))
    assert rest.json()["message"] == "halacha: 2 failed items back in the backlog"
    nothing = post(api, DRAIN.format("retry-failed"))
    assert (nothing.status_code, nothing.json()["changed"]) == (200, False)
    events = DrainEvent.objects.filter(kind="retried").order_by("id")
    assert [(e.actor, e.data["count"]) for e in events] == [("olga", 1), ("olga", 2)]


# --- a run's detail ---------------------------------------------------------------------------------


def test_run_detail__staff_see_the_traceback_a_script_does_not(api, make_run, token, frozen):
    run = make_run(status="failed", error="ValueError: boom", error_kind="internal",
                   error_traceback="Traceback (most recent call last):\n  ...\nValueError: boom")
    staff = api.get(f"/api/operations/runs/{run.pk}").json()
    assert staff["reason"] == "internal error: ValueError: boom"
    assert staff["traceback"].startswith("Traceback")
    assert staff["url"] == f"/operations/runs/{run.pk}"
    script = Client().get(f"/api/operations/runs/{run.pk}",
                          headers={"Authorization": f"Token {token}"}).json()
    assert script["traceback"] is None and script["error"] == "ValueError: boom"
    assert api.get("/api/operations/runs/999999").status_code == 404


def test_snapshot__runs_carry_their_page_url(api, make_run, frozen):
    run = make_run()
    halacha = next(s for s in api.get("/api/operations/").json()["services"] if s["name"] == "halacha")
    assert halacha["last_run"]["url"] == f"/operations/runs/{run.pk}"
