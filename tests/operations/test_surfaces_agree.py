"""Admin, API, page and CLI are one control path: the same toggles leave identical state and
identical events (G2)."""

from __future__ import annotations

import re
from io import StringIO

from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from drains.models import DrainControl, DrainEvent

CHOSEN = "2026-12-04T14:30:00+02:00"  # Fri 14:30 Asia/Jerusalem
BURST = "/api/operations/drains/halacha/burst"


def via_api(operator):
    client = APIClient()
    client.force_login(operator)
    for body in ({"on": True}, {"on": True, "until": CHOSEN}, {"on": False}):
        assert client.post(BURST, body, format="json").status_code == 200


def via_page(operator):
    # Exactly what operations.js sends: JSON, the session cookie and the page's CSRF token.
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    html = client.get("/operations").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    for body in ({"on": True}, {"on": True, "until": CHOSEN}, {"on": False}):
        response = client.post(BURST, body, content_type="application/json",
                               headers={"X-CSRFToken": token})
        assert response.status_code == 200, response.content


def via_admin(operator):
    client = Client()
    client.force_login(operator)
    pk = DrainControl.objects.get_or_create(name="halacha")[0].pk
    changelist = "/admin/drains/draincontrol/"
    response = client.post(changelist, {"action": "start_burst_until_week_boundary",
                                        "_selected_action": [pk]})
    assert response.status_code == 302
    response = client.post(f"{changelist}{pk}/change/",
                           {"burst_until_0": "2026-12-04", "burst_until_1": "14:30:00"})
    assert response.status_code == 302
    response = client.post(changelist, {"action": "stop_burst", "_selected_action": [pk]})
    assert response.status_code == 302


def via_cli(operator):
    out = StringIO()
    call_command("burst", "halacha", "on", "--actor", operator.username, stdout=out)
    call_command("burst", "halacha", "on", "--until", CHOSEN, "--actor", operator.username, stdout=out)
    call_command("burst", "halacha", "off", "--actor", operator.username, stdout=out)


def observe():
    control = DrainControl.objects.get(name="halacha")
    events = list(
        DrainEvent.objects.order_by("id").values("drain", "kind", "actor", "message", "data", "at")
    )
    return {"burst_until": control.burst_until, "updated_by": control.updated_by,
            "enabled": control.enabled}, events


def test_admin_api_page_and_cli_leave_identical_state_and_events(operator, frozen):
    seen = {}
    for name, surface in (("api", via_api), ("page", via_page), ("admin", via_admin),
                          ("cli", via_cli)):
        DrainEvent.objects.all().delete()
        DrainControl.objects.all().delete()
        surface(operator)
        seen[name] = observe()
    state, events = seen["api"]
    assert state == {"burst_until": None, "updated_by": "olga", "enabled": True}
    assert [(e["kind"], e["message"]) for e in events] == [
        ("burst_on", "burst on until Sat 2026-12-05 18:00 IST"),
        ("burst_on", "burst on until Fri 2026-12-04 14:30 IST"),
        ("burst_off", "burst stopped"),
    ]
    assert all(e["actor"] == "olga" for e in events)
    for name in ("page", "admin", "cli"):
        assert seen[name] == seen["api"], name
