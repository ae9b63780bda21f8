"""A failed run's one-line, classified reason is what every surface shows: the snapshot (state
reason and last run), the page, ``schedule``, the digest and the metrics — never the first line
of a traceback. The traceback stays on the row (for the run's page)."""

from __future__ import annotations

import importlib
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.test import Client

from drains.models import DrainRun
from operations.digest import build_digest, render_digest
from operations.metrics import render_metrics
from tests.operations.test_metrics import samples

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/halacha/extractors/__init__.py", line 26, in get_extractor\n'
    "    raise ImproperlyConfigured(\n"
    "django.core.exceptions.ImproperlyConfigured: HALACHA_EXTRACTOR='bogus' is not a known backend"
)
REASON = "ImproperlyConfigured: HALACHA_EXTRACTOR='bogus' is not a known backend"
SHOWN = "configuration error: " + REASON


@pytest.fixture
def failed_run(frozen, make_run):
    return make_run(drain="metadata", status="failed", stop_reason="error", error=REASON,
                    error_kind="configuration", error_traceback=TRACEBACK)


def test_snapshot_api__state_reason_and_last_run_carry_the_reason(api, failed_run):
    body = api.get("/api/operations/").json()
    metadata = next(s for s in body["services"] if s["name"] == "metadata")
    assert metadata["state"] == "failing"
    assert metadata["reason"].endswith(": " + SHOWN)
    assert (metadata["last_run"]["error"], metadata["last_run"]["error_kind"]) == (
        REASON, "configuration")
    assert "Traceback" not in str(body)


def test_page__last_run_column_shows_the_reason(operator, failed_run):
    client = Client()
    client.force_login(operator)
    html = client.get("/operations").content.decode()
    row = html.split('data-service="metadata"')[1].split("</tbody>")[0]
    assert SHOWN.replace("'", "&#x27;") in row
    assert "Traceback" not in row


def test_schedule_command__status_is_the_reason(failed_run):
    out = StringIO()
    call_command("schedule", stdout=out)
    line = next(ln for ln in out.getvalue().splitlines() if ln.startswith("drain_metadata"))
    assert line.endswith("failed: " + SHOWN)


def test_digest__failure_line_is_the_reason(failed_run):
    subject, body = render_digest(build_digest())
    assert f"run {failed_run.pk} failed: {SHOWN}" in body
    assert f"http://127.0.0.1:8000/operations/runs/{failed_run.pk}" in body  # its page
    assert "Traceback" not in body


def test_metrics__error_info_names_kind_and_reason(failed_run):
    found = samples(render_metrics().decode())
    assert found[("drains_last_run_error_info", tuple(sorted({
        "drain": "metadata", "run": str(failed_run.pk), "kind": "configuration",
        "reason": REASON}.items())))] == 1


def test_migration_0009__moves_a_stored_traceback_apart(make_run):
    old = make_run(status="failed", error=TRACEBACK)
    plain = make_run(status="crashed", error="process 4242 died without finishing")
    migration = importlib.import_module("drains.migrations.0009_run_error_reason")
    migration.split_tracebacks(django_apps, None)
    old.refresh_from_db()
    plain.refresh_from_db()
    assert old.error == ("django.core.exceptions.ImproperlyConfigured: HALACHA_EXTRACTOR='bogus' "
                         "is not a known backend")
    assert old.error_traceback == TRACEBACK
    assert (plain.error, plain.error_traceback) == ("process 4242 died without finishing", "")
    assert DrainRun.objects.filter(error__startswith="Traceback").count() == 0


def test_admin__the_run_list_links_each_run_page(failed_run, django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(admin)
    html = client.get("/admin/drains/drainrun/").content.decode()
    assert f'<a href="/operations/runs/{failed_run.pk}">run {failed_run.pk}</a>' in html
