"""The schema lock: ``pg_try_advisory_lock(SCHEMA_LOCK_NAMESPACE, <database oid as int4>)`` on
a lock session of its own (``drains.locks.open_lock_session``), taken by polling with jitter,
never by blocking; and the check before each migration that it is still ours.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from drains import locks, pglock
from drains.schema.errors import SchemaLockLost, SchemaLockTimeout
from drains.schema.keys import (
    DDL_APPLICATION_PREFIX,
    LOCK_APPLICATION_PREFIX,
    SCHEMA_LOCK_NAMESPACE,
    application_name,
    database_key,
    schema_lock_key,
)
from drains.schema.status import describe_holder

log = logging.getLogger(__name__)

#: Waiters poll with full jitter between these bounds (seconds), growing by POLL_GROWTH a try.
POLL_MIN_SECONDS = 0.05
POLL_MAX_SECONDS = 0.25
POLL_GROWTH = 1.5


@dataclass
class SchemaLock:
    """The held schema lock: its own server session, and who that session is."""

    alias: str
    database: str
    database_oid: int
    connection: psycopg.Connection
    backend_pid: int
    backend_start: datetime  # a timestamptz; compared for equality, never computed with
    waited_seconds: float
    application_name: str = field(default="")

    @property
    def key(self) -> pglock.AdvisoryKey:
        return schema_lock_key(self.database_oid)

    def release(self) -> None:
        """End the lock session; the server drops the session lock with it."""
        self.connection.close()


_VERIFY_SQL = f"""
SELECT {pglock.HELD_BY_SESSION_SQL},
       set_config('lock_timeout', %s, false),
       set_config('application_name', %s, false)
"""

SESSION_SQL = (
    "SELECT set_config('lock_timeout', %s, false), set_config('application_name', %s, false)"
)


def lock_timeout_setting() -> str:
    return f"{int(settings.DRAINS_MIGRATE_LOCK_TIMEOUT_MS)}ms"


def before_migration(*, using: str, lock: SchemaLock | None) -> None:
    """Run before each migration: prove the lock is still ours, and (re)arm the DDL session.

    The check runs on the connection that is about to run the DDL, against ``pg_locks``: it
    passes only if our lock session (same pid *and* same backend start, so a reused pid cannot
    pass) still holds the key in this very database. A silent reconnect of either connection
    therefore cannot let a second migrator run beside us. The same round trip re-applies
    ``lock_timeout`` and the DDL session's ``application_name``, which a reconnect would lose.
    """
    connection = connections[using]
    ddl_name = application_name(DDL_APPLICATION_PREFIX)
    with connection.cursor() as cursor:
        if lock is None:
            cursor.execute(SESSION_SQL, [lock_timeout_setting(), ddl_name])
            return
        key = lock.key
        cursor.execute(
            _VERIFY_SQL,
            [
                lock.backend_pid,
                lock.backend_start,
                key.classid,
                key.objid,
                lock_timeout_setting(),
                ddl_name,
            ],
        )
        still_held = locks.one_row(cursor)[0]
    if not still_held:
        raise SchemaLockLost(
            f"Stopped before the next migration: this process no longer holds the schema lock "
            f"on database {lock.database!r} (its lock session, backend pid {lock.backend_pid}, "
            "has ended — terminated, or the connection dropped). Another migrator may be "
            "running now, so continuing could run DDL twice. Nothing more was applied; run "
            "`manage.py migrate` again."
        )


def _poll_delays() -> Iterator[float]:
    ceiling = POLL_MIN_SECONDS
    while True:
        yield random.uniform(POLL_MIN_SECONDS / 2, ceiling)  # full jitter: waiters spread out
        ceiling = min(POLL_MAX_SECONDS, ceiling * POLL_GROWTH)


def acquire_schema_lock(*, using: str = DEFAULT_DB_ALIAS) -> SchemaLock:
    """Take the schema lock, polling with jitter; raise SchemaLockTimeout past the bound.

    About every ``DRAINS_MIGRATE_LOCK_REPORT_SECONDS`` a waiter logs who holds the lock; after
    ``DRAINS_MIGRATE_LOCK_WAIT_SECONDS`` it gives up with the same description.
    """
    conn = locks.open_lock_session(
        application_name=application_name(LOCK_APPLICATION_PREFIX), using=using
    )
    try:
        if conn.info.server_version >= 140000:
            # An idle_session_timeout set by the DBA must not end the lock session (and with it
            # the lock) while this process migrates on its other connection.
            conn.execute("SET idle_session_timeout = 0")
        oid, database, backend_pid, backend_start = locks.one_row(conn.execute(
            "SELECT d.oid::bigint, d.datname, a.pid, a.backend_start"
            " FROM pg_database d JOIN pg_stat_activity a ON a.pid = pg_backend_pid()"
            " WHERE d.datname = current_database()"
        ))
        waited = _poll_until_taken(conn, oid, database)
    except BaseException:
        conn.close()
        raise
    if waited >= float(settings.DRAINS_MIGRATE_LOCK_REPORT_SECONDS):
        log.warning("Took the schema lock on database %r after waiting %.1fs.", database, waited)
    return SchemaLock(
        alias=using,
        database=database,
        database_oid=oid,
        connection=conn,
        backend_pid=backend_pid,
        backend_start=backend_start,
        waited_seconds=waited,
        application_name=application_name(LOCK_APPLICATION_PREFIX),
    )


def _poll_until_taken(conn: psycopg.Connection, oid: int, database: str) -> float:
    """Try the lock until it is ours; return how long that took. Raise past the bound."""
    bound = float(settings.DRAINS_MIGRATE_LOCK_WAIT_SECONDS)
    report_every = float(settings.DRAINS_MIGRATE_LOCK_REPORT_SECONDS)
    dbkey = database_key(oid)
    started = time.monotonic()
    next_report = started + report_every
    delays = _poll_delays()
    while True:
        got = locks.one_row(conn.execute(
            "SELECT pg_try_advisory_lock(%s::int4, %s::int4)", [SCHEMA_LOCK_NAMESPACE, dbkey]
        ))[0]
        now = time.monotonic()
        if got:
            return now - started
        waited = now - started
        if waited >= bound:
            raise SchemaLockTimeout(
                f"Gave up after waiting {waited:.1f}s for the schema lock on database "
                f"{database!r} (DRAINS_MIGRATE_LOCK_WAIT_SECONDS={bound:g}). "
                f"{describe_holder(conn.cursor(), oid)} "
                "Check it with `manage.py migrate_lock_status`; if that migration is stuck, "
                "end it (SELECT pg_terminate_backend(<pid>)) and start this job again."
            )
        if now >= next_report:
            log.warning(
                "Waiting %.0fs of %gs for the schema lock on database %r. %s",
                waited,
                bound,
                database,
                describe_holder(conn.cursor(), oid),
            )
            next_report = now + report_every
        time.sleep(max(0.0, min(next(delays), started + bound - now)))


_held: dict[str, SchemaLock] = {}


def unsafe_no_lock() -> bool:
    """The test-only switch ``DRAINS_SCHEMA_GATE_UNSAFE_NO_LOCK``: run the gate without its lock.

    It exists only so that a test can show the race the lock prevents. Never set it anywhere
    else: concurrent migrators then fail exactly as plain Django does.
    """
    return bool(getattr(settings, "DRAINS_SCHEMA_GATE_UNSAFE_NO_LOCK", False))


@contextmanager
def schema_lock(*, using: str = DEFAULT_DB_ALIAS) -> Iterator[SchemaLock | None]:
    """Hold the schema lock for the block. Re-entrant within the process (per database alias).

    Yields None only under the test-only unsafe switch.
    """
    if using in _held:
        yield _held[using]
        return
    if unsafe_no_lock():
        log.warning(
            "DRAINS_SCHEMA_GATE_UNSAFE_NO_LOCK is set: migrating WITHOUT the schema lock. "
            "This switch is for tests only; concurrent migrators will collide."
        )
        yield None
        return
    lock = acquire_schema_lock(using=using)
    _held[using] = lock
    try:
        yield lock
    finally:
        del _held[using]
        lock.release()
