"""GET /metrics: known state in, exact sample values out; a constant number of queries; access by
address or bearer token; the alert rules pass `promtool check rules`."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from drains.models import DrainControl, StagedResult
from operations.metrics import render_metrics
from tests.operations.conftest import BOUNDARY
from tests.support.db import ROOT

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(all_samples, name, **labels):
    return all_samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def known_state(frozen, decisions, make_run):
    decisions(pending=7, done=3, failed=2)
    now = timezone.now()
    StagedResult.objects.create(drain="halacha", item_key="d-1", payload={}, created_at=now)
    DrainControl.objects.create(
        name="halacha", burst_until=BOUNDARY, updated_by="olga",
        backoff_until=now + timedelta(hours=2), backoff_reason="429 from the API",
        backoff_observed_at=now,
    )
    DrainControl.objects.create(name="metadata", enabled=False, updated_by="olga")
    make_run("halacha", status="succeeded", items_done=5, input_tokens=1000, output_tokens=200,
             cache_read_input_tokens=50, started_at=now - timedelta(hours=3),
             finished_at=now - timedelta(hours=2, minutes=50))
    make_run("halacha", status="rate_limited", items_done=4, input_tokens=800, output_tokens=100,
             started_at=now - timedelta(minutes=40), finished_at=now - timedelta(minutes=30))
    make_run("supervise_drains", status="succeeded", started_at=now - timedelta(minutes=10),
             finished_at=now - timedelta(minutes=9))
    return now


def test_metrics__known_state_gives_exact_samples(known_state):
    now = known_state
    s = samples(render_metrics().decode())
    assert value(s, "drains_backlog_items", drain="halacha", status="pending") == 7
    assert value(s, "drains_backlog_items", drain="halacha", status="done") == 3
    assert value(s, "drains_backlog_items", drain="halacha", status="failed") == 2
    assert value(s, "drains_backlog_items", drain="halacha", status="staged") == 1
    assert value(s, "drains_staged_rows", drain="halacha") == 1
    assert value(s, "drains_burst_active", drain="halacha") == 1
    assert value(s, "drains_burst_active", drain="metadata") == 0
    assert value(s, "drains_burst_deadline_timestamp_seconds", drain="halacha") == BOUNDARY.timestamp()
    assert value(s, "drains_burst_deadline_timestamp_seconds", drain="metadata") == 0
    assert value(s, "drains_backoff_until_timestamp_seconds", drain="halacha") == (
        now + timedelta(hours=2)).timestamp()
    assert value(s, "drains_backoff_until_timestamp_seconds", drain="metadata") == 0
    assert value(s, "drains_enabled", drain="metadata") == 0
    assert value(s, "drains_items_done_total", drain="halacha") == 9
    assert value(s, "drains_items_done_total", drain="metadata") == 0
    assert value(s, "drains_extractor_tokens_total", drain="halacha", kind="input") == 1800
    assert value(s, "drains_extractor_tokens_total", drain="halacha", kind="output") == 300
    assert value(s, "drains_extractor_tokens_total", drain="halacha", kind="cache_read_input") == 50
    assert value(s, "drains_extractor_tokens_total", drain="halacha", kind="cache_creation_input") == 0
    assert value(s, "drains_run_active", drain="halacha") == 0
    assert value(s, "drains_last_run_finish_timestamp_seconds", drain="halacha",
                 status="rate_limited") == (now - timedelta(minutes=30)).timestamp()
    assert value(s, "drains_last_run_finish_timestamp_seconds", drain="supervise_drains",
                 status="succeeded") == (now - timedelta(minutes=9)).timestamp()
    assert value(s, "drains_service_state", drain="metadata", state="disabled") == 1
    assert value(s, "drains_service_state", drain="halacha", state="backing_off") == 1
    assert value(s, "drains_schema_unapplied_migrations") == 0
    # Only one series per label set: the newest finished run, not one per run.
    assert [k for k in s if k[0] == "drains_last_run_finish_timestamp_seconds"
            and ("drain", "halacha") in k[1]] == [
        ("drains_last_run_finish_timestamp_seconds", (("drain", "halacha"), ("status", "rate_limited")))]


def test_metrics__a_running_run_has_its_checkpoint_age(frozen, make_run):
    now = timezone.now()
    make_run("halacha", status="running", started_at=now - timedelta(minutes=20),
             last_checkpoint_at=now - timedelta(seconds=95))
    s = samples(render_metrics().decode())
    assert value(s, "drains_run_active", drain="halacha") == 1
    assert value(s, "drains_checkpoint_age_seconds", drain="halacha") == 95
    assert not [k for k in s if k[0] == "drains_checkpoint_age_seconds" and ("drain", "metadata") in k[1]]


def test_metrics__query_count_is_the_same_for_2_and_50_drains(known_state, extra_drains, make_run):
    with CaptureQueriesContext(connection) as few:
        render_metrics()
    names = extra_drains(48)
    for name in names:
        make_run(name, status="succeeded", items_done=1, input_tokens=10)
    with CaptureQueriesContext(connection) as many:
        text = render_metrics().decode()
    assert len(many) == len(few)
    s = samples(text)
    assert value(s, "drains_items_done_total", drain=names[-1]) == 1
    assert len([k for k in s if k[0] == "drains_burst_active"]) == 50


# --- access -------------------------------------------------------------------------------------

def test_metrics__open_to_the_allowed_addresses(db, settings):
    settings.DRAINS_METRICS_ALLOWED_IPS = ["10.1.0.0/16"]
    allowed = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")
    assert allowed.status_code == 200
    assert allowed["Content-Type"].startswith("text/plain; version=")
    assert "no-store" in allowed["Cache-Control"]
    assert b"drains_schema_unapplied_migrations 0.0" in allowed.content
    refused = Client(REMOTE_ADDR="10.2.0.1").get("/metrics")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert "DRAINS_METRICS_ALLOWED_IPS" in refused.json()["error"]["message"]


def test_metrics__or_to_the_bearer_token(db, settings):
    settings.DRAINS_METRICS_ALLOWED_IPS = []
    settings.DRAINS_METRICS_TOKEN = "s3cret-scrape-token"
    client = Client(REMOTE_ADDR="192.0.2.10")
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert ok.status_code == 200
    assert b"drains_backlog_items" in ok.content


def test_metrics__only_get(db):
    response = Client().post("/metrics")
    assert response.status_code == 405
    assert response["Allow"] == "GET"


# --- the alert rules ----------------------------------------------------------------------------

def test_alert_rules_pass_promtool():
    assert Path(PROMTOOL).exists(), "promtool is missing: run `make promtool` (Debian's prometheus)"
    result = subprocess.run([PROMTOOL, "check", "rules", str(ROOT / "deploy/prometheus/alerts.yml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 9 rules found" in result.stdout


def test_alert_rules_fire_on_the_metrics_they_watch():
    """promtool's unit tests: each alert fires on a series shaped like the exporter's."""
    result = subprocess.run([PROMTOOL, "test", "rules", str(ROOT / "deploy/prometheus/alerts_test.yml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout

