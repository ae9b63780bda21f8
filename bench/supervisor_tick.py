"""What one supervisor tick costs, and that it does not grow with run history.

Measures ``drains.supervisor.supervise()`` in-process (queries through Django's query capture,
wall time as the median of ``--repeat`` ticks) in two states, each with 1 drain vs ``--drains``
drains, every drain with ``--runs`` finished runs of history:

- steady: every drain has an active burst and a fresh backoff (a successful history, but no
  checkpoint since the backoff), so each tick decides "keep_backoff" and "hold" per drain and
  writes nothing (both already recorded once);
- acting: every drain also has one "running" run whose drain lock is free, so the tick marks
  it crashed (a guarded UPDATE and an event per drain).

Uses DATABASE_URL's server when set, else the embedded PostgreSQL; creates and drops its own
database (bench_supervisor_<pid>).

    .venv/bin/python bench/supervisor_tick.py [--runs 1000] [--drains 50] [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench._harness import admin_execute, server_url  # noqa: E402


def use_drains(total: int) -> list[str]:
    """The registry holds ``total`` drains: halacha plus bench drains with an empty backlog."""
    from django.db.models import Q

    from drains import registry
    from drains.runner import Drain, Source
    from halacha.models import CourtDecision

    class BenchDrain(Drain):
        source = Source(CourtDecision, where=Q(pk__in=[]))  # no items

    for name in registry.names():
        if name != "halacha":
            registry.unregister(name)
    for i in range(1, total):
        registry.register(type(f"Bench{i}", (BenchDrain,), {"name": f"bench{i:02d}"}))
    return registry.names()


def seed(names: list[str], runs: int) -> None:
    from django.utils import timezone

    from drains.models import DrainControl, DrainRun, RunStatus

    now = timezone.now()
    host = socket.gethostname()
    for name in names:
        history = []
        for i in range(runs):
            started = now - timedelta(hours=2) - timedelta(minutes=15 * (runs - i))
            history.append(
                DrainRun(
                    drain=name,
                    trigger="cron",
                    host=host,
                    pid=1000 + i,
                    started_at=started,
                    finished_at=started + timedelta(minutes=10),
                    last_checkpoint_at=started + timedelta(minutes=10),
                    status=RunStatus.SUCCEEDED,
                    items_done=50,
                )
            )
        DrainRun.objects.bulk_create(history, batch_size=5000)
        DrainControl.objects.update_or_create(
            name=name,
            defaults={
                "burst_until": now + timedelta(hours=6),
                "backoff_until": now + timedelta(hours=1),
                "backoff_observed_at": now - timedelta(minutes=30),
                "backoff_reason": "bench",
                "quota_key": f"quota-{name}",
            },
        )


def add_dead_runs(names: list[str]) -> None:
    from django.utils import timezone

    from drains.models import DrainRun

    now = timezone.now()
    DrainRun.objects.bulk_create(
        DrainRun(drain=name, host="bench", pid=1, started_at=now, last_checkpoint_at=now)
        for name in names
    )


def measure(names: list[str], repeat: int, *, acting: bool) -> tuple[int, float]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from drains.supervisor import supervise

    lines: list[str] = []
    if acting:
        queries, times = [], []
        for _ in range(repeat):
            add_dead_runs(names)
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                supervise(names=names, write=lines.append)
                times.append(time.perf_counter() - started)
            queries.append(len(captured))
        if len(set(queries)) != 1:
            raise SystemExit(f"acting tick query counts differ between ticks: {queries}")
        return queries[0], statistics.median(times) * 1000
    supervise(names=names, write=lines.append)  # records keep_backoff/hold once
    with CaptureQueriesContext(connection) as captured:
        supervise(names=names, write=lines.append)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        supervise(names=names, write=lines.append)
        times.append(time.perf_counter() - started)
    return len(captured), statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="finished runs per drain")
    parser.add_argument("--drains", type=int, default=50, help="drains in the large case")
    parser.add_argument("--repeat", type=int, default=20, help="ticks timed per case")
    args = parser.parse_args()

    database = f"bench_supervisor_{os.getpid()}"
    admin_execute(f'CREATE DATABASE "{database}"')
    os.environ["DATABASE_URL"] = server_url(database)
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        all_names = use_drains(args.drains)
        seed(all_names, args.runs)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(f"database {database}; {args.runs} finished runs per drain")
        print(f"{'state':<8} {'drains':>7} {'queries':>8} {'median ms':>10}")
        results = {}
        for acting in (False, True):
            for drains in (1, args.drains):
                names = use_drains(drains)
                queries, ms = measure(names, args.repeat, acting=acting)
                results[acting, drains] = (queries, ms)
                state = "acting" if acting else "steady"
                print(f"{state:<8} {drains:>7} {queries:>8} {ms:>10.1f}")
        steady_1, steady_n = results[False, 1], results[False, args.drains]
        acting_1, acting_n = results[True, 1], results[True, args.drains]
        per_drain = (acting_n[0] - acting_1[0]) / (args.drains - 1)
        print(
            f"steady: queries {steady_1[0]} vs {steady_n[0]} "
            f"({'equal' if steady_1[0] == steady_n[0] else 'NOT equal'}); time ratio "
            f"{steady_n[1] / steady_1[1]:.2f}x for {args.drains}x the drains"
        )
        print(
            f"acting: queries {acting_1[0]} vs {acting_n[0]} = {acting_1[0]} + "
            f"{per_drain:g} per extra drain; time ratio {acting_n[1] / acting_1[1]:.2f}x"
        )
        if steady_1[0] != steady_n[0]:
            raise SystemExit("the steady tick's query count grew with the number of drains")
    finally:
        from django.db import connections

        connections.close_all()
        admin_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
