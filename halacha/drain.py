"""The halacha and metadata drains, registered with the drains runtime.

HalachaDrain works off decisions whose ``status`` is pending: one extractor call per decision
(``HALACHA_EXTRACTOR``), the reply staged by the runtime, then promoted into Halacha rows and the
decision marked done. Promotion and failure marking are classmethods that need no extractor, so
the supervisor can promote leftovers at zero quota. This module imports no extractor backend at
import time: only ``make_extractor``/``process`` load one.

MetadataDrain works off decisions whose ``metadata_status`` is pending through the same backends'
one model call, with its own prompt, schema and offline rule (rules over the header lines): it
fills court, case number and decision date where the import left them blank (an imported value
comes from the source and is kept), and sets judges and parties.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, Count, F, Value, When
from django.utils import timezone

from drains import registry
from drains.runner import Drain, FailedItem, ItemFailed, Processed
from halacha.models import CourtDecision, ExtractionStatus, Halacha

LAST_ERROR_MAX_CHARS = 4000


# Promotion in one statement (one round trip): mark the decision done unless it already is, and
# insert its halachot only if it was marked. Data-modifying CTEs always run to completion.
_PROMOTE_SQL = (
    f"WITH done AS (UPDATE {CourtDecision._meta.db_table} SET status = %s, extracted_at = %s, "
    "last_error = '', updated_at = %s WHERE id = %s AND status <> %s RETURNING id)"
    "{inserted} SELECT count(*) FROM done"
)
_INSERTED_CTE = (
    f", inserted AS (INSERT INTO {Halacha._meta.db_table} "
    "(decision_id, ordinal, rule, quote, topics, quote_spans, grounding, extractor, model, "
    "created_at) SELECT done.id, v.ordinal, v.rule, v.quote, v.topics::jsonb, "
    "v.quote_spans::jsonb, v.grounding, %s, %s, %s FROM done CROSS JOIN (VALUES {values}) "
    "AS v(ordinal, rule, quote, topics, quote_spans, grounding) RETURNING 1)"
)


def _counts(field: str) -> dict[str, int]:
    rows = CourtDecision.objects.values(field).annotate(n=Count("id")).order_by()
    counts = {"pending": 0, "done": 0, "failed": 0}
    for row in rows:
        counts[row[field]] = row["n"]
    return counts


class _DecisionDrain(Drain):
    """What both decision drains share: the backlog is every decision, its state one field."""

    # The snapshot counts every drain's backlog in one UNION ALL from these two.
    backlog_status_field: str
    done_at_field: str  # when the item was finished: the digest counts from it
    attempts_field: str
    error_field: str
    arrived_at_field = "created_at"

    @classmethod
    def _failed(cls):
        return CourtDecision.objects.filter(**{cls.backlog_status_field: ExtractionStatus.FAILED})

    @classmethod
    def failed_items(cls, *, limit: int) -> list[FailedItem]:
        rows = cls._failed().order_by("-updated_at", "-id").values(
            "id", "external_id", cls.attempts_field, cls.error_field, "updated_at")[:limit]
        return [FailedItem(key=str(r["id"]), label=r["external_id"],
                           attempts=r[cls.attempts_field], error=r[cls.error_field],
                           at=r["updated_at"]) for r in rows]

    @classmethod
    def failed_count(cls) -> int:
        return cls._failed().count()

    @classmethod
    def retry_failed(cls, item_keys: list[str] | None) -> list[str]:
        failed = cls._failed()
        if item_keys is not None:
            # A key that is no decision id matches no failed item (it is not an error).
            failed = failed.filter(pk__in=[int(k) for k in item_keys
                                           if k.isascii() and k.isdigit() and len(k) <= 18])
        with transaction.atomic():
            keys = [str(pk) for pk in failed.select_for_update().values_list("id", flat=True)]
            CourtDecision.objects.filter(pk__in=[int(k) for k in keys]).update(
                **{cls.backlog_status_field: ExtractionStatus.PENDING, cls.attempts_field: 0},
                updated_at=timezone.now(),
            )
        return keys

    @classmethod
    def extractor_label(cls) -> str:
        from django.conf import settings

        name = settings.HALACHA_EXTRACTOR
        model = {"anthropic": settings.HALACHA_MODEL,
                 "claude-cli": settings.HALACHA_CLI_MODEL}.get(name, "")
        return f"{name}:{model}" if model else name

    @classmethod
    def first_item_at(cls):
        return CourtDecision.objects.order_by("created_at").values_list(
            "created_at", flat=True).first()

    @classmethod
    def oldest_pending_at(cls):
        first = cls.pending_queryset().order_by("created_at").values_list("created_at", flat=True)
        return first.first()

    @classmethod
    def done_between(cls, since, until) -> int:
        return CourtDecision.objects.filter(
            **{
                cls.backlog_status_field: ExtractionStatus.DONE,
                f"{cls.done_at_field}__gte": since,
                f"{cls.done_at_field}__lt": until,
            }
        ).count()

    @classmethod
    def backlog_queryset(cls):
        return CourtDecision.objects.all()

    @classmethod
    def backlog_counts(cls) -> dict[str, int]:
        return _counts(cls.backlog_status_field)

    @classmethod
    def pending_queryset(cls):
        return CourtDecision.objects.filter(**{cls.backlog_status_field: ExtractionStatus.PENDING})

    @classmethod
    def mark_failed(cls, item_key: str, error: str, *, max_attempts: int) -> None:
        """The drain's attempts + 1 and its error on the decision; failed for good once its
        attempts reach ``max_attempts``. A decision this drain is done with is left alone."""
        attempts, status = cls.attempts_field, cls.backlog_status_field
        CourtDecision.objects.filter(pk=int(item_key)).exclude(
            **{status: ExtractionStatus.DONE}
        ).update(**{
            attempts: F(attempts) + 1,
            cls.error_field: error[:LAST_ERROR_MAX_CHARS],
            status: Case(
                When(**{f"{attempts}__gte": max_attempts - 1}, then=Value(ExtractionStatus.FAILED)),
                default=Value(ExtractionStatus.PENDING),
            ),
            "updated_at": timezone.now(),
        })

    def make_extractor(self):
        from halacha.extractors import get_extractor

        return get_extractor()

    def _ask(self, ask: Callable[[Any, Any], Any], decision) -> tuple[Any, dict[str, str]]:
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
class HalachaDrain(_DecisionDrain):
    name = "halacha"
    command = "drain_halacha"
    product_names = ("halacha", "halachot")
    backlog_status_field = "status"
    done_at_field = "extracted_at"
    attempts_field = "attempts"
    error_field = "last_error"

    @classmethod
    def produced_between(cls, since, until) -> int:
        return Halacha.objects.filter(created_at__gte=since, created_at__lt=until).count()

    def process(self, decision) -> Processed:
        from halacha.extractors.protocol import ask_halachot

        result, made_by = self._ask(ask_halachot, decision)
        payload = {
            **made_by,
            "halachot": [asdict(halacha) for halacha in result.halachot],
            "rejected": result.rejected,
            "problems": result.problems,
            "raw": result.raw,
        }
        return Processed(payload=payload, usage=result.usage, quota=result.quota)

    @classmethod
    def promote(cls, item_key: str, payload) -> bool:
        """Halacha rows + decision done, in the caller's transaction.

        A decision already done keeps what it has (False): a result promoted twice never
        duplicates a halacha. A decision deleted since the call is skipped the same way.
        One plain statement: this is the per-decision hot path of every drain run (see
        docs/performance.md), so it skips the ORM and saves a round trip.
        """
        now = timezone.now()
        status = ExtractionStatus.DONE
        params: list = [status, now, now, int(item_key), status]
        inserted = ""
        halachot = payload.get("halachot") or []
        if halachot:
            extractor = str(payload.get("extractor") or "")[:32]
            model = str(payload.get("model") or "")[:100]
            inserted = _INSERTED_CTE.format(
                values=", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(halachot)))
            params += [extractor, model, now]
            for ordinal, item in enumerate(halachot, 1):
                topics = json.dumps(item.get("topics") or [], ensure_ascii=False)
                # A result staged before grounding was recorded has neither: it was exact.
                spans = json.dumps(item.get("quote_spans") or [])
                params += [ordinal, item["rule"], item["quote"], topics, spans,
                           str(item.get("grounding") or "exact")[:16]]
        with connection.cursor() as cursor:
            cursor.execute(_PROMOTE_SQL.format(inserted=inserted), params)
            return bool(cursor.fetchone()[0])


@registry.register
class MetadataDrain(_DecisionDrain):
    name = "metadata"
    command = "drain_metadata"
    product_names = ("metadata record", "metadata records")

    @classmethod
    def produced_between(cls, since, until) -> int:
        """One metadata record per decision it finished."""
        return cls.done_between(since, until)
    backlog_status_field = "metadata_status"
    done_at_field = "metadata_extracted_at"
    attempts_field = "metadata_attempts"
    error_field = "metadata_error"

    def process(self, decision) -> Processed:
        from halacha.extractors.protocol import ask_metadata

        result, made_by = self._ask(ask_metadata, decision)
        payload = {
            **made_by,
            "court": result.court,
            "case_number": result.case_number,
            "decided_on": result.decided_on.isoformat() if result.decided_on else None,
            "judges": list(result.judges),
            "parties": list(result.parties),
            "raw": result.raw,
        }
        return Processed(payload=payload, usage=result.usage, quota=result.quota)

    @classmethod
    def promote(cls, item_key: str, payload) -> bool:
        """The decision's metadata filled and marked done, in the caller's transaction.

        Blank court / case number / date are filled; judges and parties are set. A decision
        already done (or deleted) is left as it is (False), so promoting twice changes nothing.
        """
        decision = (
            CourtDecision.objects.select_for_update()
            .filter(pk=int(item_key))
            .exclude(metadata_status=ExtractionStatus.DONE)
            .first()
        )
        if decision is None:
            return False
        fields = ["metadata_status", "metadata_extracted_at", "metadata_error", "judges", "parties"]
        for field, limit in (("court", 200), ("case_number", 200)):
            value = (payload.get(field) or "").strip()[:limit]
            if value and not getattr(decision, field):
                setattr(decision, field, value)
                fields.append(field)
        if payload.get("decided_on") and decision.decided_on is None:
            decision.decided_on = date.fromisoformat(payload["decided_on"])
            fields.append("decided_on")
        decision.judges = [str(name) for name in payload.get("judges") or []]
        decision.parties = [str(name) for name in payload.get("parties") or []]
        decision.metadata_status = ExtractionStatus.DONE
        decision.metadata_extracted_at = timezone.now()
        decision.metadata_error = ""
        decision.save(update_fields=[*fields, "updated_at"])
        return True

