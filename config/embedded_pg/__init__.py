"""The embedded PostgreSQL used when DATABASE_URL is unset.

Data lives in ``var/pgdata``. Whichever process first needs the database starts the server and
leaves it running for the next job; ``make db-stop`` stops it. The server listens on a Unix
socket only.

Any number of processes may be first at once (two pytest-xdist workers, two cron jobs, a job and
``make run`` on a new host). The whole start — as root the ``pgserver`` system user it runs as,
the data folder, ``initdb``, the server — happens under one lock of ours, an ``flock`` on
``var/.pgdata.start-lock`` beside the data folder; whoever gets it second finds the server
running and starts nothing. ``pgserver``'s own inter-process lock is not enough: it is taken only
after it has created the user (``useradd``, which fails for the second caller with "user exists")
and the data folder (``mkdir`` without ``exist_ok``).

Finding an already running server must stay cheap, because every cron job pays for it: we read
``postmaster.pid`` and probe the pid before importing ``pgserver`` at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import warnings
from pathlib import Path

from config.env import VAR_DIR

PGDATA = VAR_DIR / "pgdata"


@contextlib.contextmanager
def _quiet_runtime_dir_warning():
    """platformdirs warns when XDG_RUNTIME_DIR is unset (cron, CI, containers) and falls back to
    /tmp/runtime-<uid>, which is what we want; don't let that fail a warnings-as-errors run."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        yield


def _running_socket_dir(pgdata: Path) -> str | None:
    """The socket directory of a live, ready server on ``pgdata``, or None."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 8 or lines[7].strip() != "ready":
        return None
    try:
        pid = int(lines[0])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return None
    except PermissionError:
        pass  # alive, owned by the pgserver system user
    socket_dir = lines[4].strip()
    port = lines[3].strip()
    if not socket_dir or not Path(socket_dir, f".s.PGSQL.{port}").exists():
        return None
    return socket_dir


def start_lock_path(pgdata: Path) -> Path:
    """The lock every starter of the server on ``pgdata`` takes (beside the data folder, which
    as root belongs to the ``pgserver`` user)."""
    return pgdata.parent / f".{pgdata.name}.start-lock"


@contextlib.contextmanager
def _start_lock(pgdata: Path):
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(start_lock_path(pgdata), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if the holder dies
        yield
    finally:
        os.close(fd)


def _start(pgdata: Path) -> str:
    """Start the server on ``pgdata`` (user, folder, initdb, postmaster) unless another starter
    did while we waited for the lock; return its socket directory."""
    with _start_lock(pgdata):
        socket_dir = _running_socket_dir(pgdata)
        if socket_dir is not None:
            return socket_dir
        with _quiet_runtime_dir_warning():
            import pgserver  # heavy import: only when the server must be started

            server = pgserver.get_server(pgdata, cleanup_mode=None)
            return str(server.get_postmaster_info().socket_dir)


def ensure_running(pgdata: Path = PGDATA) -> dict:
    """Start the embedded server if needed; return libpq connection parameters for it."""
    socket_dir = _running_socket_dir(pgdata) or _start(pgdata)
    port = (pgdata / "postmaster.pid").read_text().splitlines()[3].strip()
    return {"host": socket_dir, "port": port, "user": "postgres"}


_databases_present: set[tuple[str, str]] = set()


def ensure_database(params: dict, dbname: str | None) -> None:
    """Create ``dbname`` on the embedded server if it does not exist yet.

    Called from the engine's ``get_connection_params()``, the one place that prepares connection
    parameters, so the database exists before anyone connects to it: Django's own connection and
    every lock session opened with the same parameters (schema gate, drain lock, supervisor).
    One query per process and database; concurrent creators are fine (the loser's
    ``DuplicateDatabase`` means the database exists).
    """
    if not dbname or dbname == "postgres" or (params["host"], dbname) in _databases_present:
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=params["host"], port=params["port"], user=params["user"], dbname="postgres",
        autocommit=True, application_name="drains embedded-pg setup",
    ) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            try:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it first: exactly what we wanted
            except psycopg.errors.UniqueViolation:
                pass  # the same race, reported from pg_database's unique index
    _databases_present.add((params["host"], dbname))


def url(database: str = "postgres", pgdata: Path = PGDATA) -> str:
    params = ensure_running(pgdata)
    return f"postgresql://postgres@/{database}?host={params['host']}&port={params['port']}"


def stop(pgdata: Path = PGDATA) -> str:
    if _running_socket_dir(pgdata) is None and not (pgdata / "postmaster.pid").exists():
        return f"embedded PostgreSQL in {pgdata} is not running"
    with _quiet_runtime_dir_warning():
        # pgserver._commands makes one function per PostgreSQL binary at import time.
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return f"embedded PostgreSQL in {pgdata} stopped"


def main(argv: list[str]) -> int:
    usage = "usage: python -m config.embedded_pg {start|stop|url [DATABASE]}"
    if not argv or argv[0] not in {"start", "stop", "url"}:
        print(usage, file=sys.stderr)  # noqa: T201
        return 2
    if argv[0] == "start":
        params = ensure_running()
        print(f"embedded PostgreSQL running in {PGDATA} (socket {params['host']})")  # noqa: T201
    elif argv[0] == "stop":
        print(stop())  # noqa: T201
    else:
        print(url(argv[1] if len(argv) > 1 else "postgres"))  # noqa: T201
    return 0


