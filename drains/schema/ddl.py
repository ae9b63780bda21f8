"""DDL under ``lock_timeout``, with bounded retries: a migration never queues behind a long
transaction while every other migrator queues behind it."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from drains import pglock
from drains.schema.errors import MigrationBlocked
from drains.schema.lock import (
    DDL_APPLICATION_PREFIX,
    SESSION_SQL,
    SchemaLock,
    application_name,
    lock_timeout_setting,
)

log = logging.getLogger(__name__)

#: Backoff between DDL attempts never grows beyond this (seconds).
DDL_BACKOFF_CAP_SECONDS = 30.0

_LOCK_TIMEOUT_SQLSTATE = "55P03"  # lock_not_available: lock_timeout expired


@contextmanager
def ddl_session(*, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Arm the DDL connection (``lock_timeout``, ``application_name``) and disarm it after.

    The job that called the gate keeps using this connection afterwards, with its own settings.
    """
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            SESSION_SQL, [lock_timeout_setting(), application_name(DDL_APPLICATION_PREFIX)]
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
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.errors.LockNotAvailable):
            return True
        if getattr(current, "sqlstate", None) == _LOCK_TIMEOUT_SQLSTATE:
            return True
        current = current.__cause__ or current.__context__
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
        "(DRAINS_MIGRATE_LOCK_TIMEOUT_MS and DRAINS_MIGRATE_DDL_RETRIES tune the wait: a host's "
        "own settings module, docs/deploy.md.)"
    )
