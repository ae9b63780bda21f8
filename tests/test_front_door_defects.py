"""The front-door defects of issue 23, one test each (the others live beside their code:
tests/drains/test_runtime.py --concurrency, test_schedule_crontab.py crontab add/run,
tests/operations/test_mint_token.py --days, test_api_datetimes.py Bearer and calendar edges,
tests/halacha/test_import_sweep.py HTML feed / truncated inbox file / exit status,
tests/halacha/test_importer.py duplicates, tests/test_run_demo.py the port,
tests/test_startup.py check --deploy, tests/test_settings_sweep.py FETCH_FEED_URL).

Each refusal: exit status 2, one line naming the argument, nothing written."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from freezegun import freeze_time

from drains.models import DrainControl, DrainEvent, DrainRun
from halacha.models import CourtDecision
from operations.models import ApiToken

pytestmark = pytest.mark.django_db


def refused(*args, **kwargs) -> str:
    with pytest.raises(CommandError) as caught:
        call_command(*args, stdout=io.StringIO(), stderr=io.StringIO(), **kwargs)
    assert caught.value.returncode == 2, caught.value
    message = str(caught.value)
    assert "\n" not in message
    return message


def nothing_written():
    assert not DrainEvent.objects.exists()
    assert not DrainControl.objects.filter(updated_by__gt="").exists()
    assert not DrainRun.objects.exists()


@pytest.mark.parametrize(("command", "action", "length"), [
    ("burst", "off", 500), ("burst", "on", 151), ("drain_enabled", "on", 200),
    ("drain_enabled", "off", 151),
])
def test_an_actor_longer_than_the_column_is_refused(command, action, length):
    message = refused(command, "halacha", action, "--actor", "a" * length)
    assert message.startswith("argument --actor: 'aaaa")
    assert "is too long; give a name of 1 to 150 characters" in message
    nothing_written()


def test_an_actor_of_150_characters_is_stored():
    call_command("drain_enabled", "halacha", "off", "--actor", "a" * 150, stdout=io.StringIO())
    assert DrainEvent.objects.get().actor == "a" * 150


@pytest.mark.parametrize("until", ["", "   "])
def test_burst_on_with_a_blank_until_is_refused_not_the_default(until):
    message = refused("burst", "halacha", "on", "--until", until)
    assert "argument --until:" in message and "is blank" in message
    nothing_written()


@pytest.mark.parametrize("path", ["", " "])
def test_import_decisions_of_a_blank_path_is_refused_not_the_current_folder(path):
    message = refused("import_decisions", path)
    assert "argument PATH:" in message and "is blank (an empty path would mean the current folder)" in message
    assert not CourtDecision.objects.exists()


def test_supervise_drains_trigger_supervisor_lists_the_choices_as_typed():
    message = refused("supervise_drains", "--trigger", "supervisor")
    assert message == (
        "argument --trigger: invalid choice: 'supervisor' (choose from 'cron', 'manual') "
        "(see manage.py supervise_drains --help)"
    )


@pytest.mark.parametrize("url", ["notaurl", "file:///etc/passwd", "ftp://courts.example/feed"])
def test_fetch_decisions_refuses_a_feed_url_that_is_not_http(settings, tmp_path, url):
    settings.FETCH_INBOX_DIR = tmp_path
    settings.FETCH_FEED_URL = url
    message = refused("fetch_decisions")
    assert message.startswith(f"FETCH_FEED_URL: {url!r}") and "give an http:// or https:// URL" in message
    nothing_written()


def test_a_decision_dated_9999_12_31_is_reported_not_imported(tmp_path):
    path = tmp_path / "far.jsonl"
    path.write_text('{"external_id": "far", "text": "t", "decided_on": "9999-12-31"}\n')
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 bad line"):
        call_command("import_decisions", str(path), stdout=io.StringIO(), stderr=err)
    assert f'{path}:1: "decided_on" 9999-12-31 is outside 1800-01-01 to ' in err.getvalue()
    assert not CourtDecision.objects.exists()


def test_list_tokens_marks_an_expired_token(django_user_model):
    django_user_model.objects.create_user("cronbot")
    call_command("mint_token", "cronbot", "--days", "1", stdout=io.StringIO(), stderr=io.StringIO())
    out = io.StringIO()
    with freeze_time(ApiToken.objects.get().expiry + timedelta(seconds=1)):
        call_command("list_tokens", stdout=out)
    assert out.getvalue().rstrip().endswith("(expired)")
