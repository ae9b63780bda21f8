"""The operator's part of the gold set: decisions checked by hand, added from the admin with
their stored halachot as the answer to start from (``GoldEntry``), validated as the shipped
files are (halacha/gold.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from halacha import gold as goldset
from halacha.models import CourtDecision, GoldEntry

NOTE = ("Added from the halachot stored for {external_id} by {actor}: check each rule against "
        "the decision, and that each span covers the passage that grounds it, then save.")


def check(fields: dict[str, Any]) -> goldset.GoldDecision:
    """An entry's fields as a gold decision, or GoldSetError saying what is wrong."""
    data = {**fields, "id": fields.get("external_id", ""),
            "decided_on": fields["decided_on"].isoformat() if fields.get("decided_on") else None}
    data.pop("external_id", None)
    return goldset.from_data(data, where=f"gold entry {data['id']}")


def answer(decision: CourtDecision) -> list[dict[str, Any]]:
    """The decision's stored halachot as gold halachot: each rule, and the one span from its
    first passage's start to its last one's end (an ellipsis quote's gap included)."""
    halachot = []
    for halacha in decision.halachot.order_by("ordinal"):
        spans = halacha.quote_spans or []
        if not spans:
            continue
        start, end = min(s for s, _ in spans), max(e for _, e in spans)
        halachot.append({"rule": halacha.rule, "quote": decision.text[start:end],
                         "span": [start, end]})
    return halachot


def add_decisions(decisions: Iterable[CourtDecision], *, actor: str) -> tuple[list[str], list[str]]:
    """Add ``decisions`` to the gold set; (the ids added, a line per decision left out and why)."""
    added, skipped = [], []
    for decision in decisions:
        if GoldEntry.objects.filter(external_id=decision.external_id).exists():
            skipped.append(f"{decision.external_id} is in the gold set already.")
            continue
        fields = {
            "external_id": decision.external_id, "language": decision.language,
            "title": decision.title, "court": decision.court,
            "case_number": decision.case_number, "decided_on": decision.decided_on,
            "text": decision.text, "halachot": answer(decision),
            "notes": NOTE.format(external_id=decision.external_id, actor=actor),
        }
        try:
            check(fields)
        except goldset.GoldSetError as exc:
            skipped.append(f"{decision.external_id} was not added: {exc}")
            continue
        with transaction.atomic():
            GoldEntry.objects.create(**fields, added_by=actor)
        added.append(decision.external_id)
    return added, skipped
