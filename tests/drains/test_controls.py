"""Enabling and disabling a drain: one service, used by the admin and the CLI, audited."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from drains.controls import is_enabled, set_drain_enabled
from drains.models import DrainControl, DrainEvent


def test_disable_then_enable__writes_the_flag_and_one_event_each(db):
    assert is_enabled("halacha")  # no row yet: enabled by default
    assert set_drain_enabled(name="halacha", enabled=False, actor="olga", reason="model misbehaves")
    assert not is_enabled("halacha")
    control = DrainControl.objects.get(name="halacha")
    assert control.updated_by == "olga"
    assert set_drain_enabled(name="halacha", enabled=True, actor="dan")
    assert is_enabled("halacha")
    events = list(DrainEvent.objects.order_by("id").values_list("kind", "actor", "message"))
    assert events == [
        ("disabled", "olga", "drain disabled: model misbehaves"),
        ("enabled", "dan", "drain enabled"),
    ]


def test_repeating_a_switch_is_a_no_op_without_an_event(db):
    set_drain_enabled(name="metadata", enabled=False, actor="olga")
    assert set_drain_enabled(name="metadata", enabled=False, actor="olga") is False
    assert DrainEvent.objects.count() == 1


def test_cli__off_status_on_and_unknown_drain(db, capsys):
    call_command("drain_enabled", "halacha", "off", "--actor", "olga", "--reason", "maintenance")
    call_command("drain_enabled", "halacha", "status")
    call_command("drain_enabled", "halacha", "off", "--actor", "olga")
    out = capsys.readouterr().out.splitlines()
    assert out == ["halacha: disabled", "halacha: disabled", "halacha: disabled (no change)"]
    assert DrainEvent.objects.get().actor == "olga"
    with pytest.raises(CommandError, match="no drain named 'nope'"):
        call_command("drain_enabled", "nope", "on")


def test_admin_actions__disable_and_enable_through_the_service(db, admin_user):
    client = Client()
    client.force_login(admin_user)
    pk = DrainControl.objects.get_or_create(name="halacha")[0].pk
    url = "/admin/drains/draincontrol/"
    client.post(url, {"action": "disable_drains", "_selected_action": [pk]}, follow=True)
    assert DrainControl.objects.get(pk=pk).enabled is False
    response = client.post(url, {"action": "enable_drains", "_selected_action": [pk]}, follow=True)
    assert DrainControl.objects.get(pk=pk).enabled is True
    assert "halacha: enabled" in [str(m) for m in response.context["messages"]]
    assert list(DrainEvent.objects.order_by("id").values_list("kind", "actor")) == [
        ("disabled", "admin"),
        ("enabled", "admin"),
    ]


def test_cli__burst_and_drain_enabled_record_the_same_actor_format(db):
    import getpass

    call_command("drain_enabled", "halacha", "off")
    call_command("burst", "halacha", "on")
    actors = set(DrainEvent.objects.values_list("actor", flat=True))
    assert actors == {f"cli:{getpass.getuser()}"}
