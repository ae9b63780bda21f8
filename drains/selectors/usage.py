"""Usage accounting: what each quota was spent on, per quota key and per quota week.

A quota week ends at the burst week boundary (``drains.bursts.upcoming_week_boundary``:
Saturday 18:00 in the operator zone) and starts at the boundary before it. ``usage_by_week``
sums the drain runs started in each week, grouped by their drain's ``DrainControl.quota_key``,
in ONE aggregate query however many runs exist, and asks each drain class how many of its
product it made in each week (``Drain.produced_between``, named by ``Drain.product_names``;
drains never import a domain app). Each drain's product is counted and priced on its own (its
runs' cost over what it made): two drains on one key never add up each other's products.
Nothing here writes.

What is counted, and why:
- tokens (input, output, cache creation, cache read) and cost: the runs' recorded sums;
- calls: ``items_done + items_failed``. The runtime makes exactly one extractor call per item it
  finishes or fails, for every backend. ``model_usage`` "calls" are not used: the offline
  backend records none, and the CLI reports one entry per model a single invocation touched, so
  one call that used two models would count twice;
- refused calls: runs that ended ``rate_limited`` (each ends at the first refusal it sees; calls
  refused at the same moment by other workers of that run are not recorded separately);
- a run belongs to the week it started in, and to its drain's quota key as stored now (runs do
  not record the key they drew on; a drain whose key changed mid-week moves its history).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.utils import timezone

from drains import registry
from drains.bursts import upcoming_week_boundary
from drains.models import DrainControl, DrainRun, RunStatus

TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


@dataclass(frozen=True)
class Week:
    start: datetime  # the boundary that opened it
    end: datetime  # the boundary that closes it (exclusive)


@dataclass(frozen=True)
class QuotaWeekUsage:
    quota_key: str  # "" for drains that never recorded one
    week: Week
    current: bool  # the week ``now`` is in
    runs: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    items_done: int = 0
    items_failed: int = 0
    refused_calls: int = 0
    # What each drain on the key produced, in its own words (none: no drain here produces).
    products: tuple[Produced, ...] = ()

    @property
    def calls(self) -> int:
        return self.items_done + self.items_failed


@dataclass(frozen=True)
class Produced:
    """What one drain made in a quota week: its product's name, how many, and its runs' cost."""

    drain: str
    product: str  # plural, the drain's product_names[1]
    singular: str  # product_names[0]
    count: int
    cost_usd: Decimal

    @property
    def cost_each(self) -> Decimal | None:
        return self.cost_usd / self.count if self.count else None


def quota_weeks(now: datetime, count: int) -> list[Week]:
    """The week ``now`` is in and the ``count - 1`` before it, newest first."""
    weeks = []
    end = upcoming_week_boundary(now)
    for _ in range(count):
        # Eight days before a boundary is the Friday before the previous one, whatever DST did
        # in between: the boundary after it is the previous boundary.
        start = upcoming_week_boundary(end - timedelta(days=8))
        weeks.append(Week(start=start, end=end))
        end = start
    return weeks


_SQL = """
    SELECT COALESCE(c.quota_key, '') AS quota_key, w.i, r.drain,
           COUNT(*), {token_sums}, COALESCE(SUM(r.cost_usd), 0),
           COALESCE(SUM(r.items_done), 0), COALESCE(SUM(r.items_failed), 0),
           COUNT(*) FILTER (WHERE r.status = %s)
    FROM {runs} r
    JOIN unnest(%s::timestamptz[], %s::timestamptz[]) WITH ORDINALITY AS w(s, e, i)
      ON r.started_at >= w.s AND r.started_at < w.e
    LEFT JOIN {controls} c ON c.name = r.drain
    WHERE r.drain = ANY(%s) AND r.started_at >= %s AND r.started_at < %s
    GROUP BY 1, 2, 3
"""


def _run_sums(
    span: list[Week], names: list[str]
) -> tuple[dict[tuple[str, int], dict], dict[tuple[str, int, str], Decimal]]:
    """The runs' sums per (quota key, week index), and each drain's cost per (quota key, week
    index, drain): one aggregate query."""
    sql = _SQL.format(
        token_sums=", ".join(f"COALESCE(SUM(r.{f}), 0)" for f in TOKEN_FIELDS),
        runs=DrainRun._meta.db_table,
        controls=DrainControl._meta.db_table,
    )
    params: list[Any] = [
        RunStatus.RATE_LIMITED.value,
        [w.start for w in span],
        [w.end for w in span],
        names,
        span[-1].start,
        span[0].end,
    ]
    sums: dict[tuple[str, int], dict] = {}
    costs: dict[tuple[str, int, str], Decimal] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for key, i, drain, runs, *tokens, cost, done, failed, refused in cursor.fetchall():
            row = {
                "runs": runs,
                **{f: int(v) for f, v in zip(TOKEN_FIELDS, tokens, strict=True)},
                "cost_usd": Decimal(cost),
                "items_done": int(done),
                "items_failed": int(failed),
                "refused_calls": refused,
            }
            total = sums.setdefault((key, i - 1), dict.fromkeys(row, 0) | {"cost_usd": Decimal(0)})
            for field, value in row.items():
                total[field] += value
            costs[(key, i - 1, drain)] = Decimal(cost)
    return sums, costs


def _products(
    span: list[Week], names: list[str], costs: dict[tuple[str, int, str], Decimal]
) -> dict[tuple[str, int], list[Produced]]:
    """What each drain produced per (quota key, week index), with its runs' cost: one
    ``produced_between`` per producing drain and week."""
    keys = dict(DrainControl.objects.filter(name__in=names).values_list("name", "quota_key"))
    products: dict[tuple[str, int], list[Produced]] = {}
    for name in names:
        cls = registry.get(name)
        singular, plural = cls.product_names
        key = keys.get(name, "")
        for i, week in enumerate(span):
            made = cls.produced_between(week.start, week.end)
            if made is None:
                break  # the drain produces nothing of its own, in any week
            cost = costs.get((key, i, name), Decimal(0))
            if made or cost:
                products.setdefault((key, i), []).append(
                    Produced(name, plural, singular, made, cost))
    return products


def usage_by_week(*, now: datetime | None = None, weeks: int = 2) -> list[QuotaWeekUsage]:
    """Usage per quota key and quota week for the ``weeks`` newest weeks (the current one
    first), quota keys in order. A key appears in a week when it has runs or products there.

    Queries: one aggregate over the runs, one read of the drains' quota keys, and one
    ``produced_between`` per producing drain and week — never one per run.
    """
    now = now or timezone.now()
    span = quota_weeks(now, weeks)
    names = [cls.name for cls in registry.classes()]  # on-demand drains spend the quota too
    sums, costs = _run_sums(span, names)
    products = _products(span, names, costs)
    result = []
    for key, i in sorted(set(sums) | set(products), key=lambda s: (s[1], s[0])):
        result.append(QuotaWeekUsage(
            quota_key=key, week=span[i], current=i == 0,
            products=tuple(products.get((key, i), ())), **sums.get((key, i), {}),
        ))
    return result
