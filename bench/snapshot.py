"""What the operations snapshot (GET /api/operations/) costs, and that it does not grow.

(a) In-process, through Django's test client with a token: the number of queries and the median
    latency of one snapshot with 1 drain vs 50 drains, each with ``--runs`` runs (plus the
    sibling jobs' runs). The query count must be equal.
(b) Over HTTP, a threaded WSGI server in a child process (Django's runserver server class, no
    request logging) under a local load tool — ``wrk`` when installed, else a Python thread pool
    of keep-alive clients (the output says which): requests/s of the snapshot against a trivial
    DRF endpoint with the same token authentication and permission check, in the same run;
    ratio = snapshot / trivial (the goal is >= 0.5 for the shipped drains), measured in
    alternating rounds on the same server.

Uses DATABASE_URL's server when set, else the embedded PostgreSQL; creates and drops its own
database (bench_snapshot_<pid>). The API throttles are off in the bench (DRAINS_API_THROTTLE_RATES all None):
a load test from one address is exactly what they exist to refuse.

    .venv/bin/python bench/snapshot.py [--runs 1000] [--drains 50] [--repeat 30] [--seconds 5]
                                       [--rounds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import types
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from bench._harness import admin_execute, server_url  # noqa: E402

TOKEN_USER = "bench"


# --- database -------------------------------------------------------------------------------------


# --- drains for the bench -------------------------------------------------------------------------


def fake_drain_names(total: int) -> list[str]:
    return [f"bench{i:02d}" for i in range(1, total)]  # plus the real "halacha"


def use_drains(total: int) -> list[str]:
    """Make the registry hold ``total`` drains: halacha plus small bench drains."""
    from drains import registry
    from drains.runner import Drain
    from halacha.drain import HalachaDrain

    class BenchDrain(Drain):
        source = HalachaDrain.source  # the decisions, like halacha's

    for name in registry.names():
        if name != "halacha":
            registry.unregister(name)
    for name in fake_drain_names(total):
        registry.register(type(name, (BenchDrain,), {"name": name}))
    return registry.names()


# --- the server (child process) -------------------------------------------------------------------


def setup_without_throttles() -> None:
    """django.setup(), then every API throttle off: the bench measures the snapshot, not them."""
    import django
    from django.conf import settings

    django.setup()
    settings.DRAINS_API_THROTTLE_RATES = dict.fromkeys(settings.DRAINS_API_THROTTLE_RATES)


def serve(drains: int) -> None:
    setup_without_throttles()
    from django.conf import settings
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application
    from django.urls import path
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from config import urls as project_urls
    from operations.api_base import AUTHENTICATION
    from operations.permissions import CanViewDrains

    if drains:  # 0: the shipped registry as it is
        use_drains(drains)

    class Ping(APIView):
        """The trivial endpoint: the snapshot's authentication and permission, no work."""

        authentication_classes = AUTHENTICATION
        permission_classes = [CanViewDrains]

        def get(self, request):
            return Response({"ok": True})

    urlconf = types.ModuleType("bench_snapshot_urls")
    urlconf.urlpatterns = [path("bench/ping/", Ping.as_view()), *project_urls.urlpatterns]
    sys.modules[urlconf.__name__] = urlconf
    settings.ROOT_URLCONF = urlconf.__name__

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
            pass  # a log line per request would be most of what is measured

    httpd = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    httpd.set_app(get_wsgi_application())
    sys.stdout.write(f"PORT {httpd.server_port}\n")
    sys.stdout.flush()
    httpd.serve_forever()


class Server:
    def __init__(self, drains: int):
        self.process = subprocess.Popen(
            [sys.executable, __file__, "serve", "--drains", str(drains)],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise SystemExit(f"the bench server did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.process.stdout.close()


# --- load -----------------------------------------------------------------------------------------


def load_wrk(port: int, path: str, token: str, seconds: float, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{int(seconds)}s", "--latency",
         "-H", f"Authorization: Token {token}", f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"{path}: non-2xx answers under load:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def load_threads(port: int, path: str, token: str, seconds: float, connections: int) -> float:
    """A keep-alive client per thread, each sending requests back to back for ``seconds``."""
    counts = [0] * connections
    failures: list[str] = []
    stop_at = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop_at:
            conn.request("GET", path, headers={"Authorization": f"Token {token}"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"{path}: HTTP {response.status}")
                return
            counts[i] += 1
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(failures[0])
    return sum(counts) / (time.monotonic() - started)


# --- the run --------------------------------------------------------------------------------------


def seed(runs: int, all_names: list[str], jobs: list[str]) -> str:
    from django.contrib.auth.models import Permission, User
    from django.db import connection
    from django.utils import timezone

    from drains.models import DrainRun
    from halacha.models import CourtDecision

    CourtDecision.objects.bulk_create(
        CourtDecision(external_id=f"bench-{i}", text="text") for i in range(2000))
    with connection.cursor() as cursor:  # each drain's items: 6 pending, 3 done, 1 failed in 10
        cursor.execute(
            "INSERT INTO drains_item (drain, ref, status, attempts, last_error, version, "
            "arrived_at, updated_at) SELECT n.name, d.id, (ARRAY['pending', 'pending', 'pending', "
            "'pending', 'pending', 'pending', 'done', 'done', 'done', 'failed'])[d.id %% 10 + 1], "
            "0, '', '', now(), now() FROM halacha_courtdecision d CROSS JOIN unnest(%s::text[]) "
            "AS n(name) ON CONFLICT (drain, ref) DO NOTHING", [all_names])
    now = timezone.now()
    for name in all_names + jobs:
        rows = []
        for i in range(runs):
            started = now - timedelta(minutes=15 * (i + 1))
            rows.append(DrainRun(drain=name, host="bench", pid=i, started_at=started,
                                 finished_at=started + timedelta(minutes=5), status="succeeded",
                                 items_done=5, backlog_at_start=100, last_checkpoint_at=started))
        DrainRun.objects.bulk_create(rows, batch_size=2000)
    user = User.objects.create_user(TOKEN_USER, is_staff=False)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="drains", codename__in=["view_draincontrol", "change_draincontrol"]))
    from operations.models import ApiToken

    return ApiToken.objects.create(user=user, expiry=timedelta(days=1), name="bench")[1]


def measure_in_process(token: str, repeat: int) -> tuple[int, float, int]:
    from django.db import connection
    from django.test import Client

    client = Client(headers={"Authorization": f"Token {token}"}, SERVER_NAME="localhost")
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get("/api/operations/")
    assert response.status_code == 200, response.content[:500]
    services = len(response.json()["services"])
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.get("/api/operations/")
        times.append(time.perf_counter() - t0)
    return len(queries), statistics.median(times) * 1000, services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs per drain and per job")
    parser.add_argument("--drains", type=int, default=50, help="drains in the large case")
    parser.add_argument("--repeat", type=int, default=30, help="snapshots timed per case")
    parser.add_argument("--seconds", type=float, default=5, help="load per HTTP measurement")
    parser.add_argument("--connections", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--rounds", type=int, default=3, help="alternating load rounds")
    args = parser.parse_args()

    database = f"bench_snapshot_{os.getpid()}"
    admin_execute(f'CREATE DATABASE "{database}"')
    os.environ["DATABASE_URL"] = server_url(database)
    try:
        setup_without_throttles()
        from django.core.management import call_command

        from drains.schedule import scheduled_jobs

        call_command("migrate", verbosity=0)
        jobs = [job.name for job in scheduled_jobs() if job.drain is None]
        token = seed(args.runs, ["halacha", "metadata", *fake_drain_names(args.drains)], jobs)

        print(f"database {database}; {args.runs} runs per drain and per job; 2,000 decisions")
        results = {}
        for drains in (1, args.drains):
            use_drains(drains)
            results[drains] = measure_in_process(token, args.repeat)
        print("\n(a) in-process GET /api/operations/ (token auth):")
        print(f"{'drains':>7} {'services':>9} {'queries':>8} {'median ms':>10}")
        for drains, (queries, median, services) in results.items():
            print(f"{drains:>7} {services:>9} {queries:>8} {median:>10.1f}")
        equal = results[1][0] == results[args.drains][0]
        print(f"query count equal: {'yes' if equal else 'NO'}; latency ratio "
              f"{results[args.drains][1] / results[1][1]:.2f}x for {args.drains}x the drains")

        tool = "wrk" if shutil.which("wrk") else "python thread pool (wrk not installed)"
        load = load_wrk if shutil.which("wrk") else load_threads
        print(f"\n(b) HTTP, threaded WSGI server, {args.connections} keep-alive connections, "
              f"load tool: {tool}; {args.rounds} alternating rounds of {args.seconds:g} s per "
              "endpoint (medians), so that load from elsewhere hits both alike")
        print(f"{'server':<28} {'trivial req/s':>14} {'snapshot req/s':>15} {'ratio':>7}")
        for drains in (2, args.drains):  # the shipped registry (halacha, metadata), then 50
            server = Server(0 if drains == 2 else drains)
            trivial, snap = [], []
            try:
                for _ in range(args.rounds):
                    trivial.append(load(server.port, "/bench/ping/", token, args.seconds,
                                        args.connections))
                    snap.append(load(server.port, "/api/operations/", token, args.seconds,
                                     args.connections))
            finally:
                server.stop()
            t, n = statistics.median(trivial), statistics.median(snap)
            label = f"{drains} drains" + (" (as shipped)" if drains == 2 else "")
            print(f"{label:<28} {t:>14.0f} {n:>15.0f} {n / t:>6.2f}x")
        if not equal:
            raise SystemExit("the query count grew with the number of drains")
    finally:
        from django.db import connections

        connections.close_all()
        admin_execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(int(sys.argv[sys.argv.index("--drains") + 1]))
    else:
        main()
