"""One clock (drains/clock.py): for one event — a burst until Fri 09:30 — every human-facing
surface (the page, the digest, the commands' output, the event's message) says times in the
operator's zone with its abbreviation, in one notation; the API says them in ISO 8601 with the
offset, the metrics as Unix seconds."""

from __future__ import annotations

import html
import re
from datetime import datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from drains.bursts import set_drain_burst
from drains.models import DrainEvent
from operations.digest import build_digest, render_digest
from operations.metrics import render_metrics
from tests.operations.test_metrics import samples, value

HUMAN = re.compile(r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)(?: \d{4}-\d{2}-\d{2})? \d{2}:\d{2} (?:IST|IDT)\b")
CLOCK = re.compile(r"\b\d{2}:\d{2}\b")
UNTIL = "2026-12-04T09:30:00+02:00"


def assert_one_clock(text: str) -> list[str]:
    """Every hh:mm in ``text`` is part of a human time in the operator zone; returns them."""
    found = HUMAN.findall(text)
    covered = {m.start() + i for m in HUMAN.finditer(text) for i in range(len(m.group()))}
    strays = [m.group() for m in CLOCK.finditer(text) if m.start() not in covered]
    assert strays == [], f"times outside the one format: {strays} in {text!r}"
    assert "+00:00" not in text and " UTC" not in text
    return found


@pytest.fixture
def burst(frozen, make_run):
    make_run(status="failed", error="ValueError: boom", error_kind="internal")
    set_drain_burst(name="halacha", until=UNTIL, actor="olga")


def _page_text(client) -> str:
    page = client.get("/operations").content.decode()
    page = page.split('<script id="snapshot-data"')[0]  # the JSON block is the API's
    text = re.sub(r"<[^>]+>", " ", page)  # attributes (datetime="…") are for machines
    return html.unescape(text)


def test_page__one_format_in_the_operator_zone(operator, burst):
    client = Client()
    client.force_login(operator)
    times = assert_one_clock(_page_text(client))
    assert "Fri 09:30 IST" in times  # the burst cell
    assert "Fri 2026-12-04 09:30 IST" in " ".join(_page_text(client).split())  # its event
    assert "Sat 2026-12-05 18:00 IST" in times  # the quota reset


def test_event_message_digest_and_commands__one_format(burst, token):
    message = DrainEvent.objects.get(kind="burst_on").message
    assert assert_one_clock(message) == ["Fri 2026-12-04 09:30 IST"]
    assert assert_one_clock(render_digest(build_digest())[1])
    outputs = {}
    for args in (("burst", "halacha", "status"), ("schedule",), ("list_tokens", "--user", "cronbot")):
        out = StringIO()
        call_command(*args, stdout=out)
        outputs[args[0]] = out.getvalue()
        assert assert_one_clock(out.getvalue()), args
    assert outputs["burst"].strip() == "halacha: burst on until Fri 2026-12-04 09:30 IST"


def test_api_and_metrics__machine_times(api, burst):
    halacha = next(s for s in api.get("/api/operations/").json()["services"]
                   if s["name"] == "halacha")
    assert halacha["burst_until"] == UNTIL  # ISO 8601 with the offset
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}:\d{2}",
                        halacha["last_run"]["started_at"])
    found = samples(render_metrics().decode())
    assert value(found, "drains_burst_deadline_timestamp_seconds", drain="halacha") == (
        datetime.fromisoformat(UNTIL).timestamp())


def test_admin__times_in_the_one_format(burst, django_user_model):
    admin = django_user_model.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(admin)
    text = html.unescape(re.sub(r"<[^>]+>", " ", client.get("/admin/drains/drainevent/")
                                .content.decode()))
    times = HUMAN.findall(text)
    assert "Wed 2026-12-02 10:00 IST" in times  # the event's "at", in the list
    assert "Fri 2026-12-04 09:30 IST" in times  # and its message
