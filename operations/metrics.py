"""Prometheus metrics for the drains: ``GET /metrics`` in the text exposition format.

Owns: turning the operations snapshot into metric families. It reads through the public
selector (``operations.selectors.snapshot``, a constant number of queries) plus two reads of its
own, each one query whatever the number of drains and runs: the run totals (items done, extractor
tokens) and the unapplied migrations (``drains.schema.missing_migrations``). The quota-week
usage per quota key comes from the snapshot's ``usage`` (drains/selectors/usage.py), the quota
windows and forecast from its ``quotas`` (drains/selectors/quota.py). It never writes.

Access: a client address in ``DRAINS_METRICS_ALLOWED_IPS``, or ``Authorization: Bearer <token>``
matching ``DRAINS_METRICS_TOKEN``; anything else is a JSON 403 (operations/errors.py's shape).
"""

from __future__ import annotations

import hmac
import ipaddress
from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.db.models import Sum
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from drains.models import DrainRun
from drains.schema import missing_migrations
from operations import selectors
from operations.errors import error_body
from operations.snapshot_types import QuotaKeyEntry, ServiceEntry, Snapshot, UsageEntry
from operations.states import FAILED_STATUSES

_BacklogStatus = Literal["pending", "staged", "done", "failed"]
_TokenField = Literal["input_tokens", "output_tokens", "cache_creation_input_tokens",
                      "cache_read_input_tokens"]
# The keys of a week's usage entry each per-key gauge of _usage_families reads.
_WeekField = Literal["cost_usd", "calls", "refused_calls", "items_done"]

BACKLOG_STATUSES: tuple[_BacklogStatus, ...] = ("pending", "staged", "done", "failed")
TOKEN_KINDS: dict[str, _TokenField] = {  # label -> DrainRun field (and usage entry key)
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_creation_input": "cache_creation_input_tokens",
    "cache_read_input": "cache_read_input_tokens",
}


def _ts(moment: datetime | None) -> float:
    """Unix seconds, 0 for "none" (so a series never disappears and `> time()` stays false)."""
    return moment.timestamp() if moment is not None else 0.0


def run_totals(names: list[str]) -> dict[str, dict[str, int]]:
    """Items done and extractor tokens per drain over all its runs: one GROUP BY query."""
    sums = {"items_done": Sum("items_done"), **{kind: Sum(field) for kind, field in TOKEN_KINDS.items()}}
    rows = DrainRun.objects.filter(drain__in=names).values("drain").annotate(**sums).order_by()
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        values: dict[str, Any] = dict(row)
        drain = values.pop("drain")
        totals[drain] = {key: int(value or 0) for key, value in values.items()}
    return totals


class SnapshotCollector:
    """Metric families for one scrape, from data read before ``collect`` is called."""

    def __init__(self, snapshot: Snapshot, totals: dict[str, dict[str, int]], unapplied: int):
        self.snapshot, self.totals, self.unapplied = snapshot, totals, unapplied

    def collect(self):
        services = self.snapshot["services"]
        yield from _drain_families([s for s in services if s["kind"] == "drain"], self.totals)
        yield from _service_families(services)
        yield from _usage_families(self.snapshot["usage"])
        yield from _quota_families(self.snapshot["quotas"])
        schema = GaugeMetricFamily(
            "drains_schema_unapplied_migrations",
            "Migrations on disk not recorded as applied (0: the schema is current).")
        schema.add_metric([], self.unapplied)
        yield schema


def _drain_families(drains: list[ServiceEntry], totals: dict[str, dict[str, int]]):
    """Per drain: its backlog, burst, backoff, projection and its runs' totals."""
    gauge = GaugeMetricFamily
    backlog = gauge("drains_backlog_items", "Items per backlog status.", labels=["drain", "status"])
    staged = gauge("drains_staged_rows", "Paid-for results waiting to be promoted.", labels=["drain"])
    burst = gauge("drains_burst_active", "1 while a burst is on.", labels=["drain"])
    burst_deadline = gauge("drains_burst_deadline_timestamp_seconds",
                           "The active burst's deadline (0: no burst).", labels=["drain"])
    backoff = gauge("drains_backoff_until_timestamp_seconds",
                    "End of the backoff in force (0: none).", labels=["drain"])
    enabled = gauge("drains_enabled", "1 when the drain may run.", labels=["drain"])
    on_time = gauge("drains_projection_on_time",
                    "1 when the projected finish is before the deadline, 0 when it misses it, "
                    "absent when there is no projection.", labels=["drain"])
    finish = gauge("drains_projection_finish_timestamp_seconds",
                   "Projected time the backlog is empty (0: no rate to project from).",
                   labels=["drain"])
    items = CounterMetricFamily("drains_items_done", "Items done over all runs.", labels=["drain"])
    tokens = CounterMetricFamily("drains_extractor_tokens", "Extractor tokens over all runs.",
                                 labels=["drain", "kind"])
    for s in drains:
        name, counts = s["name"], s["backlog"]
        assert counts is not None, "a drain's entry always has its backlog"
        for status in BACKLOG_STATUSES:
            backlog.add_metric([name, status], counts[status])
        staged.add_metric([name], counts["staged"])
        burst.add_metric([name], 1 if s["burst_active"] else 0)
        burst_deadline.add_metric([name], _ts(s["burst_until"]) if s["burst_active"] else 0)
        backoff.add_metric([name], _ts(s["backoff"]["until"]) if s["backoff"] else 0)
        enabled.add_metric([name], 1 if s["enabled"] else 0)
        p = s["projection"]
        if p is not None and p["on_time"] is not None:
            on_time.add_metric([name], 1 if p["on_time"] else 0)
        finish.add_metric([name], _ts(p["finish_at"]) if p else 0)
        total = totals.get(name, {})
        items.add_metric([name], total.get("items_done", 0))
        for kind in TOKEN_KINDS:
            tokens.add_metric([name, kind], total.get(kind, 0))
    yield from (backlog, staged, burst, burst_deadline, backoff, enabled, on_time, finish,
                items, tokens)


def _service_families(services: list[ServiceEntry]):
    """Every scheduled service (drains, the supervisor, the other jobs) by its name."""
    gauge = GaugeMetricFamily
    active = gauge("drains_run_active", "1 while a run is going.", labels=["drain"])
    age = gauge("drains_checkpoint_age_seconds",
                "Seconds since the running run's last checkpoint (present while running).",
                labels=["drain"])
    last = gauge("drains_last_run_finish_timestamp_seconds",
                 "When the newest finished run ended, labelled with how.",
                 labels=["drain", "status"])
    state = gauge("drains_service_state", "1 for the service's current state.",
                  labels=["drain", "state"])
    failed = gauge("drains_last_run_error_info",
                   "1 when the newest finished run failed: its id, the kind of failure and "
                   "its one-line reason (absent when it did not fail).",
                   labels=["drain", "run", "kind", "reason"])
    for s in services:
        name, run = s["name"], s["current_run"]
        active.add_metric([name], 1 if run else 0)
        if run is not None and run["checkpoint_age_seconds"] is not None:
            age.add_metric([name], run["checkpoint_age_seconds"])
        if s["last_run"] is not None:
            finished = s["last_run"]["finished_at"] or s["last_run"]["started_at"]
            last.add_metric([name, s["last_run"]["status"]], _ts(finished))
            if s["last_run"]["error"] and s["last_run"]["status"] in FAILED_STATUSES:
                r = s["last_run"]
                failed.add_metric([name, str(r["id"]), r["error_kind"], r["error"]], 1)
        state.add_metric([name, s["state"]], 1)
    yield from (active, age, last, state, failed)


def _usage_families(usage: list[UsageEntry]):
    """This quota week's spending per quota key (the snapshot's ``usage``). Gauges, not
    counters: each resets when the week turns at the Saturday 18:00 boundary."""
    gauge = GaugeMetricFamily
    week = [u for u in usage if u["current"]]
    tokens = gauge("drains_quota_week_tokens", "Extractor tokens this quota week.",
                   labels=["quota_key", "kind"])
    per_key: dict[_WeekField, GaugeMetricFamily] = {
        "cost_usd": gauge("drains_quota_week_cost_usd",
                          "Extractor cost this quota week (USD).", labels=["quota_key"]),
        "calls": gauge("drains_quota_week_calls",
                       "Extractor calls answered this quota week (items done + failed).",
                       labels=["quota_key"]),
        "refused_calls": gauge("drains_quota_week_refused_calls",
                               "Runs ended rate-limited this quota week.", labels=["quota_key"]),
        "items_done": gauge("drains_quota_week_items_done", "Items done this quota week.",
                            labels=["quota_key"]),
    }
    by_product = ["quota_key", "drain", "product"]
    produced = gauge("drains_quota_week_produced",
                     "What each drain made this quota week, in its own product's name.",
                     labels=by_product)
    cost_each = gauge("drains_quota_week_cost_per_product_usd",
                      "Cost of one of the drain's products this quota week (absent when it made "
                      "none).", labels=by_product)
    for u in week:
        key = u["quota_key"]
        for kind, field in TOKEN_KINDS.items():
            tokens.add_metric([key, kind], u[field])
        for week_field, family in per_key.items():
            family.add_metric([key], u[week_field])
        for p in u["products"]:
            labels = [key, p["drain"], p["product"]]
            produced.add_metric(labels, p["count"])
            if p["cost_each"] is not None:
                cost_each.add_metric(labels, p["cost_each"])
    yield tokens
    yield from per_key.values()
    yield produced
    yield cost_each


def _quota_families(quotas: list[QuotaKeyEntry]):
    """The quota windows' latest readings and the week's forecast (the snapshot's ``quotas``).
    A key whose calls report no windows (an API key) has only ``drains_quota_signal_seen 0``."""
    gauge = GaugeMetricFamily
    by_window = ["quota", "window"]
    utilization = gauge("drains_quota_utilization",
                        "The window's latest reported utilization, 0..1.", labels=by_window)
    reset = gauge("drains_quota_reset_timestamp_seconds",
                  "When the window resets, as last reported (0: not said).", labels=by_window)
    ceiling = gauge("drains_quota_ceiling", "The ceiling in force on the window now (1 - reserve).",
                    labels=by_window)
    observed = gauge("drains_quota_observed_timestamp_seconds",
                     "When a call last reported the window.", labels=by_window)
    stale = gauge("drains_quota_stale", "1 when the reading is stale (reset since, or old).",
                  labels=by_window)
    seen = gauge("drains_quota_signal_seen",
                 "1 when a call on the key reported a quota window (0: e.g. an API key).",
                 labels=["quota"])
    overage = gauge("drains_quota_using_overage", "1 while extra usage is being spent.",
                    labels=["quota"])
    week_end = gauge("drains_quota_forecast_week_end_utilization",
                     "The weekly utilization at the reset on the current pace (absent: no forecast).",
                     labels=["quota"])
    lapse = gauge("drains_quota_forecast_lapse_ratio",
                  "The share of the week that would lapse unspent at the reset on the current pace "
                  "(absent: no forecast).", labels=["quota"])
    autopilot = gauge("drains_quota_autopilot_enabled", "1 when the key's autopilot is on.",
                      labels=["quota"])
    for q in quotas:
        key = q["key"]
        for w in q["windows"]:
            labels = [key, w["window"]]
            utilization.add_metric(labels, w["utilization"])
            reset.add_metric(labels, _ts(w["resets_at"]))
            ceiling.add_metric(labels, w["ceiling"])
            observed.add_metric(labels, _ts(w["observed_at"]))
            stale.add_metric(labels, 1 if w["stale"] else 0)
        seen.add_metric([key], 1 if q["signal_seen"] else 0)
        overage.add_metric([key], 1 if q["using_overage"] else 0)
        if q["forecast"] is not None:
            week_end.add_metric([key], q["forecast"]["week_end_utilization"])
            lapse.add_metric([key], q["forecast"]["lapse"])
        autopilot.add_metric([key], 1 if q["autopilot"] and q["autopilot"]["enabled"] else 0)
    yield from (utilization, reset, ceiling, observed, stale, seen, overage, week_end, lapse,
                autopilot)


def render_metrics(now: datetime | None = None) -> bytes:
    now = now or timezone.now()
    snapshot = selectors.snapshot(now=now)
    names = [s["name"] for s in snapshot["services"]]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, run_totals(names), len(missing_migrations())))
    return generate_latest(registry)


def _allowed(request) -> bool:
    token = settings.DRAINS_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[len("Bearer "):].encode(), token.encode())
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(allowed, strict=False)
               for allowed in settings.DRAINS_METRICS_ALLOWED_IPS)


def metrics_view(request):
    if request.method != "GET":
        response = JsonResponse(error_body(405, f'Method "{request.method}" not allowed.'),
                                status=405)
        response["Allow"] = "GET"
        return response
    if not _allowed(request):
        return JsonResponse(error_body(
            403, "Metrics are open to DRAINS_METRICS_ALLOWED_IPS or to "
                 "'Authorization: Bearer <DRAINS_METRICS_TOKEN>'; this request has neither."),
            status=403)
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
