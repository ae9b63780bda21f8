"""What a Prometheus scrape of GET /metrics costs, and that it does not grow with the drains.

(a) In-process (Django's test client from an allowed address): queries per scrape and the median
    latency with 2 drains (as shipped) vs 50 drains, each with ``--runs`` runs. The query count
    must be equal.
(b) Over HTTP under gunicorn (``--workers`` sync workers, the production server): requests/s of
    /metrics against a trivial endpoint (a plain Django view answering "ok", no database) on the
    same server in alternating rounds; ratio = metrics / trivial. A Python thread pool of
    keep-alive clients is the load (bench/snapshot.py's).

Creates and drops its own database (bench_metrics_<pid>) on DATABASE_URL's server, else the
embedded PostgreSQL.

    .venv/bin/python bench/metrics_scrape.py [--runs 1000] [--drains 50] [--seconds 5]
                                             [--rounds 3] [--workers 2] [--connections 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench.snapshot import (  # noqa: E402  (sets the throttles off for the bench)
    admin_sql,
    fake_drain_names,
    load_threads,
    seed,
    server_url,
    use_drains,
)


def application():
    """The WSGI app gunicorn serves: the project plus /bench/ping/ (``BENCH_DRAINS`` drains)."""
    import types

    import django

    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.http import HttpResponse
    from django.urls import path

    from config import urls as project_urls

    if int(os.environ.get("BENCH_DRAINS", "0")):
        use_drains(int(os.environ["BENCH_DRAINS"]))

    def ping(request):
        return HttpResponse("ok\n", content_type="text/plain")

    urlconf = types.ModuleType("bench_metrics_urls")
    urlconf.urlpatterns = [path("bench/ping/", ping), *project_urls.urlpatterns]
    sys.modules[urlconf.__name__] = urlconf
    settings.ROOT_URLCONF = urlconf.__name__
    return get_wsgi_application()


def measure_in_process(repeat: int) -> tuple[int, float, int]:
    from django.db import connection
    from django.test import Client

    client = Client(SERVER_NAME="localhost", REMOTE_ADDR="127.0.0.1")
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get("/metrics")
    assert response.status_code == 200, response.content[:300]
    series = sum(1 for line in response.content.decode().splitlines() if line and line[0] != "#")
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.get("/metrics")
        times.append(time.perf_counter() - t0)
    return len(queries), statistics.median(times) * 1000, series


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn(drains: int, workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, BENCH_DRAINS=str(drains))
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "bench.metrics_scrape:application()",
         "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--log-level", "warning",
         "--chdir", str(ROOT)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited: {proc.stderr.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("gunicorn did not listen within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per drain and per job")
    parser.add_argument("--drains", type=int, default=50, help="drains in the large case")
    parser.add_argument("--repeat", type=int, default=30, help="scrapes timed per case")
    parser.add_argument("--seconds", type=float, default=5, help="load per HTTP measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating load rounds")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--connections", type=int, default=8, help="concurrent HTTP clients")
    args = parser.parse_args()

    database = f"bench_metrics_{os.getpid()}"
    admin_sql(f'CREATE DATABASE "{database}"')
    os.environ["DATABASE_URL"] = server_url(database)
    try:
        import django

        django.setup()
        from django.core.management import call_command

        from drains.schedule import DRAIN_COMMANDS, scheduled_jobs

        call_command("migrate", verbosity=0)
        jobs = [job.name for job in scheduled_jobs() if job.name not in DRAIN_COMMANDS]
        seed(args.runs, ["halacha", "metadata", *fake_drain_names(args.drains)], jobs)
        print(f"database {database}; {args.runs} runs per drain and per job; 2,000 decisions")

        from drains import registry

        shipped = dict(registry._DRAINS)
        results = {}
        for drains in (2, args.drains):
            if drains == 2:
                registry._DRAINS.clear()
                registry._DRAINS.update(shipped)
            else:
                use_drains(drains)
            results[drains] = measure_in_process(args.repeat)
        print("\n(a) in-process GET /metrics:")
        print(f"{'drains':>7} {'series':>7} {'queries':>8} {'median ms':>10}")
        for drains, (queries, median, series) in results.items():
            print(f"{drains:>7} {series:>7} {queries:>8} {median:>10.1f}")
        equal = results[2][0] == results[args.drains][0]
        print(f"query count equal: {'yes' if equal else 'NO'}; latency ratio "
              f"{results[args.drains][1] / results[2][1]:.2f}x for "
              f"{args.drains / 2:g}x the drains")

        print(f"\n(b) HTTP under gunicorn ({args.workers} sync workers), {args.connections} "
              f"keep-alive clients (Python thread pool); {args.rounds} alternating rounds of "
              f"{args.seconds:g} s per endpoint (medians)")
        print(f"{'server':<24} {'trivial req/s':>14} {'/metrics req/s':>15} {'ratio':>7}")
        for drains in (0, args.drains):
            proc, port = gunicorn(drains, args.workers)
            trivial, scrape = [], []
            try:
                for _ in range(args.rounds):
                    trivial.append(load_threads(port, "/bench/ping/", "", args.seconds,
                                                args.connections))
                    scrape.append(load_threads(port, "/metrics", "", args.seconds,
                                               args.connections))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                proc.stderr.close()
            t, m = statistics.median(trivial), statistics.median(scrape)
            label = "2 drains (as shipped)" if drains == 0 else f"{drains} drains"
            print(f"{label:<24} {t:>14.0f} {m:>15.1f} {m / t:>6.3f}x")
        if not equal:
            raise SystemExit("the query count grew with the number of drains")
    finally:
        from django.db import connections

        connections.close_all()
        admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
