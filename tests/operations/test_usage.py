"""Usage accounting per quota key and quota week: the selector, the snapshot API, the digest and
the metrics, against runs with known usage in two weeks and two quota keys."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from drains.models import DrainControl, DrainRun
from drains.selectors.usage import quota_weeks, usage_by_week
from halacha.models import CourtDecision, Halacha
from operations.digest import build_digest, render_digest
from operations.metrics import render_metrics
from tests.operations.conftest import BOUNDARY, JERUSALEM
from tests.operations.test_metrics import samples, value
from tests.support.items import set_state

URL = "/api/operations/"
API_KEY = "anthropic:aaaa1111"
CLI_KEY = "claude-cli:/usr/bin/claude"
THIS_WEEK_START = datetime(2026, 11, 28, 18, 0, tzinfo=JERUSALEM)
LAST_WEEK_START = datetime(2026, 11, 21, 18, 0, tzinfo=JERUSALEM)


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=JERUSALEM)


def _halachot(n: int, created_at: datetime, tag: str) -> None:
    decision = CourtDecision.objects.create(external_id=f"d-{tag}", text="t",
                                            text_sha256=tag.rjust(64, "0"))
    set_state("halacha", [decision], "done")
    Halacha.objects.bulk_create(
        Halacha(decision=decision, ordinal=i, rule="r", quote="q", extractor="x")
        for i in range(1, n + 1))
    Halacha.objects.filter(decision=decision).update(created_at=created_at)


@pytest.fixture
def known_usage(frozen, make_run):
    """The halacha drain on API_KEY, the metadata drain on CLI_KEY; runs in this quota week
    (from Sat 28 Nov 18:00), in the week before, and two weeks back (outside the window)."""
    DrainControl.objects.create(name="halacha", quota_key=API_KEY)
    DrainControl.objects.create(name="metadata", quota_key=CLI_KEY)
    # this week, API_KEY
    make_run("halacha", started_at=at(1, 9, month=12), input_tokens=1_000_000, output_tokens=50_000,
             cache_creation_input_tokens=20_000, cache_read_input_tokens=300_000,
             cost_usd=Decimal("12.50"), items_done=300, items_failed=2)
    make_run("halacha", started_at=at(2, 8, month=12), status="rate_limited", input_tokens=300_000,
             output_tokens=10_000, cache_read_input_tokens=100_000, cost_usd=Decimal("5.70"),
             items_done=112)
    make_run("halacha", started_at=at(28, 18), status="running", input_tokens=1, cost_usd=0,
             items_done=0)  # opens the week exactly at the boundary: this week
    # this week, CLI_KEY
    make_run("metadata", started_at=at(30, 12), input_tokens=2_000, output_tokens=300,
             cost_usd=Decimal("0.75"), items_done=10, items_failed=1)
    # last week
    make_run("halacha", started_at=at(25, 10), status="rate_limited", input_tokens=500_000,
             output_tokens=20_000, cost_usd=Decimal("7.00"), items_done=100)
    make_run("halacha", started_at=at(26, 10), status="rate_limited")
    make_run("metadata", started_at=at(28, 17, 59), input_tokens=7, output_tokens=1,
             cost_usd=Decimal("0.07"), items_done=1)
    # two weeks back: outside both weeks
    make_run("halacha", started_at=at(21, 17, 59), input_tokens=999, cost_usd=Decimal("99"),
             items_done=99)
    _halachot(455, at(28, 18), "this")
    _halachot(140, at(22, 9), "last")
    _halachot(7, at(20, 9), "older")


def test_quota_weeks__end_at_the_burst_week_boundary(frozen):
    weeks = quota_weeks(BOUNDARY - timedelta(days=3), 3)
    assert [(w.start, w.end) for w in weeks] == [
        (THIS_WEEK_START, BOUNDARY), (LAST_WEEK_START, THIS_WEEK_START),
        (at(14, 18), LAST_WEEK_START)]


def test_quota_weeks__across_the_spring_clock_change():
    # Israel moves to +03:00 on Fri 27 Mar 2026: both boundaries are still Saturday 18:00 local.
    weeks = quota_weeks(datetime(2026, 3, 30, 12, 0, tzinfo=JERUSALEM), 2)
    assert [w.end.astimezone(JERUSALEM).isoformat() for w in weeks] == [
        "2026-04-04T18:00:00+03:00", "2026-03-28T18:00:00+03:00"]
    assert weeks[1].start.astimezone(JERUSALEM).isoformat() == "2026-03-21T18:00:00+02:00"


def test_usage_by_week__sums_per_quota_key_and_week(known_usage):
    rows = {(u.quota_key, u.current): u for u in usage_by_week(weeks=2)}
    assert set(rows) == {(API_KEY, True), (CLI_KEY, True), (API_KEY, False), (CLI_KEY, False)}

    api = rows[(API_KEY, True)]
    assert (api.week.start, api.week.end) == (THIS_WEEK_START, BOUNDARY)
    assert api.runs == 3
    assert api.input_tokens == 1_300_001
    assert api.output_tokens == 60_000
    assert api.cache_creation_input_tokens == 20_000
    assert api.cache_read_input_tokens == 400_000
    assert api.cost_usd == Decimal("18.20")
    assert (api.items_done, api.items_failed, api.calls) == (412, 2, 414)
    assert api.refused_calls == 1
    ((halachot),) = api.products
    assert (halachot.drain, halachot.product, halachot.count) == ("halacha", "halachot", 455)
    assert (halachot.cost_usd, halachot.cost_each) == (Decimal("18.20"), Decimal("0.04"))

    cli = rows[(CLI_KEY, True)]
    assert (cli.runs, cli.input_tokens, cli.output_tokens, cli.cost_usd) == (1, 2_000, 300,
                                                                             Decimal("0.75"))
    assert (cli.calls, cli.refused_calls) == (11, 0)
    # The metadata drain counts its own product (none done here), never as halachot.
    ((records),) = cli.products
    assert (records.product, records.count, records.cost_each) == ("metadata records", 0, None)

    last = rows[(API_KEY, False)]
    assert (last.week.start, last.week.end) == (LAST_WEEK_START, THIS_WEEK_START)
    assert (last.runs, last.input_tokens, last.cost_usd) == (2, 500_000, Decimal("7.00"))
    assert (last.items_done, last.refused_calls) == (100, 2)
    assert [(p.product, p.count, p.cost_each) for p in last.products] == [
        ("halachot", 140, Decimal("0.05"))]
    cli_last = rows[(CLI_KEY, False)]
    assert (cli_last.runs, cli_last.input_tokens, cli_last.cost_usd) == (1, 7, Decimal("0.07"))


def test_usage_by_week__same_query_count_for_1_and_50_runs(frozen, make_run):
    DrainControl.objects.create(name="halacha", quota_key=API_KEY)
    make_run("halacha", started_at=at(1, 9, month=12), input_tokens=10, cost_usd=Decimal("0.01"))
    with CaptureQueriesContext(connection) as one:
        assert usage_by_week(weeks=2)[0].input_tokens == 10
    for i in range(49):
        make_run("halacha" if i % 2 else "metadata", started_at=at(1, 10, month=12) + timedelta(minutes=i),
                 input_tokens=10, cost_usd=Decimal("0.01"))
    with CaptureQueriesContext(connection) as fifty:
        rows = usage_by_week(weeks=2)
    assert len(fifty) == len(one)
    assert sum(u.runs for u in rows) == 50
    assert sum(u.input_tokens for u in rows) == 500


def _current(data, key):
    return next(u for u in data["usage"] if u["quota_key"] == key and u["current"])


def test_snapshot__usage_equals_the_sums_of_the_runs(api, known_usage):
    data = api.get(URL).json()
    this = _current(data, API_KEY)
    assert this == {
        "quota_key": API_KEY,
        "week_start": "2026-11-28T18:00:00+02:00",
        "week_end": "2026-12-05T18:00:00+02:00",
        "current": True,
        "runs": 3,
        "input_tokens": 1_300_001,
        "output_tokens": 60_000,
        "cache_creation_input_tokens": 20_000,
        "cache_read_input_tokens": 400_000,
        "cost_usd": 18.2,
        "calls": 414,
        "refused_calls": 1,
        "items_done": 412,
        "items_failed": 2,
        "products": [{"drain": "halacha", "product": "halachot", "count": 455,
                      "cost_usd": 18.2, "cost_each": 0.04}],
        "text": "this week: 412 items, 1.3 M input tokens, $18.20, 1 refused call; "
                "455 halachot at $0.04 each",
    }
    # The same sums straight from the table, so the figures are the runs' and nothing else.
    from django.db.models import Sum
    week = DrainRun.objects.filter(drain="halacha", started_at__gte=THIS_WEEK_START,
                                   started_at__lt=BOUNDARY)
    assert this["input_tokens"] == week.aggregate(n=Sum("input_tokens"))["n"]
    assert [u["current"] for u in data["usage"]] == [True, True, False, False]
    last = next(u for u in data["usage"] if u["quota_key"] == API_KEY and not u["current"])
    assert last["text"] == ("week to Sat 28 Nov: 100 items, 500.0 k input tokens, $7.00, "
                            "2 refused calls; 140 halachot at $0.05 each")
    assert _current(data, CLI_KEY)["products"] == [
        {"drain": "metadata", "product": "metadata records", "count": 0, "cost_usd": 0.75,
         "cost_each": None}]


def test_snapshot__usage_is_documented_in_the_schema(api, db):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    props = schema["components"]["schemas"]["Usage"]["properties"]
    assert {"quota_key", "input_tokens", "cost_usd", "calls", "refused_calls", "products",
            "text"} <= set(props)
    product = schema["components"]["schemas"]["Product"]["properties"]
    assert {"drain", "product", "count", "cost_usd", "cost_each"} <= set(product)
    assert "usage" in schema["components"]["schemas"]["Snapshot"]["properties"]


def test_digest__shows_this_weeks_usage_per_quota_key(known_usage):
    _, body = render_digest(build_digest())
    assert f"Quota {API_KEY}" in body
    assert ("this week: 412 items, 1.3 M input tokens, $18.20, 1 refused call; "
            "455 halachot at $0.04 each") in body
    assert "tokens: 1300001 input, 60000 output, 20000 cache creation, 400000 cache read" in body
    assert "calls: 414 (1 refused)" in body
    assert f"Quota {CLI_KEY}" in body
    assert "this week: 10 items, 2.0 k input tokens, $0.75; 0 metadata records" in body


def test_metrics__usage_gauges_per_quota_key(known_usage):
    s = samples(render_metrics().decode())
    assert value(s, "drains_quota_week_tokens", quota_key=API_KEY, kind="input") == 1_300_001
    assert value(s, "drains_quota_week_tokens", quota_key=API_KEY, kind="cache_read_input") == 400_000
    assert value(s, "drains_quota_week_cost_usd", quota_key=API_KEY) == 18.2
    assert value(s, "drains_quota_week_calls", quota_key=API_KEY) == 414
    assert value(s, "drains_quota_week_refused_calls", quota_key=API_KEY) == 1
    assert value(s, "drains_quota_week_items_done", quota_key=API_KEY) == 412
    halachot = {"quota_key": API_KEY, "drain": "halacha", "product": "halachot"}
    assert value(s, "drains_quota_week_produced", **halachot) == 455
    assert value(s, "drains_quota_week_cost_per_product_usd", **halachot) == 0.04
    assert value(s, "drains_quota_week_cost_usd", quota_key=CLI_KEY) == 0.75
    records = {"quota_key": CLI_KEY, "drain": "metadata", "product": "metadata records"}
    assert value(s, "drains_quota_week_produced", **records) == 0
    assert not [k for k in s if k[0] == "drains_quota_week_cost_per_product_usd"
                and ("quota_key", CLI_KEY) in k[1]]  # made none: no cost each


def test_two_drains_on_one_key_count_and_price_each_its_own_product(frozen, make_run, api):
    """A second producing drain on the same quota is never counted as the first's product."""
    DrainControl.objects.create(name="halacha", quota_key=API_KEY)
    DrainControl.objects.create(name="metadata", quota_key=API_KEY)
    make_run("halacha", started_at=at(1, 9, month=12), cost_usd=Decimal("9.00"), items_done=30)
    make_run("metadata", started_at=at(1, 10, month=12), cost_usd=Decimal("0.60"), items_done=3)
    _halachot(45, at(1, 9, month=12), "both")
    for i in range(3):
        meta = CourtDecision.objects.create(external_id=f"meta-{i}", text="t",
                                            text_sha256=f"m{i}".rjust(64, "0"))
        set_state("metadata", [meta], "done", done_at=at(1, 10, month=12))
    (week,) = [u for u in usage_by_week(weeks=1) if u.quota_key == API_KEY]
    assert [(p.drain, p.product, p.count, p.cost_usd, p.cost_each) for p in week.products] == [
        ("halacha", "halachot", 45, Decimal("9.00"), Decimal("0.2")),
        ("metadata", "metadata records", 3, Decimal("0.60"), Decimal("0.2")),
    ]
    (entry,) = [u for u in api.get(URL).json()["usage"] if u["quota_key"] == API_KEY]
    assert entry["text"].endswith("; 45 halachot at $0.20 each, 3 metadata records at $0.20 each")
