"""The runner's and the supervisor's database session: its timeouts, and retrying the writes
that must not be lost to a transient fault.

``ensure_session_timeouts()`` sets ``statement_timeout`` and ``lock_timeout`` (DRAINS_DB_*) on the
current thread's connection, once per server session (a plain ``set_config`` on the session,
so PgBouncer in session mode keeps it; migrations and the web keep the server's own settings).

``DbRetry.call(what, fn)`` runs ``fn``; a transient error (connection lost, server restarting or
shutting down, serialization failure or deadlock, statement or lock timeout, a disk or memory
shortage) closes the connection and tries again after a jittered, growing wait, for at most
DRAINS_DB_RETRY_SECONDS in all. Once that budget has run out, later calls of the same run get
one attempt each (the database is gone; the journal holds what was paid for). Anything else is
raised at once. After each reconnect ``on_reconnect`` is asked (the runner re-checks its drain
lock there: a run whose lock session ended is fenced).

``database_failure_line(exc)`` is how a database failure is reported: the first line of the server's message
(no DETAIL or HINT), what failed and what to do.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection

from drains.journal import JournalError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# SQLSTATE classes worth another try: connection exceptions (08), transaction rollback
# (40: serialization failure, deadlock), insufficient resources (53: disk full, out of memory,
# too many connections), operator intervention (57: statement timeout / cancel, admin or crash
# shutdown, cannot connect now); and lock_not_available (55P03, a lock_timeout).
_TRANSIENT_CLASSES = {"08", "40", "53", "57"}
_TRANSIENT_STATES = {"55P03"}
_FIRST_WAIT = 0.2
_MAX_WAIT = 5.0


class DatabaseUnavailable(RuntimeError):
    """A transient fault outlasted DRAINS_DB_RETRY_SECONDS; one line, with what to do."""


def _psycopg_error(exc: BaseException) -> BaseException | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, psycopg.Error):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def is_transient(exc: BaseException | None) -> bool:
    if isinstance(exc, DatabaseUnavailable):
        return False  # the budget is spent: never retried again
    # A wrapper (a PromotionError, say) is as transient as the database error it carries.
    while exc is not None and not isinstance(exc, DatabaseError | psycopg.Error):
        exc = exc.__cause__
    if exc is None:
        return False
    inner = _psycopg_error(exc)
    sqlstate = getattr(inner, "sqlstate", None) if inner is not None else None
    if sqlstate:
        return sqlstate[:2] in _TRANSIENT_CLASSES or sqlstate in _TRANSIENT_STATES
    # No SQLSTATE: the client side lost or never had the connection.
    return isinstance(exc, InterfaceError | psycopg.OperationalError | psycopg.InterfaceError) or (
        type(exc).__name__ == "OperationalError"
    )


def message_of(exc: BaseException) -> str:
    """The server's primary message only: libpq adds DETAIL, HINT and context on later lines."""
    inner = _psycopg_error(exc) or exc
    diag = getattr(inner, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(inner) or type(inner).__name__
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(inner).__name__


def database_failure_line(exc: BaseException) -> str:
    """A database failure as one line: what failed and what to do."""
    if isinstance(exc, DatabaseUnavailable):
        return str(exc)
    return (
        f"the database failed: {message_of(exc)}. Check that PostgreSQL is up and has disk "
        "space, then run the drain again (what was paid for is kept in the journal)."
    )


def describe(exc: BaseException) -> str:
    """One line for a run's failure: a database error without libpq's DETAIL and HINT lines."""
    if isinstance(exc, DatabaseUnavailable | JournalError):
        return str(exc)
    if isinstance(exc, DatabaseError | psycopg.Error):
        return database_failure_line(exc)
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


_applied = threading.local()


def ensure_session_timeouts() -> None:
    """statement_timeout and lock_timeout on this thread's connection, once per server session."""
    connection.ensure_connection()
    raw = connection.connection
    if getattr(_applied, "raw", None) is raw:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
            [f"{settings.DRAINS_DB_STATEMENT_TIMEOUT_MS}ms", f"{settings.DRAINS_DB_LOCK_TIMEOUT_MS}ms"],
        )
    _applied.raw = raw


def reset_connection() -> None:
    """Drop this thread's connection so that the next query opens a new one."""
    try:
        connection.close()
    except DatabaseError as exc:  # the old session is gone anyway; say so and move on
        logger.debug("closing a broken connection: %s", exc)
    _applied.raw = None


class DbRetry:
    """Retries with one budget per run: shared by the run's threads."""

    def __init__(self, *, seconds: float | None = None,
                 on_reconnect: Callable[[], None] | None = None):
        self.seconds = settings.DRAINS_DB_RETRY_SECONDS if seconds is None else seconds
        self.on_reconnect = on_reconnect
        self.exhausted = False
        self.retries = 0

    def call(self, what: str, fn: Callable[[], T]) -> T:
        started = time.monotonic()
        budget = 0.0 if self.exhausted else self.seconds
        wait = _FIRST_WAIT
        while True:
            try:
                ensure_session_timeouts()
                return fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                reset_connection()
                elapsed = time.monotonic() - started
                if elapsed >= budget:
                    if budget:
                        self.exhausted = True
                    raise DatabaseUnavailable(
                        f"{what} failed: {message_of(exc)} (still failing after "
                        f"{elapsed:.0f} s of retries, DRAINS_DB_RETRY_SECONDS={self.seconds:g}). "
                        "Check that PostgreSQL is up and has disk space, then run the drain "
                        "again: what was paid for is kept in the journal."
                    ) from exc
                self.retries += 1
                logger.warning("%s failed (%s); reconnecting and retrying", what, message_of(exc))
                # Full jitter on a doubling wait, never past the budget.
                time.sleep(min(budget - elapsed, random.uniform(wait / 2, wait)))
                wait = min(wait * 2, _MAX_WAIT)
                if self.on_reconnect is not None:
                    self.on_reconnect()
