"""Quality per quota: ``manage.py evaluate`` runs the halacha extraction over the gold set with
one configuration (backend, model, effort) and says what it bought and what it cost.

An evaluation is a drain of its own (``EvaluationDrain``, on demand): its items are the
evaluation's cases, one copy of each gold decision, so every call goes through the same runner
as the drains' (the drain lock, the quota's ceiling and reserve, the probe after a reset, rate
limits and host faults, staging and the journal: paid once). It touches no decision, no halacha
and no other drain's items.

Scored per case against the gold by quote-span overlap (halacha/gold.py); the quotes' grounding
tiers and rejections counted; the cost read from the evaluation's runs (tokens, dollars where
the backend says) and from the quota signals of its calls: how much of the 5-hour and the weekly
window it moved. A reading is cumulative, so the last one against the one before the first call
covers every call between, failed ones included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypedDict

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from drains import registry
from drains.models import DrainRun, Item
from drains.quota.store import latest_windows
from drains.runner import Drain, ItemFailed, Processed, RunResult, Source, run_drain
from halacha import gold as goldset
from halacha.models import (
    Evaluation,
    EvaluationCase,
    ExtractorChoice,
    GoldEntry,
    configuration_label,
)

NAME = "evaluate"
WINDOWS = ("five_hour", "seven_day")

if TYPE_CHECKING:
    from halacha.extractors.base import Extractor


class CasePayload(TypedDict):
    """What one case's call stages: the predicted quote spans, their tiers, the readings."""

    predicted: list[list[list[int]]]  # per halacha, its [start, end] spans
    tiers: dict[str, int]
    rejected: int
    model: str
    readings: dict[str, list[float | str | None]]  # window: [utilization, resets_at]
    at: str


# --- the gold set: the shipped files and the operator's entries ----------------------------------


def gold_set() -> list[goldset.GoldDecision]:
    """Every gold decision: the shipped files (halacha/gold/), then the operator's entries
    (halacha/gold_entries.py)."""
    from halacha.gold_entries import check

    decisions = goldset.load()
    for entry in GoldEntry.objects.order_by("external_id"):
        decisions.append(check({name: getattr(entry, name) for name in (
            "external_id", "language", "title", "court", "case_number", "decided_on", "text",
            "halachot", "notes")}))
    return decisions


def interleaved(decisions: list[goldset.GoldDecision]) -> list[goldset.GoldDecision]:
    """Hebrew and English taken in turn, so that the first N are half of each."""
    by_language: dict[str, list[goldset.GoldDecision]] = {}
    for decision in decisions:
        by_language.setdefault(decision.language, []).append(decision)
    queues = [by_language[language] for language in sorted(by_language)]
    mixed: list[goldset.GoldDecision] = []
    while any(queues):
        for queue in queues:
            if queue:
                mixed.append(queue.pop(0))
    return mixed


# --- configurations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    """What an evaluation runs: a backend and, for it, a model and an effort ("": as set)."""

    backend: str
    model: str = ""
    effort: str = ""

    @property
    def label(self) -> str:
        return configuration_label(self.backend, self.model, self.effort)

    def extractor(self) -> Extractor:
        """The backend, configured; ImproperlyConfigured or ExtractionConfigError if it cannot
        be (an unknown backend, an effort it does not take)."""
        from halacha.extractors import get_extractor

        return get_extractor(self.backend, model=self.model, effort=self.effort)

    def resolved(self) -> Configuration:
        """The model spelled out (the settings' one when none was given)."""
        model = self.model or str(getattr(self.extractor(), "model", "") or "")
        return Configuration(self.backend, model, self.effort)


def chosen() -> ExtractorChoice | None:
    """The operator's choice in force: the latest, while its backend is HALACHA_EXTRACTOR's."""
    choice = ExtractorChoice.objects.order_by("-chosen_at", "-id").first()
    if choice is None or choice.backend != str(settings.HALACHA_EXTRACTOR):
        return None
    return choice if choice.model or choice.effort else None


def configured() -> Configuration:
    """The configuration the decision drains run with now: HALACHA_EXTRACTOR, with the model
    and effort an operator chose from an evaluation ("": the settings')."""
    choice = chosen()
    return Configuration(str(settings.HALACHA_EXTRACTOR), choice.model if choice else "",
                         choice.effort if choice else "")


def in_use() -> Configuration:
    """``configured()`` with its model spelled out."""
    return configured().resolved()


def choose(evaluation_id: int | None, *, actor: str) -> str:
    """Run the decision drains with evaluation ``evaluation_id``'s model and effort (None: with
    the settings' again); recorded, with an event on each drain. Returns what was done."""
    from drains.events import record_event
    from drains.models import EventKind

    backend = str(settings.HALACHA_EXTRACTOR)
    if evaluation_id is None:
        picked, config = None, Configuration(backend)
        what = "the settings' model and effort"
    else:
        picked = Evaluation.objects.filter(pk=evaluation_id, finished_at__isnull=False).first()
        if picked is None:
            raise EvaluationError(f"there is no finished evaluation {evaluation_id}; "
                                  "manage.py evaluate --compare lists them")
        if picked.backend != backend:
            raise EvaluationError(
                f"evaluation {picked.pk} ran on the {picked.backend} backend and the drains run "
                f"on {backend} (HALACHA_EXTRACTOR): evaluate --backend {backend} and choose that")
        if not picked.complete or not picked.answered:
            raise EvaluationError(
                f"evaluation {picked.pk} answered {picked.answered} of {picked.decisions} "
                f"decisions ({picked.note or 'stopped short'}): choose a complete evaluation, "
                "or run it again")
        config = Configuration(backend, picked.model, picked.effort)
        what = f"{config.label} (evaluation {picked.pk})"
    config.extractor()  # a configuration the backend cannot run is refused here, not at 3 a.m.
    message = f"the drains now run {what} from their next run"
    with transaction.atomic():
        ExtractorChoice.objects.create(backend=backend, model=config.model,
                                       effort=config.effort, evaluation=picked, actor=actor,
                                       chosen_at=timezone.now())
        for drain in ("halacha", "metadata"):
            record_event(drain=drain, kind=EventKind.MODEL_CHOSEN, actor=actor, message=message,
                         data={"backend": backend, "model": config.model,
                               "effort": config.effort,
                               "evaluation": picked.pk if picked else None})
    return message


# --- the drain ------------------------------------------------------------------------------------


def current() -> Evaluation | None:
    return Evaluation.objects.filter(finished_at__isnull=True).order_by("-id").first()


@registry.register
class EvaluationDrain(Drain[EvaluationCase, CasePayload, "Extractor"]):
    """The evaluation's cases, each one call through the same runner as every drain's."""

    name = NAME
    command = "evaluate"
    source = Source(EvaluationCase, label_field="external_id")
    product_names = ("scored decision", "scored decisions")
    on_demand = True
    max_attempts = 1  # an unusable reply is a wrong answer: scored, never paid for again
    # A configuration the service refuses (an unknown model, an effort it does not take) fails
    # every case the same way: that is the evaluation's finding, not the quota's fault, so the
    # breaker (which would block every drain on the quota) stays off.
    breaker_failures = 0

    def make_extractor(self) -> Extractor:
        evaluation = current()
        if evaluation is None:  # a run with nothing to evaluate: the settings' backend
            return Configuration(str(settings.HALACHA_EXTRACTOR)).extractor()
        return Configuration(evaluation.backend, evaluation.model, evaluation.effort).extractor()

    @classmethod
    def extractor_label(cls) -> str:
        evaluation = current()
        return evaluation.label if evaluation else ""

    def process(self, case: EvaluationCase) -> Processed[CasePayload]:
        from halacha.extractors.base import ExtractionError
        from halacha.extractors.protocol import ask_halachot

        try:
            result = ask_halachot(self.extractor, case)
        except ExtractionError as exc:
            raise ItemFailed(str(exc), raw=exc.raw, usage=exc.usage, quota=exc.quota) from exc
        tiers = Counter(halacha.grounding for halacha in result.halachot)
        payload = CasePayload(
            predicted=[halacha.quote_spans for halacha in result.halachot],
            tiers=dict(tiers),
            rejected=result.rejected,
            model=result.model,
            readings={reading.window: [reading.utilization,
                                       reading.resets_at.isoformat()
                                       if reading.resets_at else None]
                      for reading in result.quota.windows if reading.window in WINDOWS},
            at=timezone.now().isoformat(),
        )
        return Processed(payload=payload, usage=result.usage, quota=result.quota)

    @classmethod
    def promote(cls, item_key: str, payload: CasePayload) -> None:
        EvaluationCase.objects.filter(pk=int(item_key)).update(result=payload)


# --- running one ----------------------------------------------------------------------------------


class EvaluationError(ValueError):
    """An evaluation that cannot start: what was wrong and what to do."""


# One evaluation at a time on a database: a session-level advisory lock (crc32 of "evaluate").
LOCK_KEY = 1_903_618_523
# A reading of the windows older than this before the first call is not its "before": the
# owner's and other drains' calls since would be charged to the evaluation.
FRESH_BEFORE_SECONDS = 120


@contextmanager
def one_at_a_time() -> Iterator[None]:
    """Hold the evaluations' lock for an evaluation's whole life (start, run, finish), or
    EvaluationError when another holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
        if not cursor.fetchone()[0]:
            raise EvaluationError("another evaluation is running on this database; wait for it "
                                  "(manage.py evaluate --compare shows it when it is done)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def start(config: Configuration, *, limit: int | None, actor: str) -> Evaluation:
    """A new evaluation of ``config`` over the first ``limit`` gold decisions (None: all), its
    cases queued; an earlier one left unfinished is closed (its calls are kept, its figures are
    what it got through). Refused while the quota backs off: every case would be left unasked.
    Call it holding ``one_at_a_time``."""
    from drains.quota.backoff import backoff_in_force

    decisions = interleaved(gold_set())
    if limit is not None:
        decisions = decisions[:limit]
    extractor = config.extractor()
    config = Configuration(config.backend, config.model or str(getattr(extractor, "model", "")),
                           config.effort)
    quota_key = str(extractor.quota_key())
    backoff = backoff_in_force(drain=NAME, quota_key=quota_key)
    if backoff is not None:
        raise EvaluationError(
            f"the quota {quota_key} backs off until {when(backoff.until)} ({backoff.reason}): "
            "an evaluation now would ask nothing; run it after that")
    now = timezone.now()
    fresh = now.timestamp() - FRESH_BEFORE_SECONDS
    before = {w.window: [w.utilization, w.resets_at.isoformat() if w.resets_at else None]
              for w in latest_windows(quota_key)
              if w.window in WINDOWS and w.observed_at.timestamp() >= fresh}
    with transaction.atomic():
        # Whatever an earlier evaluation left pending is never asked under this one's model.
        Item.objects.filter(drain=NAME, status="pending").delete()
        for stale in Evaluation.objects.filter(finished_at__isnull=True):
            finish(stale, note="left unfinished: a newer evaluation started")
        evaluation = Evaluation.objects.create(
            backend=config.backend, model=config.model, effort=config.effort,
            quota_key=quota_key, actor=actor, started_at=timezone.now(),
            decisions=len(decisions), readings_before=before)
        EvaluationCase.objects.bulk_create(
            EvaluationCase(evaluation=evaluation, external_id=d.id, language=d.language,
                           title=d.title, court=d.court, case_number=d.case_number,
                           decided_on=d.decided_on, text=d.text, gold=d.spans)
            for d in decisions)
        EvaluationDrain.sync()
    return evaluation


def run(evaluation: Evaluation, **run_options: Any) -> tuple[Evaluation, RunResult]:
    """Work the evaluation's cases off in one run, then score it. A run stopped short (a rate
    limit, the ceiling, a host fault) is said in the evaluation's note; a run that failed is
    finished with its error and raised. Either way no case of it stays pending."""
    from drains.runner import DrainRunFailed

    pending = Item.objects.filter(drain=NAME, status="pending",
                                  ref__in=evaluation.cases.values("pk"))
    try:
        result = run_drain(NAME, trigger="manual", **run_options)
    except DrainRunFailed as exc:
        pending.delete()
        finish(evaluation, note=f"the run failed: {exc}",
               runs=[exc.run_id] if exc.run_id else [])
        raise
    left = pending.count()
    note = ""
    if left:
        note = f"{left} of {evaluation.decisions} decisions not asked: {result.message}"
        pending.delete()
    return finish(evaluation, note=note, runs=[result.run_id] if result.run_id else []), result


def finish(evaluation: Evaluation, *, note: str = "", runs: list[int] | None = None) -> Evaluation:
    """Score the evaluation's cases and sum what its runs cost; it is finished."""
    failed = set(Item.objects.filter(drain=NAME, status="failed",
                                     ref__in=evaluation.cases.values("pk"))
                 .values_list("ref", flat=True))
    # The decisions asked: answered, or answered unusably (a wrong answer, scored as none).
    cases = [case for case in evaluation.cases.order_by("id")
             if case.result is not None or case.pk in failed]
    total = goldset.Score()
    tiers: Counter[str] = Counter()
    rejected = answered = 0
    for case in cases:
        predicted = (case.result or {}).get("predicted", [])
        total += goldset.score(case.gold, predicted)
        if case.result is not None:
            answered += 1
            tiers.update(case.result.get("tiers", {}))
            rejected += int(case.result.get("rejected", 0))
    others = _overlapping_runs(evaluation, runs or [])
    if others:
        overlap = (f"{others} run(s) of other drains on the quota overlapped it: the windows' "
                   "figures include their calls")
        note = f"{note}; {overlap}" if note else overlap
    spent = DrainRun.objects.filter(pk__in=runs or []).aggregate(
        i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost_usd"))
    before = evaluation.readings_before or {}
    moved = {window: _moved(before.get(window), cases, window) for window in WINDOWS}
    evaluation.finished_at = timezone.now()
    evaluation.note = note
    evaluation.asked = len(cases)
    evaluation.answered = answered
    evaluation.gold, evaluation.predicted = total.gold, total.predicted
    evaluation.true_positives, evaluation.rejected = total.true_positives, rejected
    evaluation.tiers = dict(tiers)
    evaluation.input_tokens = int(spent["i"] or 0)
    evaluation.output_tokens = int(spent["o"] or 0)
    evaluation.cost_usd = spent["c"] if spent["c"] else None
    evaluation.five_hour_moved, evaluation.week_moved = moved["five_hour"], moved["seven_day"]
    evaluation.save()
    return evaluation


def _overlapping_runs(evaluation: Evaluation, runs: list[int]) -> int:
    """Runs of other drains on the evaluation's quota that ran while it did."""
    from drains.models import DrainControl

    if not evaluation.quota_key:
        return 0
    names = DrainControl.objects.filter(quota_key=evaluation.quota_key).exclude(
        name=NAME).values("name")
    started = evaluation.started_at
    return DrainRun.objects.filter(drain__in=names, started_at__lt=timezone.now()).exclude(
        finished_at__lt=started).exclude(pk__in=runs).count()


def _moved(before: list[Any] | None, cases: list[EvaluationCase], window: str) -> float | None:
    """How much of ``window`` the evaluation's calls used, per the readings its answers carried:
    the last against the one before its first call (or, with none, against its first answer's,
    scaled to every call). None when no call said."""
    readings = sorted(
        ((case.result["at"], case.result["readings"][window], position)
         for position, case in enumerate(cases, 1)
         if case.result and window in case.result.get("readings", {})),
        key=lambda reading: reading[0])
    if not readings:
        return None
    points = ([(before, 0)] if before else []) + [(r[1], r[2]) for r in readings]
    used = 0.0
    for (previous, _), (reading, _) in zip(points, points[1:], strict=False):
        same_window = previous[1] == reading[1]
        used += max(0.0, reading[0] - previous[0]) if same_window else reading[0]
    calls = points[-1][1] - points[0][1]  # the calls the readings cover
    if calls <= 0:
        return None
    return used / calls * len(cases)


# --- reading them ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One configuration's latest evaluation, as the comparison shows it."""

    evaluation: Evaluation
    score: goldset.Score
    per_pct_week: float | None  # decisions per 1 % of the weekly window
    found_per_pct_week: float | None  # gold halachot found per 1 % of the weekly window
    cost_each: Decimal | None  # dollars per decision, where the backend says
    in_use: bool
    best: bool = False


def compare() -> list[Row]:
    """The latest finished evaluation of each configuration, the best per quota marked: the one
    that found the most gold halachot per 1 % of the week (by dollars when no call reported the
    week)."""
    latest: dict[str, Evaluation] = {}
    for evaluation in Evaluation.objects.filter(finished_at__isnull=False).order_by("-id"):
        latest.setdefault(evaluation.label, evaluation)
    try:
        using = in_use().label
    except Exception:  # noqa: BLE001 - a broken setting marks nothing as in use; evaluate says why
        using = ""
    rows = [_row(evaluation, using) for evaluation in latest.values()]
    # Only a complete evaluation can be the best: one stopped short measured fewer decisions.
    complete = [r for r in rows if r.evaluation.complete]
    by_week = [r for r in complete if r.found_per_pct_week]
    by_dollar = [r for r in complete if r.cost_each]
    best: Row | None = None
    if by_week:
        best = max(by_week, key=lambda r: r.found_per_pct_week or 0)
    elif by_dollar:
        best = max(by_dollar, key=lambda r: r.score.true_positives / float(r.cost_each or 1))
    return [Row(**{**r.__dict__, "best": r is best}) for r in rows]


def _row(evaluation: Evaluation, using: str) -> Row:
    score = goldset.Score(evaluation.true_positives, evaluation.predicted, evaluation.gold)
    per_pct = found_per_pct = None
    asked = evaluation.asked
    if evaluation.week_moved and asked:
        per_pct = asked / (evaluation.week_moved * 100)
        found_per_pct = evaluation.true_positives / (evaluation.week_moved * 100)
    cost_each = evaluation.cost_usd / asked if evaluation.cost_usd and asked else None
    return Row(evaluation, score, per_pct, found_per_pct, cost_each,
               in_use=evaluation.label == using)


def as_json(row: Row) -> dict[str, Any]:
    """A comparison row for the API and the page."""
    e = row.evaluation
    return {
        "id": e.pk, "configuration": e.label, "backend": e.backend, "model": e.model,
        "effort": e.effort, "started_at": e.started_at, "finished_at": e.finished_at,
        "decisions": e.decisions, "asked": e.asked, "answered": e.answered,
        "complete": e.complete, "gold": e.gold,
        "predicted": e.predicted, "found": e.true_positives,
        "precision": round(row.score.precision, 4), "recall": round(row.score.recall, 4),
        "f1": round(row.score.f1, 4), "rejected": e.rejected,
        "tiers": e.tiers or {},
        "input_tokens": e.input_tokens, "output_tokens": e.output_tokens,
        "cost_usd": float(e.cost_usd) if e.cost_usd is not None else None,
        "cost_each": float(row.cost_each) if row.cost_each is not None else None,
        "five_hour_moved": e.five_hour_moved, "week_moved": e.week_moved,
        "week_pct_each": (e.week_moved * 100 / e.asked
                          if e.week_moved is not None and e.asked else None),
        "decisions_per_pct_week": row.per_pct_week,
        "found_per_pct_week": row.found_per_pct_week,
        "in_use": row.in_use, "best": row.best, "note": e.note,
    }


def comparison() -> dict[str, Any]:
    """The comparison as the API and the page show it: each configuration's latest evaluation
    (the best per quota and the one in use marked) and the configuration in use."""
    try:
        using: str | None = in_use().label
        problem = ""
    except Exception as exc:  # noqa: BLE001 - the settings' problem is said, not raised here
        using, problem = None, str(exc)
    return {"configurations": [as_json(row) for row in compare()], "in_use": using,
            "in_use_problem": problem, "backend": str(settings.HALACHA_EXTRACTOR)}


def when(value: datetime | None) -> str:
    from drains.clock import format_local

    return format_local(value) if value else "—"
