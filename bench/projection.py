"""How right is the finish-time projection the /operations page shows? A simulated burst, measured.

A burst of ``--decisions`` decisions goes through the real runtime (``drains.runner.run_drain``,
the halacha drain, real PostgreSQL) on a compressed clock (real time at a small scale):

- an extractor whose latency varies (lognormal around ``--latency-ms``, seeded with ``--seed``);
- a session limit in the middle of the run: after ``--limit-at`` of the work the extractor
  answers with a usage limit whose reset is ``--reset-seconds`` away (the CLI's
  ``usage limit reached|<epoch ms>`` form, read by the one reset parser); the run ends
  rate_limited and the backoff is written;
- the reset, and the restart after it the way the supervisor does it (``--restart-delay`` after
  the reset, a compressed supervisor tick): the new run makes its probe call alone
  (drains/runner/probe.py), then goes on at ``--concurrency``.

While it runs, a second thread watches the backlog. At 25 % and at 50 % of the work done it
records the projection the page shows (``operations.selectors.service_entry``, the same code as
the API and the page; the window is ``DRAINS_PROJECTION_WINDOW_MINUTES``, set here to
``--window-seconds`` because the clock is compressed) and, as the baseline in the same run, the
projection of the old rule: the items done in the last window of wall time, divided by it (the
page's "items done in the last hour", with the hour scaled like the window). It also records
both while the backoff is in force (both start at the known reset). After the burst it compares
each with the actual finish (the last run's end) and prints the error as a percentage of the
time that remained: positive means the projection was too late. Goal: within ±15 % at 25 % and
at 50 %.

The limit comes early (``--limit-at 0.15``) so that both marks fall after the reset, with the
backoff in the window's history: a limit that has not happened yet is in no history, and no rate
can foresee it (``--limit-at 0.35`` shows that: at 25 % the projection is early by about the
backoff's share of the time left). Items take 80 ms on average: at 40 ms the runtime's own
CPU time per item (staging, promotion, checkpoints, on two cores shared with the database) is a
larger share, and other load on the machine moves the figures more (``--latency-ms 40``).

Uses DATABASE_URL's server when set, else the embedded PostgreSQL; creates and drops its own
database (bench_projection_<pid>).

    .venv/bin/python bench/projection.py [--decisions 400] [--concurrency 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import statistics
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import admin_execute, server_url  # noqa: E402
from bench.drain_throughput import load_backlog  # noqa: E402

POINTS = (0.25, 0.50)
GOAL = 15.0  # per cent of the remaining time


def setup_django(database: str, window_seconds: float) -> None:
    os.environ["DATABASE_URL"] = server_url(database)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    # This module's extractor; the runtime loads it by name, as it loads any backend.
    os.environ["HALACHA_EXTRACTOR"] = "__main__:BurstExtractor"
    import django
    from django.conf import settings

    django.setup()
    settings.DRAINS_PROJECTION_WINDOW_MINUTES = window_seconds / 60
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    logging.getLogger("drains").setLevel(logging.ERROR)


def make_extractor_class():
    """Built after django.setup(): the extractor base classes import Django models."""
    from django.utils import timezone

    from drains.quota.resets import parse_reset
    from tests.support.extractors import InstantExtractor

    class BurstExtractor(InstantExtractor):
        """Seeded varying latency; one session limit after ``limit_after`` calls.

        From the first refused call on, every call is refused until the reset, which is
        ``reset_seconds`` after that call; after the reset every call is answered again.
        State is per class: the runtime makes a new instance per run.
        """

        rng = random.Random(0)
        mean = 0.04
        sigma = 0.5
        limit_after: int | None = None
        reset_seconds = 3.0
        reset_at: datetime | None = None
        calls = 0
        refused = 0
        lock = threading.Lock()

        @classmethod
        def configure(cls, *, seed, mean, limit_after, reset_seconds) -> None:
            cls.rng = random.Random(seed)
            cls.mean, cls.limit_after, cls.reset_seconds = mean, limit_after, reset_seconds
            cls.reset_at, cls.calls, cls.refused = None, 0, 0

        def call(self, request):
            cls = type(self)
            with cls.lock:
                cls.calls += 1
                # lognormal with the given mean: exp(mu + sigma^2 / 2) = mean
                latency = cls.rng.lognormvariate(math.log(cls.mean) - cls.sigma**2 / 2, cls.sigma)
                now = timezone.now()
                if cls.reset_at is None and cls.limit_after is not None \
                        and cls.calls > cls.limit_after:
                    cls.reset_at = now + timedelta(seconds=cls.reset_seconds)
                refuse = cls.reset_at is not None and now < cls.reset_at
                if refuse:
                    cls.refused += 1
            if refuse:
                message = f"Claude AI usage limit reached|{int(cls.reset_at.timestamp() * 1000)}"
                raise parse_reset(message, now).rate_limited(message)
            time.sleep(latency)
            return self._reply(request)

    return BurstExtractor


BurstExtractor = None  # set in main(), after django.setup()


def old_last_window_rate(runs, *, now: datetime, window: timedelta) -> float:
    """THE OLD RULE, kept here as the baseline: the items done in the last ``window`` of wall
    time (each run's items spread evenly over its span, as ``done_per_hour`` does), per hour.
    Backoffs, pauses and concurrency are not taken into account."""
    start, done = now - window, 0.0
    for run in runs:
        length = (run.end - run.start).total_seconds()
        lo, hi = max(run.start, start), min(run.end, now)
        if length <= 0:
            done += run.items if start <= run.end <= now else 0
        elif hi > lo:
            done += run.items * (hi - lo).total_seconds() / length
    return done / window.total_seconds() * 3600


def observe(name: str = "halacha") -> dict:
    """The page's projection now, and the old rule's on the same data."""
    from django.conf import settings
    from django.utils import timezone

    from drains.selectors import snapshot as reads
    from operations import projection as proj
    from operations.selectors import service_entry

    now = timezone.now()
    entry = service_entry(name, now=now)
    window = timedelta(minutes=settings.DRAINS_PROJECTION_WINDOW_MINUTES)
    [runs] = reads.fetch([reads.recent_runs([name], now, now - window - proj.SESSION_BOUND)])
    spans = runs[name]
    backoff = entry["backoff"]
    start = max(now, backoff["until"]) if backoff else now
    pending = entry["backlog"]["pending"] + entry["backlog"]["staged"]
    old = proj.project(pending=pending, rate_per_hour=old_last_window_rate(spans, now=now,
                       window=window), now=start, deadline=entry["projection"]["deadline"],
                       deadline_kind=entry["projection"]["deadline_kind"])
    return {"at": now, "new": entry["projection"]["finish_at"], "old": old.finish_at,
            "new_rate": entry["projection"]["rate_per_hour"], "old_rate": old.rate_per_hour,
            "backoff": backoff is not None, "done": entry["backlog"]["done"]}


class Watcher(threading.Thread):
    """Records the projections at the marks (fractions of the work done) and once during the
    backoff. Polls the backlog and the control row; the snapshot only at a mark."""

    def __init__(self, total: int, poll: float = 0.005):
        super().__init__(name="projection-watcher", daemon=True)
        self.total, self.poll = total, poll
        self.marks: dict[str, dict] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import connections
        from django.utils import timezone

        from drains.models import DrainControl, Item

        try:
            while not self.stop.is_set():
                done = Item.objects.filter(drain="halacha", status="done").count()
                for fraction in POINTS:
                    label = f"{fraction:.0%}"
                    if label not in self.marks and done >= fraction * self.total:
                        self.marks[label] = observe()
                if "backoff" not in self.marks and DrainControl.objects.filter(
                        name="halacha", backoff_until__gt=timezone.now()).exists():
                    self.marks["backoff"] = observe()
                time.sleep(self.poll)
        except BaseException as exc:
            self.error = exc
        finally:
            connections.close_all()


def burst(args, seed: int) -> dict:
    """One simulated burst; returns the marks and the actual finish."""
    from django.utils import timezone

    from drains.bursts import DEFAULT_DEADLINE, set_drain_burst
    from drains.models import DrainRun, RunStatus, Trigger
    from drains.quota.backoff import backoff_in_force
    from drains.runner import SKIPPED, run_drain

    load_backlog(args.decisions, padding=0)
    BurstExtractor.configure(seed=seed, mean=args.latency_ms / 1000,
                             limit_after=round(args.limit_at * args.decisions),
                             reset_seconds=args.reset_seconds)
    set_drain_burst(name="halacha", until=DEFAULT_DEADLINE, actor="bench")
    watcher = Watcher(args.decisions)
    watcher.start()
    started = time.perf_counter()
    statuses = []
    try:
        while True:
            result = run_drain("halacha", trigger=Trigger.SUPERVISOR, concurrency=args.concurrency,
                               tty=False)
            statuses.append(result.status)
            if result.status == RunStatus.SUCCEEDED:
                break
            if result.status not in (RunStatus.RATE_LIMITED, SKIPPED):
                raise RuntimeError(f"unexpected run: {result.message}")
            # The supervisor's next tick after the reset starts the drain again.
            backoff = backoff_in_force(drain="halacha")
            if backoff is not None:
                wait = (backoff.until - timezone.now()).total_seconds() + args.restart_delay
                time.sleep(max(0.0, wait))
            if len(statuses) > 20:
                raise RuntimeError(f"the burst does not finish: {statuses}")
    finally:
        watcher.stop.set()
        watcher.join()
    if watcher.error is not None:
        raise watcher.error
    last = DrainRun.objects.filter(drain="halacha").order_by("-started_at").first()
    runs = list(DrainRun.objects.filter(drain="halacha").order_by("started_at"))
    return {"marks": watcher.marks, "finish": last.finished_at, "runs": runs,
            "wall": time.perf_counter() - started, "refused": BurstExtractor.refused,
            "statuses": statuses}


def error(projected: datetime | None, actual: datetime, at: datetime) -> float:
    """Signed error as a percentage of the time that remained (+: projected too late)."""
    if projected is None:
        return math.inf
    return 100 * (projected - actual).total_seconds() / (actual - at).total_seconds()


def main() -> None:
    global BurstExtractor
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=400, help="decisions in the burst")
    parser.add_argument("--concurrency", type=int, default=4, help="calls in flight per run")
    parser.add_argument("--latency-ms", type=float, default=80.0,
                        help="mean extractor latency (lognormal, sigma 0.5)")
    parser.add_argument("--limit-at", type=float, default=0.15,
                        help="share of the work after which the session limit is hit")
    parser.add_argument("--reset-seconds", type=float, default=3.0,
                        help="how long after the limit its reset is")
    parser.add_argument("--restart-delay", type=float, default=0.2,
                        help="seconds after the reset until the drain is started again")
    parser.add_argument("--window-seconds", type=float, default=3.0,
                        help="the projection window (DRAINS_PROJECTION_WINDOW_MINUTES, in s)")
    parser.add_argument("--repeat", type=int, default=3, help="bursts, seeds seed..seed+n-1")
    parser.add_argument("--seed", type=int, default=14, help="first latency seed")
    args = parser.parse_args()

    database = f"bench_projection_{os.getpid()}"
    admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        setup_django(database, args.window_seconds)
        BurstExtractor = make_extractor_class()
        print(
            f"{args.decisions} decisions, concurrency {args.concurrency}, latency ~"
            f"{args.latency_ms:g} ms (lognormal), session limit after {args.limit_at:.0%} of the "
            f"work with its reset {args.reset_seconds:g} s later, restart {args.restart_delay:g} "
            f"s after it, window {args.window_seconds:g} s; error = (projected - actual finish) "
            "/ time remaining"
        )
        print(f"{'seed':>4} {'point':>8} {'at s':>6} {'left s':>7} {'rate/h new':>11} "
              f"{'old':>9} {'error new':>10} {'old':>9}")
        errors: dict[str, list[tuple[float, float]]] = {"25%": [], "50%": [], "backoff": []}
        for seed in range(args.seed, args.seed + args.repeat):
            outcome = burst(args, seed)
            t0 = outcome["runs"][0].started_at
            for label in ("25%", "backoff", "50%"):
                mark = outcome["marks"].get(label)
                if mark is None:
                    print(f"{seed:>4} {label:>8} (not reached)")
                    continue
                new = error(mark["new"], outcome["finish"], mark["at"])
                old = error(mark["old"], outcome["finish"], mark["at"])
                errors[label].append((abs(new), abs(old)))
                print(f"{seed:>4} {label:>8} {(mark['at'] - t0).total_seconds():>6.2f} "
                      f"{(outcome['finish'] - mark['at']).total_seconds():>7.2f} "
                      f"{mark['new_rate']:>11.0f} {mark['old_rate']:>9.0f} {new:>+9.1f}% "
                      f"{old:>+8.1f}%")
            runs = ", ".join(f"{r.status} {r.items_done}" for r in outcome["runs"])
            print(f"     runs: {runs}; {outcome['refused']} refused call(s); burst "
                  f"{(outcome['finish'] - t0).total_seconds():.2f} s")
        worst = {}
        for label in ("25%", "50%", "backoff"):
            if not errors[label]:
                continue
            new = [e[0] for e in errors[label]]
            old = [e[1] for e in errors[label]]
            worst[label] = max(new)
            print(f"|error| at {label:>7}: new median {statistics.median(new):5.1f} %, worst "
                  f"{max(new):5.1f} %; old (last window) median {statistics.median(old):6.1f} %, "
                  f"worst {max(old):6.1f} %; old/new (medians) "
                  f"{statistics.median(old) / max(statistics.median(new), 1e-9):.1f}x")
        met = all(worst.get(label, math.inf) <= GOAL for label in ("25%", "50%"))
        print(f"goal: every burst within ±{GOAL:g} % at 25 % and 50 %: "
              f"{'met' if met else 'NOT met'}")
    finally:
        from django.db import connections

        connections.close_all()
        admin_execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )


if __name__ == "__main__":
    main()
