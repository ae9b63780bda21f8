"""The run page and the failed list, rendered on the server (their buttons are exercised in
tests/e2e/test_operations_actions.py)."""

from __future__ import annotations

from django.test import Client

from drains.models import StagedResult


def _client(user):
    client = Client()
    client.force_login(user)
    return client


def test_run_page__a_failed_run_shows_its_reason_traceback_and_items(operator, make_run, frozen):
    run = make_run(status="failed", error="ValueError: boom", error_kind="internal",
                   error_traceback="Traceback (most recent call last):\nValueError: boom",
                   items_done=2, items_failed=1, input_tokens=1234, cost_usd="0.02")
    StagedResult.objects.create(drain="halacha", item_key="17", run=run, payload={},
                                created_at=run.started_at)
    html = _client(operator).get(f"/operations/runs/{run.pk}").content.decode()
    assert "internal error: ValueError: boom" in html
    assert 'id="traceback"' in html and "Traceback (most recent call last):" in html
    assert "2 done · 1 failed" in html and "1234 input" in html and "$0.0200" in html
    assert "item 17 · since Wed 2026-12-02 09:30 IST" in html
    assert "No log here: started from a shell" in html


def test_run_page__unknown_is_404_and_a_non_staff_user_is_sent_to_log_in(operator, non_staff):
    assert _client(operator).get("/operations/runs/999999").status_code == 404
    assert _client(non_staff).get("/operations/runs/1").status_code == 302


def test_failed_page__lists_each_drain_and_filters_by_one(operator, decisions, frozen):
    decisions(failed=2)
    html = _client(operator).get("/operations/failed").content.decode()
    assert 'data-drain="halacha"' in html and 'data-drain="metadata"' in html
    assert '<span data-f="count">2</span>' in html
    only = _client(operator).get("/operations/failed?drain=halacha").content.decode()
    assert 'data-drain="metadata"' not in only
    assert _client(operator).get("/operations/failed?drain=nope").status_code == 404
