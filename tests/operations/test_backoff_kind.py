"""The kind of limit a backoff is for, as operators see it: the snapshot API (its fields and the
state's reason), the daily digest and the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from drains.models import DrainControl
from drains.quota.backoff import record_backoff
from drains.quota.kinds import Kind
from operations.digest import build_digest, render_digest

pytestmark = pytest.mark.django_db


@pytest.fixture
def weekly_opus_backoff():
    DrainControl.objects.create(name="halacha", quota_key="q")
    record_backoff(drain="halacha", quota_key="q", reset_at=timezone.now() + timedelta(hours=30),
                   reason="Opus weekly limit reached ∙ resets Dec 3, 5pm", kind=Kind("weekly_model", "opus"))


def test_the_snapshot_names_the_limit(api, weekly_opus_backoff):
    entry = next(s for s in api.get("/api/operations/").json()["services"] if s["name"] == "halacha")
    backoff = entry["backoff"]
    assert (backoff["kind"], backoff["model"], backoff["kind_label"]) == (
        "weekly_model", "opus", "weekly limit of opus"
    )
    assert entry["state"] == "backing_off"
    assert "(weekly limit of opus): Opus weekly limit reached" in entry["reason"]


def test_the_digest_names_the_limit(weekly_opus_backoff):
    subject, text = render_digest(build_digest())
    assert "backing off until" in text and ", weekly limit of opus" in text


def test_the_admin_lists_the_limit(admin_client, weekly_opus_backoff):
    page = admin_client.get("/admin/drains/draincontrol/").content.decode()
    assert "weekly limit of one model" in page
