"""The project's own advisory locks: one runner per drain, one supervisor, one probe after a
reset per quota (taken on the drain lock's session), and the one helper
that opens a lock session (``open_lock_session``; the schema gate's lock uses it too).

``DrainLock(name)`` opens a dedicated connection that the process owns for as long as it runs
and takes ``pg_try_advisory_lock(DRAIN_LOCK_NAMESPACE, drain_lock_key(name))`` on it. Because
the lock belongs to that server session, a crash (even SIGKILL) ends the session and frees the
lock; nothing has to be cleaned up. The lock connection's backend pid is what a DrainRun records
as ``backend_pid``, and what ``drain_lock_holders()`` reports.

This module never waits for a lock (a second runner exits at once) and never writes a table.
The keys are in the two-int4 form, so pg_locks shows ``classid = DRAIN_LOCK_NAMESPACE``,
``objid = drain_lock_key(name)``, ``objsubid = 2``; the schema gate uses its own namespace.
Reading ``pg_locks`` (who holds a key) is drains/pglock.py's.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import socket
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections
from django.db import connection as default_connection

from drains import pglock

logger = logging.getLogger(__name__)

# "DRN1" as an int4: the namespace of per-drain runner locks.
DRAIN_LOCK_NAMESPACE = 0x44524E31
# "SUPV" as an int4: the supervisor's lock namespace (key 1: the one supervisor).
SUPERVISOR_LOCK_NAMESPACE = 0x53555056
SUPERVISOR_LOCK_KEY = 1
# "PRB1" as an int4: one probe after a reset per quota (key: crc32 of the quota key).
PROBE_LOCK_NAMESPACE = 0x50524231
_DJANGO_ONLY_PARAMS = ("cursor_factory", "context", "prepare_threshold", "server_side_binding")


class _Fetches(Protocol):
    def fetchone(self) -> Any: ...


def one_row(cursor: _Fetches) -> Any:
    """The row of a statement that always returns one (a SELECT of functions, this session's
    own row): None there would be a broken server, said as such rather than as a TypeError."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError("the server returned no row where one always comes")
    return row


def drain_lock_key(name: str) -> int:
    """The second int4 of a drain's lock: a stable, non-negative crc32 of its name."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


class LockLost(RuntimeError):
    """The lock connection died (e.g. ``pg_terminate_backend``): another runner may start now."""

    failure_kind = "database"  # drains/failures.py


class SessionNotOwned(ImproperlyConfigured):
    """The lock session is not a server session of its own: a pooler (PgBouncer in transaction
    or statement mode) hands its statements to shared server sessions, where a session-level
    advisory lock means nothing. Refused before any lock is taken."""


@dataclass(frozen=True)
class LockHolder:
    backend_pid: int
    application_name: str
    client: str  # address, or 'local socket'


def open_lock_session(*, application_name: str, using: str = DEFAULT_DB_ALIAS) -> psycopg.Connection:
    """A new autocommit connection to ``using``'s database that nothing else uses.

    A session-level advisory lock lives exactly as long as this session: a crash of the
    process (even SIGKILL) ends it and frees the lock. The parameters come from Django's
    ``get_connection_params()``, the one place that prepares them (it also starts the embedded
    server when there is one); the keys only Django's wrapper understands are dropped.
    """
    params = dict(connections[using].get_connection_params())
    for key in _DJANGO_ONLY_PARAMS:
        params.pop(key, None)
    params["application_name"] = application_name[:63]
    conn = psycopg.connect(autocommit=True, **params)
    try:
        _require_own_session(conn, params)
    except BaseException:
        conn.close()
        raise
    return conn


def _require_own_session(conn: psycopg.Connection, params: dict) -> None:
    """Refuse a lock session that a transaction-pooling proxy shares with other clients.

    A mark set for the session must still be there on the session's next statement, and a
    second, new connection must not see it. Directly, or through PgBouncer in session mode,
    both hold. Through PgBouncer in transaction mode, statements run on whichever server
    session is free, so the next statement, or the other connection, lands on another one.
    One extra short connection, once per lock session (once per run or tick).
    """
    mark = secrets.token_hex(8)
    conn.execute("SELECT set_config('drains.session_mark', %s, false)", (mark,))
    with psycopg.connect(autocommit=True, **params) as other:
        seen_elsewhere = one_row(other.execute(
            "SELECT current_setting('drains.session_mark', true)"
        ))[0]
    kept = one_row(conn.execute("SELECT current_setting('drains.session_mark', true)"))[0]
    if kept != mark or seen_elsewhere == mark:
        raise SessionNotOwned(
            "the database connection does not keep a server session of its own (PgBouncer in "
            "pool_mode = transaction or statement?): the schema gate and the one-runner-per-drain "
            "lock are session-level advisory locks and cannot work through it. Connect directly, "
            "or through PgBouncer in pool_mode = session (docs/deploy.md)."
        )


class DrainLock:
    """The advisory lock of one drain, on a connection this process owns.

    ``acquire()`` returns False at once when another session holds it. ``release()`` (or the
    process ending) frees it. Use as a context manager only after a successful ``acquire()``.
    """

    def __init__(self, name: str):
        self.name = name
        self.key = drain_lock_key(name)
        self._conn: psycopg.Connection | None = None
        self.backend_pid: int | None = None

    def acquire(self) -> bool:
        if self._conn is not None:
            raise RuntimeError(f"the {self.name} drain lock is already held by this process")
        conn = open_lock_session(
            application_name=f"drain-{self.name} host={socket.gethostname()} pid={os.getpid()}"
        )
        try:
            got = one_row(conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s), pg_backend_pid()",
                (DRAIN_LOCK_NAMESPACE, self.key),
            ))
        except BaseException:
            conn.close()
            raise
        if not got[0]:
            conn.close()
            return False
        self._conn = conn
        self.backend_pid = got[1]
        return True

    def check(self) -> None:
        """Raise ``LockLost`` when the lock's session is gone (one round trip)."""
        if self._conn is None:
            raise LockLost(f"the {self.name} drain lock is not held")
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise LockLost(
                f"the {self.name} drain lock's connection (backend pid {self.backend_pid}) was "
                f"lost, so another runner may already have started: {exc}"
            ) from exc

    def check_if_told(self) -> None:
        """``check()``, but without a round trip while the server has said nothing.

        A session ended by ``pg_terminate_backend`` (the supervisor, here or on another host)
        or by the server gets a FATAL message and the socket's end, which make it readable;
        an idle, healthy lock session never is. So the runner can ask before every paid call.
        """
        conn = self._conn
        if conn is None or conn.closed:
            raise LockLost(f"the {self.name} drain lock is not held")
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if readable:
            self.check()

    def try_claim_probe(self, quota: str) -> bool:
        """Take the quota's probe claim on this lock's session, without waiting.

        One probe after a reset per quota: the drain that gets it makes the one call; another
        drain on the quota holds until it is released. The session ending frees it too.
        """
        if self._conn is None:
            raise LockLost(f"the {self.name} drain lock is not held")
        return bool(
            one_row(self._conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (PROBE_LOCK_NAMESPACE, drain_lock_key(quota))
            ))[0]
        )

    def release_probe(self, quota: str) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(
                "SELECT pg_advisory_unlock(%s, %s)", (PROBE_LOCK_NAMESPACE, drain_lock_key(quota))
            )
        except psycopg.Error as exc:
            # The session is gone, and the claim with it.
            logger.warning("releasing the probe claim of %s: %s", quota, exc)

    def holder(self) -> LockHolder | None:
        """Who holds this drain's lock now (for the "already running" message)."""
        return lock_holder(self.name)

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            # Closing the session frees the lock anyway; unlocking first just says so sooner.
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (DRAIN_LOCK_NAMESPACE, self.key))
        except psycopg.Error as exc:
            logger.warning("releasing the %s drain lock: %s", self.name, exc)
        finally:
            conn.close()

    def __enter__(self) -> DrainLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def drain_lock_holders(names) -> dict[str, int | None]:
    """``{name: backend pid holding its lock, or None}`` for every name, in one query."""
    names = list(names)
    by_key = {drain_lock_key(name): name for name in names}
    holders: dict[str, int | None] = dict.fromkeys(names)
    if not names:
        return holders
    with default_connection.cursor() as cursor:
        for key, pid in pglock.holder_pids(cursor, DRAIN_LOCK_NAMESPACE, list(by_key)).items():
            holders[by_key[key]] = pid
    return holders


def lock_holder(name: str) -> LockHolder | None:
    """The session holding ``name``'s lock, with its application_name, or None when free."""
    with default_connection.cursor() as cursor:
        session = pglock.holder(
            cursor, pglock.AdvisoryKey.two_part(DRAIN_LOCK_NAMESPACE, drain_lock_key(name))
        )
    return LockHolder(session.pid, session.application_name, session.client) if session else None


def probe_holder(quota: str) -> str | None:
    """Who holds ``quota``'s probe claim (its application_name), or None when free."""
    with default_connection.cursor() as cursor:
        session = pglock.holder(
            cursor, pglock.AdvisoryKey.two_part(PROBE_LOCK_NAMESPACE, drain_lock_key(quota))
        )
    return session.application_name if session else None


class SupervisorLock:
    """The one supervisor: ``pg_try_advisory_lock`` on its own session; the session ending
    frees it."""

    def __init__(self):
        self._conn: psycopg.Connection | None = None

    def acquire(self) -> bool:
        conn = open_lock_session(
            application_name=f"supervisor host={socket.gethostname()} pid={os.getpid()}"
        )
        got = one_row(conn.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (SUPERVISOR_LOCK_NAMESPACE, SUPERVISOR_LOCK_KEY)
        ))[0]
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def holder_pid(self) -> int | None:
        with default_connection.cursor() as cursor:
            holders = pglock.holder_pids(cursor, SUPERVISOR_LOCK_NAMESPACE, [SUPERVISOR_LOCK_KEY])
        return holders.get(SUPERVISOR_LOCK_KEY)

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
