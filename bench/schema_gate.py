"""What the schema gate costs: (a) every job's warm start, (b) a 16-way cold start.

(a) Warm: a process that runs ``ensure_schema()`` on an up-to-date database
    (``manage.py ensure_schema``: system checks + the gate) against ``manage.py check`` (the
    same process start and system checks, no gate), ``--runs`` alternating runs each; ratio of
    medians. Our locked ``manage.py migrate`` as a no-op is printed for context.
(b) Cold: ``--racers`` processes run ``manage.py ensure_schema`` at once on an empty database,
    against one ``manage.py migrate`` alone on an empty database; ratio of wall times (medians
    of ``--cold-repeats``). Because on a small machine most of (b) is simply starting that many
    Django processes, the same number of ``manage.py check`` started at once is measured as the
    floor and printed beside it.

Uses DATABASE_URL's server when set, else the embedded PostgreSQL; creates and drops its own
databases (bench_gate_<pid>_<n>). Children run with byte-code caching on, as deployed
(PYTHONPYCACHEPREFIX=var/bench-pycache), whatever PYTHONDONTWRITEBYTECODE says here.

    .venv/bin/python bench/schema_gate.py [--runs 15] [--racers 16] [--cold-repeats 3]
                                          [--only warm|cold] [--instructions]
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import server_url  # noqa: E402

_names = itertools.count()


def admin() -> psycopg.Connection:
    return psycopg.connect(server_url("postgres"), autocommit=True)


def create_database() -> str:
    name = f"bench_gate_{os.getpid()}_{next(_names)}"
    with admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    with admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def env_for(database: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = server_url(database)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    env.pop("DRAINS_SCHEMA_GATE_UNSAFE_NO_LOCK", None)
    # Like a deployment: byte-code cached (kept under var/, out of the source tree), so that
    # the figures are not dominated by compiling the project's modules at every start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(ROOT / "var" / "bench-pycache")
    return env


def manage(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "manage.py"), *args]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(command: list[str], env: dict[str, str], cpu: list[float] | None = None) -> float:
    """Wall time of one run; its CPU time (user + system) is appended to ``cpu`` if given."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{' '.join(command[1:])} failed:\n{result.stderr}")
    if cpu is not None:
        cpu.append(_children_cpu() - cpu_before)
    return elapsed


def run_many_timed(command: list[str], env: dict[str, str], count: int) -> float:
    """Start ``count`` copies at once; wall time until the last one exits."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    failures = []
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            failures.append(err.strip().splitlines()[-1:])
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} of {count} failed: {failures[:3]}")
    return elapsed


WARM_COMMANDS = {
    "check": ("manage.py check (baseline)", ("check",)),
    "ensure_schema": ("manage.py ensure_schema", ("ensure_schema",)),
    "migrate": ("manage.py migrate (no-op)", ("migrate", "-v0")),
}


def warm(runs: int) -> None:
    database = create_database()
    wall: dict[str, list[float]] = {name: [] for name in WARM_COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name in WARM_COMMANDS}
    try:
        env = env_for(database)
        run_timed(manage("migrate", "-v0"), env)
        for _, args in WARM_COMMANDS.values():  # warm the OS caches once, untimed
            run_timed(manage(*args), env)
        for i in range(runs):
            order = list(WARM_COMMANDS) if i % 2 == 0 else list(reversed(WARM_COMMANDS))
            for name in order:
                wall[name].append(run_timed(manage(*WARM_COMMANDS[name][1]), env, cpu[name]))
    finally:
        drop_database(database)
    w = {name: statistics.median(v) for name, v in wall.items()}
    c = {name: statistics.median(v) for name, v in cpu.items()}
    print(f"(a) warm gate, up-to-date database, median of {runs} whole-process runs")
    print(f"    {'':<30} {'wall':>9} {'CPU (user+sys)':>16}")
    for name, (label, _) in WARM_COMMANDS.items():
        print(f"    {label:<30} {w[name] * 1000:6.1f} ms {c[name] * 1000:13.1f} ms")
    for name, note in (("ensure_schema", "target <= 1.05"), ("migrate", "for context")):
        ratio_wall = w[name] / w["check"]
        ratio_cpu = c[name] / c["check"]
        print(
            f"    {'ratio ' + name + ' / check':<30} {ratio_wall:9.3f} {ratio_cpu:16.3f}   ({note})"
        )
    # On a shared machine the median carries other processes' noise; the fastest run of each
    # command is the least disturbed estimate of what the command itself costs.
    fastest = {name: min(v) for name, v in wall.items()}
    ratio_fastest = fastest["ensure_schema"] / fastest["check"]
    print(f"    {'fastest-run ratio ensure_schema / check':<44} {ratio_fastest:.3f}")
    # Each round ran the commands back to back, so a pair shares the load of its moment.
    pairs = zip(wall["ensure_schema"], wall["check"], strict=True)
    paired = statistics.median([e / c for e, c in pairs])
    print(f"    {'median of per-round ratios ensure_schema / check':<44} {paired:.3f}")


IN_PROCESS = """
import statistics, time, django
django.setup()
from django.db import connection
from drains.schema import ensure_schema
samples = []
for _ in range({n}):
    connection.close()
    start = time.perf_counter()
    assert ensure_schema() is False
    samples.append(time.perf_counter() - start)
print(statistics.median(samples))
"""


def in_process(n: int) -> None:
    """The gate alone, inside one process: connect + one query, load-insensitive."""
    database = create_database()
    try:
        env = env_for(database)
        run_timed(manage("migrate", "-v0"), env)
        result = subprocess.run(
            [sys.executable, "-c", IN_PROCESS.format(n=n)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        drop_database(database)
    print(
        f"    in-process ensure_schema() incl. a new connection, median of {n}: "
        f"{float(result.stdout) * 1000:.2f} ms"
    )


def instructions(command: list[str], env: dict[str, str]) -> int:
    """Instructions one run executes, counted by valgrind (independent of the machine's load)."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SystemExit(f"valgrind {' '.join(command[1:])} failed:\n{result.stderr[-2000:]}")
    for line in result.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    raise SystemExit(f"no instruction count in valgrind's output:\n{result.stderr[-2000:]}")


def warm_instructions() -> None:
    if shutil.which("valgrind") is None:
        print("    (valgrind not installed: no instruction counts)")
        return
    database = create_database()
    try:
        env = env_for(database)
        run_timed(manage("migrate", "-v0"), env)
        run_timed(manage("ensure_schema"), env)  # byte-code cached before counting
        check = instructions(manage("check"), env)
        gate = instructions(manage("ensure_schema"), env)
    finally:
        drop_database(database)
    print(
        f"    instructions (valgrind): check {check / 1e6:,.1f} M, ensure_schema "
        f"{gate / 1e6:,.1f} M, ratio {gate / check:.4f}"
    )


def cold(racers: int, repeats: int) -> None:
    single, many, floor, one_check = [], [], [], []
    for _ in range(repeats):
        database = create_database()
        try:
            single.append(run_timed(manage("migrate", "-v0"), env_for(database)))
            one_check.append(run_timed(manage("check"), env_for(database)))
        finally:
            drop_database(database)
        database = create_database()
        try:
            many.append(run_many_timed(manage("ensure_schema", "-v0"), env_for(database), racers))
            floor.append(run_many_timed(manage("check"), env_for(database), racers))
        finally:
            drop_database(database)
    s, m, f, c = (statistics.median(v) for v in (single, many, floor, one_check))
    print(f"(b) cold start on an empty database, median of {repeats}")
    print(f"    one manage.py migrate alone (baseline)      {s:7.2f} s")
    print(f"    {racers} x manage.py ensure_schema at once       {m:7.2f} s")
    print(f"    ratio {racers}-way / one migrate                  {m / s:7.2f}   (target <= 1.5)")
    print(f"    floor: {racers} x manage.py check at once         {f:7.2f} s  (no database work)")
    print(f"    floor: one manage.py check                  {c:7.2f} s")
    ideal = f + (s - c)
    print(
        f"    ratio {racers}-way / (floor + one migrate's own work) {m / ideal:5.2f}"
        f"   ({m:.2f} / ({f:.2f} + {s:.2f} - {c:.2f}))"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="warm runs per command (>= 7)")
    parser.add_argument("--racers", type=int, default=16, help="processes in the cold start")
    parser.add_argument("--cold-repeats", type=int, default=3, help="cold start repetitions")
    parser.add_argument("--only", choices=["warm", "cold"], help="run one part only")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count (a)'s instructions under valgrind: slow, but blind to other load",
    )
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    if args.only != "cold":
        warm(args.runs)
        in_process(50)
        if args.instructions:
            warm_instructions()
    if args.only != "warm":
        cold(args.racers, args.cold_repeats)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
