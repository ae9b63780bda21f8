"""The schema gate: one migrator at a time, behind a session-level PostgreSQL advisory lock.

Owns the lock every migration in this project runs under, the start-up gate every job calls
(``ensure_schema()``), the DDL retry policy and the description of who holds the lock.
``manage.py migrate`` (drains/management/commands/migrate.py) and ``ensure_schema()`` are the
only two entry points, and both end in the same locked path.

The lock (documented in docs/architecture.md, "Schema gate"):
``pg_try_advisory_lock(SCHEMA_LOCK_NAMESPACE, <the database's oid as int4>)``, taken on a
dedicated connection this process owns and nothing else uses, so that a crash of the process
(even SIGKILL) ends the session and releases the lock. In ``pg_locks`` it shows as
``locktype='advisory', classid=1296648018, objid=<database oid>, objsubid=2``.

This module must never block in ``pg_advisory_lock`` (a blocked waiter can deadlock with
``CREATE INDEX CONCURRENTLY``), never run DDL without holding the lock (except under the
test-only ``DRAINS_SCHEMA_GATE_UNSAFE_NO_LOCK`` switch), and never wait without a bound.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import pkgutil
import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import import_module

import psycopg
from django.conf import settings
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from drains import pglock

log = logging.getLogger(__name__)

#: First half of the lock key: ASCII "MIGR" (0x4D494752). Fixed; documented; never reuse it.
SCHEMA_LOCK_NAMESPACE = 0x4D494752
#: ``application_name`` prefixes of the two sessions a migrator opens.
LOCK_APPLICATION_PREFIX = "drains-migrate lock"
DDL_APPLICATION_PREFIX = "drains-migrate ddl"
#: Waiters poll with full jitter between these bounds (seconds), growing by POLL_GROWTH a try.
POLL_MIN_SECONDS = 0.05
POLL_MAX_SECONDS = 0.25
POLL_GROWTH = 1.5
#: Backoff between DDL attempts never grows beyond this (seconds).
DDL_BACKOFF_CAP_SECONDS = 30.0

_LOCK_TIMEOUT_SQLSTATE = "55P03"  # lock_not_available: lock_timeout expired
_APPLICATION_NAME_MAX = 63  # NAMEDATALEN - 1


class SchemaGateError(CommandError):
    """The gate could not bring the schema up to date; the message says what to do next.

    A CommandError, so every command that calls the gate reports it in one line and exits 1.
    """


class SchemaLockTimeout(SchemaGateError):
    """Waited the whole bound for the schema lock; another migrator still holds it."""


class SchemaLockLost(SchemaGateError):
    """This process no longer holds the schema lock it took (its lock session ended)."""


class MigrationBlocked(SchemaGateError):
    """A migration's DDL kept running into lock_timeout and the retries ran out."""


# --- the lock -------------------------------------------------------------------------------


def _host() -> str:
    return socket.gethostname()


def application_name(prefix: str, *, pid: int | None = None, host: str | None = None) -> str:
    """``<prefix> host=<host> pid=<pid>``, the host cut so that the whole fits in 63 bytes."""
    pid = os.getpid() if pid is None else pid
    tail = f" pid={pid}"
    room = _APPLICATION_NAME_MAX - len(prefix) - len(" host=") - len(tail)
    return f"{prefix} host={(host or _host())[: max(room, 0)]}{tail}"


def database_key(database_oid: int) -> int:
    """Second half of the key: the database's oid, read as int4 so pg_locks.objid equals it."""
    return pglock.to_int4(database_oid)


def schema_lock_key(database_oid: int) -> pglock.AdvisoryKey:
    return pglock.AdvisoryKey.two_part(SCHEMA_LOCK_NAMESPACE, database_key(database_oid))


@dataclass
class SchemaLock:
    """The held schema lock: its own server session, and who that session is."""

    alias: str
    database: str
    database_oid: int
    connection: psycopg.Connection
    backend_pid: int
    backend_start: object  # a timestamptz; compared for equality, never computed with
    waited_seconds: float
    application_name: str = field(default="")

    @property
    def key(self) -> pglock.AdvisoryKey:
        return schema_lock_key(self.database_oid)

    def release(self) -> None:
        """End the lock session; the server drops the session lock with it."""
        self.connection.close()


_VERIFY_SQL = """
SELECT EXISTS (
           SELECT 1
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted
             AND l.pid = %s AND a.backend_start = %s
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 2
       ),
       set_config('lock_timeout', %s, false),
       set_config('application_name', %s, false)
"""

_SESSION_SQL = (
    "SELECT set_config('lock_timeout', %s, false), set_config('application_name', %s, false)"
)


def _lock_timeout_setting() -> str:
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
            cursor.execute(_SESSION_SQL, [_lock_timeout_setting(), ddl_name])
            return
        key = lock.key
        cursor.execute(
            _VERIFY_SQL,
            [
                lock.backend_pid,
                lock.backend_start,
                key.classid,
                key.objid,
                _lock_timeout_setting(),
                ddl_name,
            ],
        )
        still_held = cursor.fetchone()[0]
    if not still_held:
        raise SchemaLockLost(
            f"Stopped before the next migration: this process no longer holds the schema lock "
            f"on database {lock.database!r} (its lock session, backend pid {lock.backend_pid}, "
            "has ended — terminated, or the connection dropped). Another migrator may be "
            "running now, so continuing could run DDL twice. Nothing more was applied; run "
            "`manage.py migrate` again."
        )


def _connect_lock_session(alias: str) -> psycopg.Connection:
    """A new autocommit connection to ``alias``'s database, used only for the lock."""
    params = dict(connections[alias].get_connection_params())  # starts the embedded server
    for django_only in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(django_only, None)
    params["application_name"] = application_name(LOCK_APPLICATION_PREFIX)
    return psycopg.connect(autocommit=True, **params)


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
    bound = float(settings.DRAINS_MIGRATE_LOCK_WAIT_SECONDS)
    report_every = float(settings.DRAINS_MIGRATE_LOCK_REPORT_SECONDS)
    conn = _connect_lock_session(using)
    try:
        if conn.info.server_version >= 140000:
            # An idle_session_timeout set by the DBA must not end the lock session (and with it
            # the lock) while this process migrates on its other connection.
            conn.execute("SET idle_session_timeout = 0")
        oid, database, backend_pid, backend_start = conn.execute(
            "SELECT d.oid::bigint, d.datname, a.pid, a.backend_start"
            " FROM pg_database d JOIN pg_stat_activity a ON a.pid = pg_backend_pid()"
            " WHERE d.datname = current_database()"
        ).fetchone()
        dbkey = database_key(oid)
        started = time.monotonic()
        next_report = started + report_every
        delays = _poll_delays()
        while True:
            got = conn.execute(
                "SELECT pg_try_advisory_lock(%s::int4, %s::int4)", [SCHEMA_LOCK_NAMESPACE, dbkey]
            ).fetchone()[0]
            now = time.monotonic()
            if got:
                break
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
    except BaseException:
        conn.close()
        raise
    waited = time.monotonic() - started
    if waited >= report_every:
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


# --- who holds it ---------------------------------------------------------------------------


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class SchemaLockStatus:
    database: str
    database_oid: int
    holder: pglock.LockSession | None
    holder_migrating: list[pglock.LockSession]  # the holder's DDL session(s), if it is ours
    polling: list[pglock.LockSession]  # our migrators, trying pg_try_advisory_lock with jitter
    blocked: list[pglock.LockSession]  # anyone blocked in pg_advisory_lock (not our code)

    @property
    def waiters(self) -> list[pglock.LockSession]:
        return [*self.polling, *self.blocked]

    @property
    def key(self) -> pglock.AdvisoryKey:
        return schema_lock_key(self.database_oid)

    @property
    def held_for(self) -> float | None:
        """How long the holder has held the lock, when the holder is one of our migrators.

        A gate lock session runs nothing after its successful try, so the time since its last
        state change is the time since it took the lock. For a foreign holder we cannot know.
        """
        h = self.holder
        if h and h.application_name.startswith(LOCK_APPLICATION_PREFIX) and h.state == "idle":
            return h.state_seconds
        return None

    def describe_holder(self) -> str:
        if self.holder is None:
            return "Nobody holds it now (it was just released)."
        text = f"Held by {self.holder.describe(held_for=self.held_for)}."
        for ddl in self.holder_migrating:
            text += f" Its migration session: {ddl.describe()}."
        return text


def schema_lock_status(cursor, database_oid: int | None = None) -> SchemaLockStatus:
    """Holder and waiters of the schema lock of the database ``cursor`` is connected to."""
    cursor.execute(
        "SELECT oid::bigint, datname FROM pg_database WHERE datname = current_database()"
    )
    oid, database = cursor.fetchone()
    if database_oid is not None and oid != database_oid:
        raise ValueError("cursor is connected to another database")
    key = schema_lock_key(oid)
    sessions = pglock.lock_sessions(cursor, key)
    holder = next((s for s in sessions if s.granted), None)
    blocked = [s for s in sessions if not s.granted]
    migrating: list[pglock.LockSession] = []
    if holder and holder.application_name.startswith(LOCK_APPLICATION_PREFIX):
        ddl_name = DDL_APPLICATION_PREFIX + holder.application_name[len(LOCK_APPLICATION_PREFIX) :]
        migrating = pglock.sessions_named(cursor, _like_literal(ddl_name))
    polling = [
        # A poller connects right before its first try: its session age is its wait so far.
        dataclasses.replace(s, waiting_seconds=s.connected_seconds)
        for s in pglock.sessions_named(cursor, _like_literal(LOCK_APPLICATION_PREFIX) + " %")
        if holder is None or s.pid != holder.pid
    ]
    polling.sort(key=lambda s: -(s.waiting_seconds or 0.0))
    return SchemaLockStatus(database, oid, holder, migrating, polling, blocked)


def describe_holder(cursor, database_oid: int | None = None) -> str:
    return schema_lock_status(cursor, database_oid).describe_holder()


# --- DDL under lock_timeout, with bounded retries ---------------------------------------------


@contextmanager
def ddl_session(*, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Arm the DDL connection (``lock_timeout``, ``application_name``) and disarm it after.

    The job that called the gate keeps using this connection afterwards, with its own settings.
    """
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            _SESSION_SQL, [_lock_timeout_setting(), application_name(DDL_APPLICATION_PREFIX)]
        )
    try:
        yield
    finally:
        if connection.connection is not None:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("RESET lock_timeout; RESET application_name")
            except DatabaseError as exc:
                # The connection is broken (that is why we are unwinding): the settings die
                # with it. The original error is the one worth reporting.
                log.warning("Could not reset the migration session settings: %s", exc)


def is_lock_timeout(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) is PostgreSQL's lock_not_available (55P03)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return True
        if getattr(exc, "sqlstate", None) == _LOCK_TIMEOUT_SQLSTATE:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def ddl_backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): exponential, capped, jittered."""
    base = float(settings.DRAINS_MIGRATE_DDL_BACKOFF_SECONDS)
    ceiling = min(DDL_BACKOFF_CAP_SECONDS, base * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def run_with_ddl_retries(
    apply: Callable[[], object],
    *,
    using: str = DEFAULT_DB_ALIAS,
    lock: SchemaLock | None = None,
    current: Callable[[], object] = lambda: None,
    on_retry: Callable[[str], None] | None = None,
) -> object:
    """Call ``apply`` (which migrates); retry it when DDL hits ``lock_timeout``.

    Each Django migration is atomic on PostgreSQL, so the one that timed out has rolled back;
    calling ``apply`` again re-plans from what is recorded and continues with that migration.
    The schema lock stays held during the backoff, so no other migrator slips in between.
    ``current()`` names the migration being applied, for the messages.
    """
    retries = int(settings.DRAINS_MIGRATE_DDL_RETRIES)
    timeout_ms = int(settings.DRAINS_MIGRATE_LOCK_TIMEOUT_MS)
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return apply()
        except DatabaseError as exc:
            if not is_lock_timeout(exc):
                raise
            attempt += 1
            what = current() or "the migration"
            if attempt > retries:
                raise MigrationBlocked(
                    _blocked_message(
                        what=what,
                        attempts=attempt,
                        timeout_ms=timeout_ms,
                        elapsed=time.monotonic() - started,
                        using=using,
                        lock=lock,
                    )
                ) from exc
            delay = ddl_backoff(attempt)
            message = (
                f"{what}: DDL waited longer than lock_timeout ({timeout_ms} ms) for a table "
                f"lock; retry {attempt}/{retries} in {delay:.2f}s (still holding the schema lock)."
            )
            log.warning(message)
            if on_retry is not None:
                on_retry(message)
            time.sleep(delay)


def _blocked_message(*, what, attempts, timeout_ms, elapsed, using, lock) -> str:
    connection = connections[using]
    exclude = [lock.backend_pid] if lock else []
    with connection.cursor() as cursor:
        blockers = pglock.open_transactions(cursor, exclude_pids=exclude)
    if blockers:
        found = (
            "Open transactions holding table locks: "
            + "; ".join(b.describe() for b in blockers)
            + "."
        )
    else:
        found = "No open transaction holds a table lock any more; run it again."
    return (
        f"{what} was not applied: its DDL waited longer than lock_timeout ({timeout_ms} ms) for "
        f"a table lock {attempts} times over {elapsed:.1f}s, so it gave up rather than queue "
        f"everyone behind a long transaction. {found} Ask the owner to finish (commit or roll "
        "back), or end it with SELECT pg_terminate_backend(<pid>), then run `manage.py "
        "migrate` again. Migrations before this one are applied and recorded. "
        "(DRAINS_MIGRATE_LOCK_TIMEOUT_MS and DRAINS_MIGRATE_DDL_RETRIES tune the wait.)"
    )


# --- what is unapplied -------------------------------------------------------------------------


def _disk_migration_names() -> set[tuple[str, str]] | None:
    """(app_label, name) of every migration file on disk, without importing any migration.

    Mirrors how Django's MigrationLoader finds them. None when that is not possible cheaply
    (an unusual module layout): the caller then asks the full loader.
    """
    found: set[tuple[str, str]] = set()
    migration_modules = getattr(settings, "MIGRATION_MODULES", {})
    from django.apps import apps

    for app_config in apps.get_app_configs():
        if app_config.label in migration_modules:
            module_name = migration_modules[app_config.label]
            if module_name is None:
                continue
        else:
            module_name = f"{app_config.name}.migrations"
        try:
            module = import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and "migrations" in exc.name.split("."):
                continue  # an app without migrations
            return None
        path = getattr(module, "__path__", None)
        if path is None or (
            getattr(module, "__file__", None) is None and not isinstance(path, list)
        ):
            continue  # a migrations.py module or an empty namespace directory: unmigrated
        found.update(
            (app_config.label, name)
            for _, name, is_pkg in pkgutil.iter_modules(path)
            if not is_pkg and name[0] not in "_~"
        )
    return found


def _recorded_migration_names(connection) -> set[tuple[str, str]]:
    """Rows of django_migrations in one query; empty when the table does not exist yet."""
    from django.db import transaction
    from django.db.migrations.recorder import MigrationRecorder

    table = connection.ops.quote_name(MigrationRecorder.Migration._meta.db_table)
    sql = f"SELECT app, name FROM {table}"
    try:
        if connection.in_atomic_block:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(sql)
                return set(cursor.fetchall())
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return set(cursor.fetchall())
    except DatabaseError as exc:
        if isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
            return set()  # a fresh database: nothing is recorded
        raise


def unapplied_migrations(connection=None) -> list[tuple[str, str]]:
    """(app_label, name) of every migration the full Django loader would apply, in order."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection or connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [(migration.app_label, migration.name) for migration, backwards in plan if not backwards]


def missing_migrations(connection=None) -> set[tuple[str, str]]:
    """The cheap check: migration files on disk that django_migrations has no row for.

    One query and a directory listing; no migration module is imported and no graph is built.
    Empty means up to date (every node of Django's graph is recorded). Non-empty may include a
    squashed migration whose replaced ones are recorded; the locked path re-checks with the
    full loader before it migrates.
    """
    connection = connection or connections[DEFAULT_DB_ALIAS]
    on_disk = _disk_migration_names()
    if on_disk is None:
        return set(unapplied_migrations(connection))
    return on_disk - _recorded_migration_names(connection)


# --- the start-up gate ------------------------------------------------------------------------


def ensure_schema(*, stdout=None, using: str = DEFAULT_DB_ALIAS) -> bool:
    """The start-up gate every job calls. Returns True when this call applied migrations.

    Up to date (the common case): one query, no lock. Otherwise: take the schema lock (waiting,
    bounded, for another migrator), re-check — the one we waited for has usually done it all —
    and migrate through ``manage.py migrate``, the same locked path a deploy uses.
    Raises a SchemaGateError (a CommandError) with an operator-readable message on failure.
    """
    connection = connections[using]
    if not missing_migrations(connection):
        return False
    with schema_lock(using=using):
        if not missing_migrations(connection):
            return False
        pending = unapplied_migrations(connection)
        if not pending:
            log.info("No unapplied migrations after all (squashed migrations are recorded).")
            return False
        log.info("Applying %d migration(s) on database alias %r.", len(pending), using)
        from django.core.management import call_command

        call_command(
            "migrate",
            database=using,
            interactive=False,
            verbosity=1 if stdout is not None else 0,
            stdout=stdout if stdout is not None else io.StringIO(),
        )
    return True
