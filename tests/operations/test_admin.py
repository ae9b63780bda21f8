from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from drains.bursts import set_drain_burst
from drains.models import DrainControl, DrainEvent, DrainRun
from halacha.models import CourtDecision, Halacha
from tests.operations.conftest import BOUNDARY


@pytest.fixture
def admin_client_(admin_user):
    client = Client()
    client.force_login(admin_user)
    return client


CHANGELIST = "/admin/drains/draincontrol/"


def _action(client, action, *names):
    pks = [DrainControl.objects.get_or_create(name=n)[0].pk for n in names]
    return client.post(CHANGELIST, {"action": action, "_selected_action": pks}, follow=True)


def test_admin_action__start_burst_until_the_upcoming_saturday_18(admin_client_, frozen):
    response = _action(admin_client_, "start_burst_until_week_boundary", "halacha", "metadata")
    assert response.status_code == 200
    for control in DrainControl.objects.all():
        assert control.burst_until == BOUNDARY
        assert control.updated_by == "admin"
    assert sorted(DrainEvent.objects.values_list("drain", "kind", "actor")) == [
        ("halacha", "burst_on", "admin"),
        ("metadata", "burst_on", "admin"),
    ]
    messages = [str(m) for m in response.context["messages"]]
    assert "halacha: burst on until Sat 2026-12-05 18:00 IST" in messages


def test_admin_action__stop_burst(admin_client_, frozen):
    set_drain_burst(name="halacha", until=BOUNDARY, actor="olga")
    _action(admin_client_, "stop_burst", "halacha")
    assert DrainControl.objects.get(name="halacha").burst_until is None
    assert DrainEvent.objects.order_by("-id").values_list("kind", "actor")[0] == ("burst_off", "admin")


def test_admin_action__a_row_of_an_unregistered_drain_is_reported_not_crashed(admin_client_, frozen):
    response = _action(admin_client_, "start_burst_until_week_boundary", "retired")
    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["retired: There is no drain named 'retired'; known drains: halacha, metadata."]
    assert not DrainEvent.objects.exists()


def _change(client, control, date, time):
    return client.post(
        f"/admin/drains/draincontrol/{control.pk}/change/",
        {"burst_until_0": date, "burst_until_1": time},
    )


def test_admin_form__a_valid_deadline_is_saved_through_the_service(admin_client_, frozen):
    control = DrainControl.objects.create(name="halacha")
    response = _change(admin_client_, control, "2026-12-04", "14:30:00")
    assert response.status_code == 302, response.content.decode()[:2000]
    control.refresh_from_db()
    assert control.burst_until.isoformat() == "2026-12-04T12:30:00+00:00"  # entered as Jerusalem
    event = DrainEvent.objects.get()
    assert (event.kind, event.actor, event.message) == (
        "burst_on", "admin", "burst on until Fri 2026-12-04 14:30 IST"
    )


@pytest.mark.parametrize(
    ("date", "time", "message"),
    [
        ("2026-12-01", "09:00:00", "is not in the future"),
        ("2026-12-05", "18:01:00", "is after the week boundary Sat 2026-12-05 18:00 IST"),
    ],
)
def test_admin_form__the_service_rule_refuses_with_its_message(admin_client_, frozen, date, time, message):
    control = DrainControl.objects.create(name="halacha")
    response = _change(admin_client_, control, date, time)
    assert response.status_code == 200  # the form again, with the error
    assert message in response.content.decode()
    control.refresh_from_db()
    assert control.burst_until is None
    assert not DrainEvent.objects.exists()


def test_admin_form__clearing_the_deadline_stops_the_burst(admin_client_, frozen):
    set_drain_burst(name="halacha", until=BOUNDARY, actor="olga")
    control = DrainControl.objects.get(name="halacha")
    assert _change(admin_client_, control, "", "").status_code == 302
    control.refresh_from_db()
    assert control.burst_until is None
    assert DrainEvent.objects.order_by("-id").first().kind == "burst_off"


def test_admin_form__an_expired_deadline_left_unchanged_saves_without_an_event(admin_client_, frozen):
    set_drain_burst(name="halacha", until=timezone.now() + timedelta(minutes=1), actor="olga")
    frozen.tick(timedelta(minutes=5))
    control = DrainControl.objects.get(name="halacha")
    local = timezone.localtime(control.burst_until)
    response = _change(admin_client_, control, local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S"))
    assert response.status_code == 302
    assert DrainEvent.objects.count() == 1


def test_admin_add__only_registered_drains_without_a_row(admin_client_, frozen):
    DrainControl.objects.create(name="halacha")
    page = admin_client_.get("/admin/drains/draincontrol/add/").content.decode()
    assert '<option value="metadata">' in page and '<option value="halacha">' not in page
    response = admin_client_.post("/admin/drains/draincontrol/add/",
                                  {"name": "metadata", "burst_until_0": "2026-12-03",
                                   "burst_until_1": "08:00:00"})
    assert response.status_code == 302
    assert DrainControl.objects.get(name="metadata").burst_until is not None
    assert DrainEvent.objects.get().drain == "metadata"


def test_admin__controls_cannot_be_deleted(admin_client_, frozen):
    control = DrainControl.objects.create(name="halacha")
    assert admin_client_.get(f"/admin/drains/draincontrol/{control.pk}/delete/").status_code == 403


def test_admin__runs_and_events_are_read_only_with_filters(admin_client_, frozen, make_run):
    run = make_run(status="failed", error="boom")
    make_run(drain="metadata")
    DrainEvent.objects.create(drain="halacha", kind="note", actor="supervisor", message="hello",
                              at=timezone.now())
    listing = admin_client_.get("/admin/drains/drainrun/?status__exact=failed")
    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list) == [run]
    page = admin_client_.get(f"/admin/drains/drainrun/{run.pk}/change/")
    assert page.status_code == 200 and b'type="submit"' not in page.content.split(b"<form")[-1]
    admin_client_.post(f"/admin/drains/drainrun/{run.pk}/change/", {"status": "succeeded"})
    run.refresh_from_db()
    assert run.status == "failed"
    assert admin_client_.get("/admin/drains/drainrun/add/").status_code == 403
    assert admin_client_.get(f"/admin/drains/drainrun/{run.pk}/delete/").status_code == 403
    events = admin_client_.get("/admin/drains/drainevent/?kind=note&drain=halacha")
    assert [e.message for e in events.context["cl"].result_list] == ["hello"]
    assert admin_client_.get("/admin/drains/drainevent/add/").status_code == 403
    assert DrainRun.objects.count() == 2


def test_admin__decisions_and_halachot_are_searchable(admin_client_, db):
    hit = CourtDecision.objects.create(external_id="ISR-2024-17", title="Levi v. Cohen", text="t")
    CourtDecision.objects.create(external_id="ISR-2024-18", title="Other", text="t")
    Halacha.objects.create(decision=hit, ordinal=1, rule="An oral promise binds the promisor",
                           quote="q", extractor="offline")
    decisions = admin_client_.get("/admin/halacha/courtdecision/?q=Levi")
    assert [d.external_id for d in decisions.context["cl"].result_list] == ["ISR-2024-17"]
    halachot = admin_client_.get("/admin/halacha/halacha/?q=oral+promise")
    assert [h.decision_id for h in halachot.context["cl"].result_list] == [hit.pk]
    by_decision = admin_client_.get("/admin/halacha/halacha/?q=ISR-2024-17")
    assert len(by_decision.context["cl"].result_list) == 1
    assert admin_client_.get(f"/admin/halacha/courtdecision/{hit.pk}/change/").status_code == 200


def test_admin__runs_show_the_models_their_calls_used(admin_client_, db):
    DrainRun.objects.create(
        drain="halacha", host="h", pid=1, started_at=timezone.now(), status="succeeded",
        model_usage={"claude-sonnet-4-6": {"calls": 3, "input_tokens": 900, "cost_usd": 0.02}},
    )
    DrainRun.objects.create(drain="metadata", host="h", pid=2, started_at=timezone.now(),
                            status="succeeded")
    listing = admin_client_.get("/admin/drains/drainrun/")
    assert listing.status_code == 200
    cells = dict(
        re.findall(
            r'<td class="field-drain">([^<]*)</td>.*?<td class="field-models_used">([^<]*)</td>',
            listing.content.decode(),
            re.S,
        )
    )
    assert cells == {"halacha": "claude-sonnet-4-6", "metadata": "—"}


# --- the gold set: "add to the gold set" from a decision, checked on every save --------------

GOLD_TEXT = ("Tel Aviv District Court\nCA 12/24\n\nWe hold that notice must be\nwritten. "
             "The tenant argued otherwise. Appeal dismissed.")


def test_admin__a_decision_goes_to_the_gold_set_with_its_halachot_and_evaluate_reads_it(
    admin_client_, db, admin_user
):
    from halacha.evaluation import gold_set
    from halacha.models import GoldEntry

    decision = CourtDecision.objects.create(external_id="ISR-9", text=GOLD_TEXT, language="en")
    start = GOLD_TEXT.index("We hold")
    end = GOLD_TEXT.index("written.") + len("written.")
    Halacha.objects.create(decision=decision, ordinal=1, rule="Notice must be written.",
                           quote=GOLD_TEXT[start:end], quote_spans=[[start, end]],
                           extractor="offline")
    empty = CourtDecision.objects.create(external_id="ISR-10", text="No rule here.")
    response = admin_client_.post("/admin/halacha/courtdecision/", {
        "action": "add_to_gold_set", "_selected_action": [decision.pk, empty.pk]}, follow=True)
    said = [str(m) for m in response.context["messages"]]
    assert any("Added to the gold set: ISR-9" in m for m in said), said
    assert any("ISR-10 was not added: gold entry ISR-10: halachot: must be a non-empty" in m
               for m in said), said
    entry = GoldEntry.objects.get()
    assert entry.halachot == [{"rule": "Notice must be written.", "quote": GOLD_TEXT[start:end],
                               "span": [start, end]}]
    assert entry.added_by == admin_user.username
    assert [d.id for d in gold_set()][-1] == "ISR-9"

    # An edit that breaks a span is refused, saying which and why; a good one is kept.
    url = f"/admin/halacha/goldentry/{entry.pk}/change/"
    form = {"external_id": "ISR-9", "language": "en", "title": "", "court": "",
            "case_number": "", "decided_on": "", "text": GOLD_TEXT, "notes": "checked",
            "halachot": json.dumps([{"rule": "r", "quote": "We hold", "span": [0, 7]}])}
    refused = admin_client_.post(url, form)
    assert refused.status_code == 200
    assert "halachot[0]" in refused.content.decode() and not GoldEntry.objects.filter(
        notes="checked").exists()
    form["halachot"] = json.dumps([{"rule": "r", "quote": "We hold", "span": [start, start + 7]}])
    assert admin_client_.post(url, form).status_code == 302
    assert GoldEntry.objects.get().notes == "checked"


def test_admin__only_who_may_add_gold_set_decisions_may_add_to_the_gold_set(db, django_user_model):
    from django.contrib.auth.models import Permission

    from halacha.models import GoldEntry

    clerk = django_user_model.objects.create_user("clerk", password="pw-clerk", is_staff=True)
    clerk.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_courtdecision", "change_courtdecision"]))
    decision = CourtDecision.objects.create(external_id="ISR-11", text=GOLD_TEXT, language="en")
    client = Client()
    client.force_login(clerk)
    listing = client.get("/admin/halacha/courtdecision/").content.decode()
    assert "add_to_gold_set" not in listing
    client.post("/admin/halacha/courtdecision/", {
        "action": "add_to_gold_set", "_selected_action": [decision.pk]})
    assert not GoldEntry.objects.exists()
