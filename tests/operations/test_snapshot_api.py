from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from drains.bursts import set_drain_burst, upcoming_week_boundary
from drains.events import record_event
from drains.locks import DrainLock
from drains.models import DrainControl, StagedResult
from drains.schedule import scheduled_jobs
from halacha.drain import HalachaDrain
from tests.operations.conftest import BOUNDARY

URL = "/api/operations/"
ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}:\d{2}$")


def by_name(data):
    return {s["name"]: s for s in data["services"]}


def test_snapshot__one_entry_per_scheduled_job_with_schedule_and_next_fire(api, frozen):
    data = api.get(URL).json()
    services = by_name(data)
    jobs = scheduled_jobs()
    assert len(data["services"]) == len(jobs)
    assert data["generated_at"] == "2026-12-02T10:00:00+02:00"
    assert data["week_boundary"] == BOUNDARY.isoformat()
    halacha = services["halacha"]
    assert halacha["kind"] == "drain"
    assert halacha["command"] == "drain_halacha"
    assert halacha["schedule"] == HalachaDrain.schedule
    assert halacha["next_fire_at"] == "2026-12-02T10:10:00+02:00"
    assert services["supervise_drains"]["kind"] == "supervisor"
    assert services["supervise_drains"]["next_fire_at"] == "2026-12-02T10:05:00+02:00"
    for job in jobs:
        if job.kind == "job":
            assert services[job.name]["kind"] == "job"
            assert services[job.name]["backlog"] is None


def test_snapshot__idle_drain_reports_backlog_counts_and_why_it_is_not_running(
    api, frozen, decisions
):
    decisions(pending=3, done=2, failed=1)
    StagedResult.objects.create(drain="halacha", item_key="d-9", payload={}, created_at=timezone.now())
    halacha = by_name(api.get(URL).json())["halacha"]
    assert halacha["backlog"] == {"pending": 3, "staged": 1, "done": 2, "failed": 1,
                                  "oldest_pending_at": "2026-12-02T10:00:00+02:00"}
    assert halacha["state"] == "idle"
    assert halacha["reason"] == "3 pending; next run Wed 10:10 IST"
    assert halacha["burst_active"] is False and halacha["burst_until"] is None
    assert halacha["current_run"] is None and halacha["last_run"] is None


def test_snapshot__empty_backlog_says_so(api, frozen):
    assert by_name(api.get(URL).json())["halacha"]["reason"] == "backlog empty"


def test_snapshot__burst_until_is_iso_with_offset_and_active(api, frozen, operator, decisions):
    decisions(pending=1)
    set_drain_burst(name="halacha", until=BOUNDARY - timedelta(hours=2), actor="olga")
    halacha = by_name(api.get(URL).json())["halacha"]
    assert halacha["burst_until"] == "2026-12-05T16:00:00+02:00"
    assert halacha["burst_active"] is True
    assert halacha["reason"].startswith("burst until Sat 16:00 IST: 1 pending")


def test_snapshot__expired_burst_is_shown_off_even_before_the_supervisor_clears_it(
    api, frozen
):
    set_drain_burst(name="halacha", until=timezone.now() + timedelta(minutes=5), actor="olga")
    frozen.tick(timedelta(minutes=6))
    halacha = by_name(api.get(URL).json())["halacha"]
    assert DrainControl.objects.get(name="halacha").burst_until is not None
    assert halacha["burst_active"] is False
    assert halacha["burst_until"] is None


def test_snapshot__backing_off_shows_until_and_reason(api, frozen):
    DrainControl.objects.create(
        name="halacha",
        backoff_until=BOUNDARY,
        backoff_reason="weekly limit",
        backoff_observed_at=timezone.now(),
    )
    halacha = by_name(api.get(URL).json())["halacha"]
    assert halacha["state"] == "backing_off"
    assert halacha["reason"] == "backing off until Sat 18:00 IST: weekly limit"
    assert halacha["backoff"] == {
        "until": "2026-12-05T18:00:00+02:00",
        "reason": "weekly limit",
        "observed_at": "2026-12-02T10:00:00+02:00",
        # a backoff written before limit kinds were recorded: no kind to show
        "kind": "",
        "model": "",
        "kind_label": "",
    }


def test_snapshot__disabled(api, frozen):
    from drains.controls import set_drain_enabled

    set_drain_enabled(name="metadata", enabled=False, actor="olga")  # the one write path: an event
    metadata = by_name(api.get(URL).json())["metadata"]
    assert metadata["state"] == "disabled"
    assert metadata["enabled"] is False
    assert "disabled by olga" in metadata["reason"]


def test_snapshot__failing_when_the_last_run_failed(api, frozen, make_run):
    make_run(status="failed", error="ExtractionError: the model said no\nTraceback ...")
    halacha = by_name(api.get(URL).json())["halacha"]
    assert halacha["state"] == "failing"
    assert halacha["reason"] == "last run {} failed at Wed 09:40 IST: ExtractionError: the model said no".format(
        halacha["last_run"]["id"]
    )
    assert halacha["last_run"]["status"] == "failed"
    assert halacha["last_run"]["error"].startswith("ExtractionError")


@pytest.mark.django_db(transaction=True)
def test_snapshot__running_with_progress_and_checkpoint_age_while_the_lock_is_held(
    operator, make_run
):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(operator)
    lock = DrainLock("halacha")
    assert lock.acquire()
    try:
        now = timezone.now()
        run = make_run(status="running", backend_pid=lock.backend_pid, started_at=now - timedelta(minutes=20),
                       last_checkpoint_at=now - timedelta(seconds=40), items_done=30, backlog_at_start=120)
        halacha = by_name(client.get(URL).json())["halacha"]
    finally:
        lock.release()
    assert halacha["state"] == "running"
    assert halacha["reason"].startswith(f"lock held by run {run.pk} on host-a (pid {run.pid}): 30 of 120 done")
    current = halacha["current_run"]
    assert current["id"] == run.pk
    assert current["progress"] == 0.25
    assert 40 <= current["checkpoint_age_seconds"] <= 45
    assert ISO_WITH_OFFSET.match(current["last_checkpoint_at"])


@pytest.mark.django_db(transaction=True)
def test_snapshot__hung_when_no_checkpoint_for_longer_than_the_threshold(operator, make_run):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(operator)
    DrainControl.objects.create(name="halacha", hung_after_seconds=600)
    lock = DrainLock("halacha")
    assert lock.acquire()
    try:
        now = timezone.now()
        make_run(status="running", backend_pid=lock.backend_pid, started_at=now - timedelta(hours=1),
                 last_checkpoint_at=now - timedelta(minutes=15))
        halacha = by_name(client.get(URL).json())["halacha"]
    finally:
        lock.release()
    assert halacha["state"] == "hung"
    assert halacha["reason"].startswith("no checkpoint for 15 min (limit 10 min)")


def test_snapshot__running_row_without_the_lock_is_a_dead_process(api, frozen, make_run):
    make_run(status="running", backend_pid=999_999, last_checkpoint_at=timezone.now())
    halacha = by_name(api.get(URL).json())["halacha"]
    assert halacha["state"] == "failing"
    assert "no longer holds its lock: the process died" in halacha["reason"]


def test_snapshot__jobs_show_their_last_run(api, frozen, make_run):
    make_run(drain="fetch_decisions", status="failed", mode="job", error="feed timed out")
    make_run(drain="send_digest", status="succeeded", mode="job")
    services = by_name(api.get(URL).json())
    assert services["fetch_decisions"]["state"] == "failing"
    assert services["fetch_decisions"]["reason"].endswith("feed timed out")
    assert services["send_digest"]["state"] == "idle"
    assert services["send_digest"]["reason"].startswith("last run succeeded at Wed 09:40 IST; next")


def test_snapshot__notes_and_timeline(api, frozen):
    record_event(drain="halacha", kind="note", message="could not clear the burst: lock timeout",
                 actor="supervisor")
    record_event(drain="", kind="note", message="supervisor failed: database restarted",
                 actor="supervisor")
    record_event(drain="halacha", kind="burst_on", message="burst on", actor="olga")
    data = api.get(URL).json()
    halacha = by_name(data)["halacha"]
    assert [n["message"] for n in halacha["notes"]] == ["could not clear the burst: lock timeout"]
    assert [n["message"] for n in data["notes"]] == ["supervisor failed: database restarted"]
    assert [e["kind"] for e in data["timeline"]] == ["burst_on", "note", "note"]


def test_snapshot__notes_older_than_a_day_are_dropped(api, frozen):
    record_event(drain="halacha", kind="note", message="old", actor="supervisor")
    frozen.tick(timedelta(hours=25))
    assert by_name(api.get(URL).json())["halacha"]["notes"] == []


def test_snapshot__projection_at_the_rate_of_the_last_hour(api, frozen, decisions, make_run):
    decisions(pending=100)
    now = timezone.now()
    # 50 items in the last hour (run spanning exactly it) -> 100 pending done in 2 h.
    make_run(started_at=now - timedelta(hours=1), finished_at=now, items_done=50)
    halacha = by_name(api.get(URL).json())["halacha"]
    projection = halacha["projection"]
    assert projection["rate_per_hour"] == 50.0
    # From the next scheduled run (halacha fires at :10), not from now: 2 h after 10:10.
    assert projection["finish_at"] == "2026-12-02T12:10:00+02:00"
    assert projection["deadline_kind"] == "week"
    assert projection["text"] == "done by Wed 12:10 IST, 3 d 6 h before the weekly reset"
    history = projection["history"]
    assert history[-1]["backlog"] == 100 and history[-2]["backlog"] == 150


def _register_runs(make_run, names, runs_each):
    from drains.models import DrainRun

    now = timezone.now()
    rows = []
    for name in names:
        for i in range(runs_each):
            started = now - timedelta(minutes=15 * (i + 1))
            rows.append(DrainRun(drain=name, host="h", pid=i, started_at=started, status="succeeded",
                                 finished_at=started + timedelta(minutes=5), items_done=3))
    DrainRun.objects.bulk_create(rows)


def test_snapshot__constant_number_of_queries_for_1_vs_many_drains_and_runs(
    api, frozen, make_run, extra_drains, decisions, django_assert_num_queries
):
    from django.test.utils import CaptureQueriesContext

    decisions(pending=2, done=1)
    extra_drains(1)
    _register_runs(make_run, ["halacha", "x00"], 1)
    with CaptureQueriesContext(connection) as small:
        response = api.get(URL)
    assert response.status_code == 200
    few = len(small.captured_queries)

    names = extra_drains(29)
    _register_runs(make_run, names, 40)
    for name in names[:10]:
        record_event(drain=name, kind="note", message="n", actor="supervisor")
    with django_assert_num_queries(few):
        response = api.get(URL)
    services = by_name(response.json())
    assert len(services) == len(scheduled_jobs()) + 30
    assert services["x29"]["last_run"]["items_done"] == 3
    assert services["x29"]["backlog"] == {"pending": 2, "staged": 0, "done": 1, "failed": 0,
                                          "oldest_pending_at": "2026-12-02T10:00:00+02:00"}
    assert services["x29"]["schedule"] is None
    assert "not scheduled" in services["x29"]["reason"]


@pytest.mark.django_db(transaction=True)
def test_snapshot__the_fast_rendering_equals_the_documented_serializers(make_run):
    """as_json (what the API sends) and SnapshotSerializer (what the schema documents) agree on
    a snapshot with every optional part filled in."""
    from operations import selectors
    from operations.serializers import SnapshotSerializer, as_json

    now = timezone.now()
    DrainControl.objects.create(name="metadata", backoff_until=now + timedelta(hours=3),
                                backoff_reason="429", backoff_observed_at=now)
    set_drain_burst(name="halacha", until=upcoming_week_boundary(now), actor="olga")
    lock = DrainLock("halacha")
    assert lock.acquire()
    try:
        make_run(status="running", backend_pid=lock.backend_pid, started_at=now - timedelta(hours=2),
                 last_checkpoint_at=now, items_done=7, backlog_at_start=9, deadline=now)
        make_run(status="failed", error="boom", started_at=now - timedelta(hours=3), items_done=2)
        make_run(drain="send_digest", status="succeeded", mode="job")
        record_event(drain="halacha", kind="note", message="a note", actor="supervisor")
        record_event(drain="", kind="note", message="a global note", actor="supervisor")
        snapshot = selectors.snapshot()
    finally:
        lock.release()
    fast = as_json(snapshot)
    assert fast == SnapshotSerializer(snapshot).data
    halacha = by_name(fast)["halacha"]
    assert halacha["current_run"] and halacha["last_run"] and halacha["notes"]
    assert by_name(fast)["metadata"]["backoff"]
    assert fast["notes"] and fast["timeline"]


@pytest.mark.django_db(transaction=True)
def test_snapshot__same_answer_when_the_database_uses_server_side_binding(make_run):
    """Server-side binding takes one statement per message: the batched reads then run one by
    one and give the same snapshot."""
    from django.db import connection

    from operations import selectors
    from operations.serializers import as_json

    now = timezone.now()
    make_run(status="failed", error="boom", items_done=3, started_at=now - timedelta(minutes=30))
    record_event(drain="halacha", kind="note", message="a note", actor="supervisor")
    batched = as_json(selectors.snapshot(now=now))
    options = connection.settings_dict["OPTIONS"]
    connection.close()
    options["server_side_binding"] = True
    try:
        one_by_one = as_json(selectors.snapshot(now=now))  # batched, this would be refused
    finally:
        connection.close()
        del options["server_side_binding"]
    assert one_by_one == batched
    assert by_name(batched)["halacha"]["notes"][0]["message"] == "a note"


def test_snapshot__a_run_names_the_models_its_calls_used(api, frozen, make_run):
    make_run(
        model_usage={
            "claude-haiku-4-5": {"calls": 1, "input_tokens": 10},
            "claude-sonnet-4-6": {"calls": 7, "input_tokens": 9000, "cost_usd": 0.3},
        }
    )
    make_run(drain="metadata")
    services = by_name(api.get(URL).json())
    assert services["halacha"]["last_run"]["models"] == ["claude-sonnet-4-6", "claude-haiku-4-5"]
    assert services["metadata"]["last_run"]["models"] == []


def test_snapshot__the_oldest_pending_items_arrival_on_each_drain(api, operator, frozen, decisions):
    frozen.tick(-timedelta(hours=5))
    decisions(done=1)  # older, but done: not pending
    frozen.tick(timedelta(hours=2))
    decisions(pending=1)  # the oldest pending: 3 h ago
    frozen.tick(timedelta(hours=3))
    decisions(pending=1)
    halacha = by_name(api.get(URL).json())["halacha"]
    assert halacha["backlog"]["oldest_pending_at"] == "2026-12-02T07:00:00+02:00"
    client = Client()
    client.force_login(operator)
    page = client.get("/operations").content.decode()
    assert "oldest pending since Wed 07:00 IST" in page


def test_snapshot__why_not_run_now_follows_the_operators_rule(api, frozen, decisions):
    """Each drain's ``why_not_run_now`` is what the run-now action would answer (the page's
    button follows it at every refresh): null when it can run, else the reason — a backoff
    observed by another drain on its quota key included."""
    from drains.operator import why_not_run_now
    def why():
        return by_name(api.get(URL).json())["halacha"]["why_not_run_now"]

    assert why() == why_not_run_now("halacha") == "the backlog is empty: nothing to run"
    decisions(pending=1)
    assert why() is None and why_not_run_now("halacha") is None
    assert by_name(api.get(URL).json())["supervise_drains"]["why_not_run_now"] is None
    DrainControl.objects.update_or_create(name="halacha", defaults={"quota_key": "q"})
    DrainControl.objects.update_or_create(name="metadata", defaults={
        "quota_key": "q", "backoff_until": timezone.now() + timedelta(hours=1),
        "backoff_reason": "usage limit reached"})
    assert why() == why_not_run_now("halacha")
    assert why().startswith("a backoff is in force until Wed 2026-12-02 11:00 IST (observed by "
                            "metadata)")
    DrainControl.objects.filter(name="halacha").update(enabled=False)
    assert why() == why_not_run_now("halacha") == "the drain is disabled: enable it first"
