"""The quota autopilot over a week in compressed time, against the API stand-in's quota model.

The 7-day window is ``--week-seconds`` (600 s: about 10 minutes) and every duration is scaled the
same way (the 5-hour window 17.9 s, the supervisor's 15 minutes 0.89 s, the reserve's 6-hour
release 21.4 s). Each seed is one account: the stand-in's windows (tests/support/anthropic_stub.py
``QuotaModel``, the week opening at 0 % when the bench starts) and an owner who spends from the
same windows on a schedule drawn from the seed (a different share of the week, on different
days). Its drain has a backlog larger than the week can pay for. In one run, side by side, each
seed's week is spent four ways, each on its own account and drain:

- ``autopilot``: the autopilot on, the reserve (10 %) released over the last 6 h;
- ``ap-no-release``: the autopilot on, the reserve never released;
- ``cron``: cron only (the baseline without a burst);
- ``manual``: an operator's burst started at a fixed point, 2 days before the reset, until the
  default deadline (the burst week, which follows the observed reset), as the Saturday rule has
  an operator do it; the reserve released as in ``autopilot``;
- ``autopilot-cli`` (only with ``--ways``, the first seed only): ``autopilot`` with the drain's
  calls made by the real pinned Claude CLI as a subscriber (an OAuth token, the stand-in as its
  API, tests/support/real_claude.py's world), reading its stream-json ``rate_limit_event``
  lines; a CLI call takes seconds, so its calls are 5x larger (1 % of the week, 10 % of the
  5-hour window), the owner's the same share of the week in fewer, larger calls, and its cron
  fires every 5 hours (the same share of the week as the others' hourly 1-item run).

The real runtime runs the drains (``run_drain``, the real ``anthropic`` SDK against the stand-in,
the ceiling, the probe, the session wait) and real supervisor ticks decide (``supervise``, with
its autopilot step); two things are stand-ins, for speed: the supervisor's step 6 starts a drain
in a thread of this process instead of a detached ``manage.py`` (the same ``run_drain``), and
cron is a loop here firing a normal run (1 item, the bench's cron budget) every scaled hour.

Per seed and way it prints: the week's utilization at the reset, what lapsed (the ceiling at the
reset minus that), refused calls (and how many of them were a probe after a reset), reserve
breaches (drain calls that started with the drains' latest reading already at or past the
ceiling in force, beyond the calls in flight) and the worst latency from a 5-hour reset to the
drain's first call after it, while the drain was held by that window (scaled to the real week).

Goals (every seed): with the release, at most 3 % of the week unused at the reset; without it,
at most 5 % below the ceiling; 0 breaches; no refused call but a probe after a reset; the first
call at most 60 s (scaled) after a reset.

    .venv/bin/python bench/autopilot.py [--week-seconds 600] [--seeds 5] [--seed 1]
    .venv/bin/python bench/autopilot.py --seeds 1 --ways autopilot-cli,cron
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.drain_throughput import admin_execute, server_url  # noqa: E402

WEEK_HOURS = 168.0
WAYS = ("autopilot", "ap-no-release", "cron", "manual")  # and "autopilot-cli" (--ways)
WEEK_PER_CALL = 0.002  # 500 calls fill the week
SESSION_PER_CALL = 0.02  # 50 calls fill a 5-hour window: one full window is 10 % of the week
LATENCY = 0.08  # seconds per call (about 80 s of the real week)
RESERVE = 0.10
RELEASE_HOURS = 6.0
MANUAL_START_HOURS = 48.0  # before the reset
CRON_EVERY_HOURS = 1.0
BACKLOG = 700  # more than the week can pay for (500 calls at most)


def setup_django(database: str) -> None:
    os.environ["DATABASE_URL"] = server_url(database)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["HALACHA_EXTRACTOR"] = "anthropic"
    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-bench"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    for name in ("drains", "halacha", "httpx", "httpx2", "anthropic"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def scale_settings(scale: float) -> None:
    """Every duration the autopilot, the ceiling and the runner use, compressed like the week."""
    from django.conf import settings

    hour = scale  # one hour of the week, in real hours
    settings.DRAINS_QUOTA_WEEKLY_RESERVE = RESERVE
    settings.DRAINS_QUOTA_SESSION_RESERVE = 0.0
    settings.DRAINS_QUOTA_SESSION_HOURS = 5 * hour
    settings.DRAINS_QUOTA_WEEK_HOURS = WEEK_HOURS * hour
    settings.DRAINS_QUOTA_DEFAULT_SPEND_RATE = 0.01 / hour
    settings.DRAINS_QUOTA_RATE_MAX_GAP_SECONDS = 600 * scale
    settings.DRAINS_SUPERVISOR_INTERVAL_MINUTES = 15 * scale
    settings.DRAINS_BURST_WAIT_MAX_HOURS = 6 * hour
    settings.DRAINS_SESSION_RESUME_SECONDS = 2 * scale
    settings.DRAINS_FALLBACK_BACKOFF_SECONDS = 1
    settings.DRAINS_PROBE_WAIT_SECONDS = max(0.5, 600 * scale)
    settings.DRAINS_DEFAULT_MAX_ITEMS = 1  # the bench's cron budget: one item an hour
    settings.DRAINS_DEFAULT_MAX_MINUTES = 12 * 60 * scale / 60
    settings.DRAINS_HUNG_AFTER_SECONDS = 60
    settings.DRAINS_CHUNK_SIZE = 5


def owner_schedule(
    seed: int, start: float, week: float, per_call: float = WEEK_PER_CALL
) -> tuple[list[float], float]:
    """The owner's calls: a share of the week drawn from the seed, in sessions of a few (scaled)
    hours on days the seed picks, by day rather than by night."""
    rng = random.Random(seed)
    share = rng.uniform(0.10, 0.40)
    calls = int(share / per_call)
    hour = week / WEEK_HOURS
    weights = [rng.uniform(0.2, 1.5) for _ in range(7)]
    times: list[float] = []
    while len(times) < calls:
        day = rng.choices(range(7), weights)[0]
        begin = day * 24 + rng.uniform(8, 22)
        for _ in range(rng.randint(5, 25)):
            at = begin + rng.uniform(0, 2.5)
            if at < WEEK_HOURS and len(times) < calls:
                times.append(start + at * hour)
    return sorted(times), share


@dataclass
class Way:
    seed: int
    way: str
    stub: object = None
    drain: str = ""
    quota_key: str = ""
    owner_share: float = 0.0
    threads: list = field(default_factory=list)
    manual_started: bool = False


def make_drain(way: Way, index: int):
    """A drain of its own for one way: its own decisions, its own account (stand-in)."""
    import anthropic
    from django.db.models import Q

    from drains import registry
    from drains.runner import Source
    from halacha.drain import HalachaDrain
    from halacha.extractors.anthropic_api import AnthropicExtractor
    from halacha.models import CourtDecision

    prefix = f"w{index:02d}-"
    url = way.stub.url
    cli = way.way == "autopilot-cli"

    class WayExtractor(AnthropicExtractor):
        _client = None

        def quota_key(self) -> str:
            return way.quota_key

        def client(self):
            # One client per run, kept (the backend makes one per call; building one costs tens
            # of milliseconds, which the compressed week would scale up to minutes). The
            # backend closes it after each call: closing it here is left to the end of the run.
            if self._client is None:
                self._client = anthropic.Anthropic(api_key="sk-ant-bench", base_url=url,
                                                   max_retries=0, timeout=30)
                self._client.close = lambda: None
            return self._client

    class WayDrain(HalachaDrain):
        name = f"bench_{index:02d}"
        command = f"drain_bench_{index:02d}"

        source = Source(CourtDecision, version_field="text_sha256",
                        where=Q(external_id__startswith=prefix))

        def make_extractor(self):
            if cli:  # the real pinned CLI as a subscriber, the stand-in as its API
                from halacha.extractors.claude_cli import ClaudeCliExtractor

                return ClaudeCliExtractor()
            return WayExtractor()

    registry.register(WayDrain)
    CourtDecision.objects.bulk_create(
        CourtDecision(external_id=f"{prefix}{i:05d}", text=f"Decision {i}. We hold rule {i}.")
        for i in range(BACKLOG)
    )
    WayDrain.sync()
    return WayDrain.name


CLI_WEEK_PER_CALL = 0.01  # the real CLI way: 100 calls fill the week (a call takes ~1-2 s)
CLI_SESSION_PER_CALL = 0.1  # 10 calls fill a 5-hour window (still 10 % of the week)


def use_real_cli(stub_url: str, home: Path) -> None:
    """The claude-cli backend runs the real pinned CLI, logged in as a subscriber (an OAuth
    token, any string), with the stand-in as its API (tests/support/real_claude.py's world)."""
    from django.conf import settings

    from tests.support.real_claude import FOREIGN, isolated_env, real_cli

    (home / ".claude").mkdir(parents=True, exist_ok=True)
    for name in FOREIGN:
        os.environ.pop(name, None)
    os.environ.update(isolated_env(stub_url, home))
    os.environ.pop("ANTHROPIC_API_KEY", None)
    os.environ["CLAUDE_CODE_OAUTH_TOKEN"] = "bench-oauth-token"
    settings.CLAUDE_CLI = str(real_cli())
    settings.CLAUDE_CONFIG_DIR = str(home / ".claude")
    settings.HALACHA_CLI_TIMEOUT_SECONDS = 120
    settings.HALACHA_CLI_MODEL = "claude-sonnet-4-6"
    settings.HALACHA_CLI_EXTRA_ARGS = ""


def start_run(way: Way, trigger: str) -> str:
    from drains.runner import run_drain

    alive = [t for t in way.threads if t.is_alive()]
    way.threads = alive
    if alive:
        return "already running"

    def target():
        from django.db import connections

        try:
            run_drain(way.drain, trigger=trigger)
        except Exception as exc:  # a failed run is recorded on its row; the week goes on
            logging.getLogger("bench").warning("%s: %s", way.drain, exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, daemon=True, name=way.drain)
    thread.start()
    way.threads.append(thread)
    return f"started {way.drain} in a thread"


def burst_spans(drain: str, week_reset: float) -> list[tuple[float, float]]:
    """When the drain's bursts were on: from each burst_on to its deadline or the event that
    ended it (off, ended, expired)."""
    from drains.models import DrainEvent, EventKind

    ends = {EventKind.BURST_OFF, EventKind.BURST_ENDED, EventKind.BURST_EXPIRED}
    spans, opened = [], None
    for kind, at, data in DrainEvent.objects.filter(drain=drain).order_by("at", "id").values_list(
        "kind", "at", "data"
    ):
        if kind == EventKind.BURST_ON:
            until = data.get("until")
            opened = (at.timestamp(), week_reset if until is None else
                      min(week_reset, datetime.fromisoformat(until).timestamp()))
            spans.append(opened)
        elif kind in ends and opened is not None:
            spans[-1] = (opened[0], min(opened[1], at.timestamp()))
            opened = None
    return spans


def ceiling_at(t: float, reset: float, release_seconds: float) -> float:
    if release_seconds <= 0:
        return 1.0 - RESERVE
    return 1.0 - RESERVE * min(1.0, max(0.0, reset - t) / release_seconds)


def measure(way: Way, week_reset: float, release_seconds: float, scale: float) -> dict:
    from drains.models import DrainEvent, EventKind

    model = way.stub.quota
    model.state()  # brought up to now: the week's reset is recorded with what it ended at
    week_end = next((r for r in model.resets if r.window == "seven_day"), None)
    end_u = week_end.utilization if week_end else model.state()["seven_day"][0]
    first_burst = (DrainEvent.objects.filter(drain=way.drain, kind=EventKind.BURST_ON)
                   .order_by("at").values_list("at", flat=True).first())
    final_ceiling = 1.0 if release_seconds > 0 else 1.0 - RESERVE
    calls = [c for c in model.calls if c.at < week_reset]
    refused = [c for c in calls if not c.answered]
    # A probe: the first call after a reset or after a wait (a backoff that expired), which may
    # find the window full again (the owner spent it meanwhile).
    session_resets = [r.at for r in model.resets if r.window == "five_hour"]
    previous = {id(c): p for p, c in zip([None, *calls], calls, strict=False)}
    probes = [
        c for c in refused
        if any(0 <= c.at - r <= 600 * scale for r in session_resets)
        or previous[id(c)] is None or c.at - previous[id(c)].at >= 15 * 60 * scale
    ]
    breaches = 0
    known, known_at = None, 0.0  # the drains' latest reading (their previous call's answer)
    details = []
    for call in calls:
        if known is not None and call.answered:
            week_ceiling = ceiling_at(call.at, week_reset, release_seconds)
            session_reset_since = any(known_at < r <= call.at for r in session_resets)
            if known["seven_day"] >= week_ceiling - 1e-9:
                breaches += 1
                details.append(("breach week", call, known, week_ceiling))
            elif known["five_hour"] >= 1.0 - 1e-9 and not session_reset_since:
                breaches += 1
                details.append(("breach session", call, known, 1.0))
        if not call.answered:
            details.append(("refused", call, known, None))
        if call.answered:
            known, known_at = call.after, call.at
    for what, call, seen, ceiling in details:
        print(f"    {way.drain} {what}: R-{(week_reset - call.at) / (3600 * scale):.2f} h, "
              f"before {call.before}, known {seen}, ceiling {ceiling}", flush=True)
    # Latency after a 5-hour reset that held the drain in a burst: its window was full when it
    # reset, and the week was below its ceiling (else the week, not the session, held it).
    latencies = []
    session_step = model.windows["five_hour"].per_call
    spans = burst_spans(way.drain, week_reset)
    for reset in model.resets:
        if reset.window != "five_hour" or reset.utilization < 1.0 - session_step - 1e-9:
            continue
        if not any(a <= reset.at < b for a, b in spans) or reset.at >= week_reset - 1:
            continue
        nxt = next((c for c in calls if c.at >= reset.at), None)
        if nxt is None:
            continue
        if nxt.before["seven_day"] >= ceiling_at(reset.at, week_reset, release_seconds) - 1e-9:
            continue
        latencies.append(nxt.at - reset.at)
    return {
        "week_end": end_u,
        "lapsed": max(0.0, final_ceiling - end_u),
        "unused": 1.0 - end_u,
        "calls": sum(1 for c in calls if c.answered),
        "refused": len(refused),
        "refused_not_probe": len(refused) - len(probes),
        "breaches": breaches,
        "latency_scaled": max(latencies) / scale if latencies else None,
        "latency_real_ms": max(latencies) * 1000 if latencies else None,
        "held_resets": len(latencies),
        "owner_share": way.owner_share,
        "burst_start_hours_before_reset": (
            (week_reset - first_burst.timestamp()) / (3600 * scale) if first_burst else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--week-seconds", type=float, default=600.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1, help="the first seed")
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args()
    ways_wanted = args.ways.split(",")
    week = args.week_seconds
    scale = week / (WEEK_HOURS * 3600)  # real seconds per second of the week
    hour = week / WEEK_HOURS  # real seconds per hour of the week

    database = f"bench_autopilot_{os.getpid()}"
    admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    stubs = []
    try:
        setup_django(database)
        scale_settings(scale)
        from django.utils import timezone

        from drains import registry
        from drains.bursts import DEFAULT_DEADLINE, set_drain_burst
        from drains.models import DrainControl
        from drains.quota.controls import set_quota_policy
        from drains.supervisor import actions
        from drains.supervisor.tick import supervise
        from tests.support.anthropic_stub import (
            AnthropicStub,
            QuotaModel,
            StubResponse,
            message_body,
            owner_at,
        )

        for name in list(registry.names()):
            registry.unregister(name)  # only the bench's drains
        reply = json.dumps({"halachot": []})

        def answer(_request):
            return StubResponse(200, message_body(reply), delay=LATENCY)

        start = float(math.ceil(time.time()) + 2)
        week_reset = start + week
        ways: list[Way] = []
        for seed in range(args.seed, args.seed + args.seeds):
            for way_name in ways_wanted:
                if way_name == "autopilot-cli" and seed != args.seed:
                    continue  # one seed through the real CLI
                cli = way_name == "autopilot-cli"
                week_per_call = CLI_WEEK_PER_CALL if cli else WEEK_PER_CALL
                session_per_call = CLI_SESSION_PER_CALL if cli else SESSION_PER_CALL
                # The same owner in every way of a seed: the same times, the same share of the
                # week (fewer, larger calls where the way's calls are larger).
                times, share = owner_schedule(seed, start, week)
                way = Way(seed, way_name, owner_share=share)
                model = QuotaModel(week_per_call=week_per_call, session_per_call=session_per_call,
                                   week_seconds=week, session_seconds=5 * hour,
                                   week_resets_in=week_reset - time.time(),
                                   owner=owner_at(times, calls=WEEK_PER_CALL / week_per_call))
                model.windows["seven_day"].resets_at = week_reset
                way.stub = AnthropicStub(quota=model, responder=answer).__enter__()
                stubs.append(way.stub)
                way.quota_key = f"bench:{seed}:{way_name}"
                if cli:
                    use_real_cli(way.stub.url, Path(f"/tmp/bench_autopilot_{os.getpid()}"))
                    from halacha.extractors.claude_cli import ClaudeCliExtractor

                    way.quota_key = ClaudeCliExtractor().quota_key()
                way.drain = make_drain(way, len(ways))
                DrainControl.objects.create(name=way.drain, quota_key=way.quota_key)
                release = 0 if way_name in ("ap-no-release", "cron") else RELEASE_HOURS
                set_quota_policy(quota_key=way.quota_key, actor="bench",
                                 reserve_release_hours=release * scale,
                                 autopilot="on" if way_name.startswith(("ap", "autopilot"))
                                 else "off")
                ways.append(way)
        by_drain = {w.drain: w for w in ways}
        actions.start_if_backlog = lambda name: start_run(by_drain[name], "supervisor")

        print(f"{len(ways)} weeks side by side ({args.seeds} seeds x {', '.join(ways_wanted)}): "
              f"the week {week:g} s (1 h = {hour:.2f} s), reserve {RESERVE:.0%}, "
              f"{WEEK_PER_CALL:.1%} of the week and {SESSION_PER_CALL:.0%} of the 5-hour window "
              f"a call, {LATENCY * 1000:.0f} ms a call, backlog {BACKLOG} a drain", flush=True)
        while time.time() < start:
            time.sleep(0.05)
        next_tick = start
        # Cron spends the same share of the week in every way: the CLI way's calls are 5x
        # larger, so its cron fires every 5 hours.
        next_cron = {way.drain: start for way in ways}
        cron_every = {way.drain: CRON_EVERY_HOURS * hour * (
            CLI_WEEK_PER_CALL / WEEK_PER_CALL if way.way == "autopilot-cli" else 1)
            for way in ways}
        interval = 15 * 60 * scale
        while time.time() < week_reset + 1:
            now = time.time()
            for way in ways:
                if now >= next_cron[way.drain] and now < week_reset:
                    start_run(way, "cron")
                    next_cron[way.drain] += cron_every[way.drain]
            if now >= next_tick:
                supervise(write=lambda line: None)
                next_tick += interval
            for way in ways:
                if (way.way == "manual" and not way.manual_started
                        and now >= week_reset - MANUAL_START_HOURS * hour):
                    set_drain_burst(name=way.drain, until=DEFAULT_DEADLINE, actor="bench-operator")
                    way.manual_started = True
            time.sleep(0.02)
        for way in ways:
            for thread in way.threads:
                thread.join(timeout=30)
        _ = timezone.now()

        rows = []
        header = (f"{'seed':>4} {'way':<14} {'owner':>6} {'week end':>9} {'lapsed':>7} "
                  f"{'unused':>7} {'calls':>6} {'refused':>8} {'(probe)':>8} {'breaches':>9} "
                  f"{'reset->call (real)':>19} {'burst from':>11}")
        print(header)
        for way in ways:
            release_seconds = (0 if way.way in ("ap-no-release", "cron") else RELEASE_HOURS * hour)
            m = measure(way, week_reset, release_seconds, scale)
            m.update(seed=way.seed, way=way.way)
            rows.append(m)
            latency = ("-" if m["latency_scaled"] is None else
                       f"{m['latency_scaled']:.0f} s ({m['latency_real_ms']:.0f} ms)")
            burst = m["burst_start_hours_before_reset"]
            burst = "-" if burst is None else f"R-{burst:.0f} h"
            print(f"{way.seed:>4} {way.way:<14} {m['owner_share']:>6.0%} {m['week_end']:>9.1%} "
                  f"{m['lapsed']:>7.1%} {m['unused']:>7.1%} {m['calls']:>6} {m['refused']:>8} "
                  f"{m['refused'] - m['refused_not_probe']:>8} {m['breaches']:>9} "
                  f"{latency:>19} {burst:>11}")
        goals = []
        for m in rows:
            if m["way"] in ("autopilot", "autopilot-cli"):
                goals.append(("unused <= 3 %", m["unused"] <= 0.03))
            if m["way"] == "ap-no-release":
                goals.append(("lapsed <= 5 %", m["lapsed"] <= 0.05))
            if m["way"] in ("autopilot", "ap-no-release", "autopilot-cli"):
                goals.append(("0 breaches", m["breaches"] == 0))
                goals.append(("refused only probes", m["refused_not_probe"] == 0))
                goals.append(("reset->call <= 60 s", (m["latency_scaled"] or 0) <= 60))
        for label in dict.fromkeys(label for label, _ in goals):
            met = all(ok for name, ok in goals if name == label)
            print(f"goal {label:<22} (autopilot ways, every seed): {'met' if met else 'NOT met'}")
        for baseline in ("cron", "manual"):
            mine = [m["lapsed"] for m in rows if m["way"] == "autopilot"]
            theirs = [m["lapsed"] for m in rows if m["way"] == baseline]
            if mine and theirs:
                print(f"lapsed, mean: autopilot {sum(mine) / len(mine):.1%}, {baseline} "
                      f"{sum(theirs) / len(theirs):.1%}")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
    finally:
        for stub in stubs:
            stub.__exit__(None, None, None)
        from django.db import connections

        connections.close_all()
        admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(database)))


if __name__ == "__main__":
    main()
