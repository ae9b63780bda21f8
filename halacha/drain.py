"""The halacha and metadata drains, registered with the drains runtime.

Both drains' items are the court decisions (a decision whose text changed is an item again); the
framework keeps which are pending, done or failed (drains/items.py). HalachaDrain makes one
extractor call per decision (``HALACHA_EXTRACTOR``), the reply staged by the runtime, then
promoted into Halacha rows. Promotion is a classmethod that needs no extractor, so the
supervisor can promote leftovers at zero quota. This module imports no extractor backend at
import time: only ``make_extractor``/``process`` load one.

MetadataDrain works off the same decisions through the same backends' one model call, with its own prompt, schema and offline rule (rules over the header lines): it
fills court, case number and decision date where the import left them blank (an imported value
comes from the source and is kept), and sets judges and parties.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Generic, NotRequired, TypedDict, TypeVar

from django.db import connection
from django.utils import timezone

from drains import registry
from drains.runner import Drain, ItemFailed, Processed, Source
from halacha.models import CourtDecision, Halacha, configuration_label

if TYPE_CHECKING:
    from halacha.extractors.base import Extractor
    from halacha.extractors.protocol import ExtractedHalacha, ExtractionResult, MetadataResult


class HalachaFields(TypedDict):
    """One extracted halacha as staged (halacha/extractors/protocol.py ``ExtractedHalacha``)."""

    rule: str
    quote: str
    topics: list[str]
    quote_spans: NotRequired[list[list[int]]]  # staged before grounding: neither, it was exact
    grounding: NotRequired[str]


class HalachaPayload(TypedDict):
    """What the halacha drain stages for a decision: its halachot, who made them, the reply."""

    extractor: str
    model: str
    halachot: list[HalachaFields]
    rejected: int
    problems: list[str]
    raw: object


class MetadataPayload(TypedDict):
    """What the metadata drain stages for a decision."""

    extractor: str
    model: str
    court: str | None
    case_number: str | None
    decided_on: str | None  # ISO date
    judges: list[str]
    parties: list[str]
    raw: object


P = TypeVar("P", HalachaPayload, MetadataPayload)
R = TypeVar("R", "ExtractionResult", "MetadataResult")

# The decision's halachot replaced in one statement, if the decision is still there: its new
# ones written over any an earlier version of its text had (an item queued again), ordinal by
# ordinal, and those past the new count deleted.
_REPLACE_SQL = (
    f"WITH gone AS (DELETE FROM {Halacha._meta.db_table} WHERE decision_id = %s AND ordinal > %s) "
    f"INSERT INTO {Halacha._meta.db_table} "
    "(decision_id, ordinal, rule, quote, topics, quote_spans, grounding, extractor, model, "
    "created_at) SELECT %s, v.ordinal, v.rule, v.quote, v.topics::jsonb, v.quote_spans::jsonb, "
    "v.grounding, %s, %s, %s FROM (VALUES {values}) "
    "AS v(ordinal, rule, quote, topics, quote_spans, grounding) "
    f"WHERE EXISTS (SELECT 1 FROM {CourtDecision._meta.db_table} WHERE id = %s) "
    "ON CONFLICT (decision_id, ordinal) DO UPDATE SET rule = EXCLUDED.rule, "
    "quote = EXCLUDED.quote, topics = EXCLUDED.topics, quote_spans = EXCLUDED.quote_spans, "
    "grounding = EXCLUDED.grounding, extractor = EXCLUDED.extractor, model = EXCLUDED.model, "
    "created_at = EXCLUDED.created_at"
)


class _DecisionDrain(Drain[CourtDecision, P, "Extractor"], Generic[P]):
    """What both decision drains share: every decision is an item, and a decision whose text
    changed is one again."""

    source = Source(CourtDecision, version_field="text_sha256", label_field="external_id")

    @classmethod
    def extractor_label(cls) -> str:
        from django.conf import settings

        from halacha.evaluation import configured

        config = configured()  # the settings' model named without building a backend
        model = config.model or {"anthropic": settings.HALACHA_MODEL,
                                 "claude-cli": settings.HALACHA_CLI_MODEL}.get(config.backend, "")
        return configuration_label(config.backend, model, config.effort)

    def make_extractor(self) -> Extractor:
        from halacha.evaluation import configured

        # HALACHA_EXTRACTOR, with the model and effort an operator chose from an evaluation
        return configured().extractor()

    def _ask(self, ask: Callable[[Extractor, CourtDecision], R],
             decision: CourtDecision) -> tuple[R, dict[str, str]]:
        """``ask`` (protocol's ``ask_halachot`` or ``ask_metadata``: the drain's prompt, schema,
        parser and offline rule) through the extractor for ``decision``: its result and who made
        it (the payload's "extractor" and "model"). An ExtractionError is the item's failure,
        with the reply and usage the call was paid for."""
        from halacha.extractors.base import ExtractionError

        extractor = self.extractor
        try:
            result = ask(extractor, decision)
        except ExtractionError as exc:
            raise ItemFailed(str(exc), raw=exc.raw, usage=exc.usage, quota=exc.quota) from exc
        made_by = {
            "extractor": result.extractor or getattr(extractor, "name", ""),
            "model": result.model or getattr(extractor, "model", "") or "",
        }
        return result, made_by


@registry.register
class HalachaDrain(_DecisionDrain[HalachaPayload]):
    name = "halacha"
    schedule = "10-59/15 * * * *"  # four cron runs an hour; a burst runs between them
    command = "drain_halacha"
    product_names = ("halacha", "halachot")

    @classmethod
    def produced_between(cls, since: datetime, until: datetime) -> int:
        return Halacha.objects.filter(created_at__gte=since, created_at__lt=until).count()

    def process(self, decision: CourtDecision) -> Processed[HalachaPayload]:
        from halacha.extractors.protocol import ask_halachot

        result, made_by = self._ask(ask_halachot, decision)
        payload = HalachaPayload(
            extractor=made_by["extractor"], model=made_by["model"],
            halachot=[_fields(halacha) for halacha in result.halachot],
            rejected=result.rejected, problems=result.problems, raw=result.raw,
        )
        return Processed(payload=payload, usage=result.usage, quota=result.quota)

    @classmethod
    def promote(cls, item_key: str, payload: HalachaPayload) -> None:
        """The decision's Halacha rows, in the caller's transaction (the one marking it done),
        in place of any an earlier version of the decision had.

        One plain statement: this is the per-decision hot path of every drain run (see
        docs/performance.md). A decision deleted since the call gets none.
        """
        halachot = payload.get("halachot") or []
        if not halachot:
            Halacha.objects.filter(decision_id=int(item_key)).delete()
            return
        extractor = str(payload.get("extractor") or "")[:32]
        model = str(payload.get("model") or "")[:100]
        decision = int(item_key)
        params: list[int | str | datetime] = [decision, extractor, model, timezone.now()]
        for ordinal, item in enumerate(halachot, 1):
            topics = json.dumps(item.get("topics") or [], ensure_ascii=False)
            # A result staged before grounding was recorded has neither: it was exact.
            spans = json.dumps(item.get("quote_spans") or [])
            params += [ordinal, item["rule"], item["quote"], topics, spans,
                       str(item.get("grounding") or "exact")[:16]]
        sql = _REPLACE_SQL.format(values=", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(halachot)))
        with connection.cursor() as cursor:
            cursor.execute(sql, [decision, len(halachot), *params, decision])


@registry.register
class MetadataDrain(_DecisionDrain[MetadataPayload]):
    name = "metadata"
    schedule = "0 * * * *"  # hourly: a new decision's metadata within the hour
    command = "drain_metadata"
    product_names = ("metadata record", "metadata records")


    @classmethod
    def produced_between(cls, since: datetime, until: datetime) -> int:
        """One metadata record per decision it finished."""
        return cls.done_between(since, until)

    def process(self, decision: CourtDecision) -> Processed[MetadataPayload]:
        from halacha.extractors.protocol import ask_metadata

        result, made_by = self._ask(ask_metadata, decision)
        payload = MetadataPayload(
            extractor=made_by["extractor"], model=made_by["model"],
            court=result.court, case_number=result.case_number,
            decided_on=result.decided_on.isoformat() if result.decided_on else None,
            judges=list(result.judges), parties=list(result.parties), raw=result.raw,
        )
        return Processed(payload=payload, usage=result.usage, quota=result.quota)

    @classmethod
    def promote(cls, item_key: str, payload: MetadataPayload) -> None:
        """The decision's metadata, in the caller's transaction (the one marking it done).

        Blank court / case number / date are filled (an imported value is kept); judges and
        parties are set. A decision deleted since the call is left alone.
        """
        decision = CourtDecision.objects.select_for_update().filter(pk=int(item_key)).first()
        if decision is None:
            return
        fields = ["judges", "parties"]
        for field, given in (("court", payload.get("court")),
                             ("case_number", payload.get("case_number"))):
            value = (given or "").strip()[:200]
            if value and not getattr(decision, field):
                setattr(decision, field, value)
                fields.append(field)
        if (decided := payload.get("decided_on")) and decision.decided_on is None:
            decision.decided_on = date.fromisoformat(decided)
            fields.append("decided_on")
        decision.judges = [str(name) for name in payload.get("judges") or []]
        decision.parties = [str(name) for name in payload.get("parties") or []]
        decision.save(update_fields=[*fields, "updated_at"])


def _fields(halacha: ExtractedHalacha) -> HalachaFields:
    return HalachaFields(rule=halacha.rule, quote=halacha.quote, topics=list(halacha.topics),
                         quote_spans=[list(span) for span in halacha.quote_spans],
                         grounding=halacha.grounding)
