"""The web process's log: a 4xx stays out of it; a 403 is one line with its reason; a 5xx
keeps its traceback (config/logfilters.py on django.request)."""

from __future__ import annotations

import logging

from django.test import Client


def _records(caplog):
    return [r for r in caplog.records if r.name == "django.request"]


def test_a_404_is_not_logged(db, caplog):
    with caplog.at_level(logging.INFO):
        assert Client().get("/no-such-page").status_code == 404
    assert _records(caplog) == []


def test_a_403_is_one_info_line_with_the_missing_permission(django_user_model, caplog):
    user = django_user_model.objects.create_user("sam", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    with caplog.at_level(logging.INFO):
        assert client.get("/operations").status_code == 403
    (record,) = _records(caplog)
    assert record.levelno == logging.INFO and record.exc_info is None
    line = logging.Formatter("%(message)s").format(record)
    assert "\n" not in line
    assert line.startswith("Forbidden (Permission denied): /operations: sam lacks the permission")
