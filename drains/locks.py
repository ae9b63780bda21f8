"""The one-runner-per-drain lock: a session-level PostgreSQL advisory lock per drain.

``DrainLock(name)`` opens a dedicated connection that the process owns for as long as it runs
and takes ``pg_try_advisory_lock(DRAIN_LOCK_NAMESPACE, drain_lock_key(name))`` on it. Because
the lock belongs to that server session, a crash (even SIGKILL) ends the session and frees the
lock; nothing has to be cleaned up. The lock connection's backend pid is what a DrainRun records
as ``backend_pid``, and what ``drain_lock_holders()`` reports.

This module never waits for a lock (a second runner exits at once) and never writes a table.
The keys are in the two-int4 form, so pg_locks shows ``classid = DRAIN_LOCK_NAMESPACE``,
``objid = drain_lock_key(name)``, ``objsubid = 2``; the schema gate uses its own namespace.
"""

from __future__ import annotations

import logging
import os
import socket
import zlib
from dataclasses import dataclass

import psycopg
from django.db import connection as default_connection

logger = logging.getLogger(__name__)

# "DRN1" as an int4: the namespace of per-drain runner locks.
DRAIN_LOCK_NAMESPACE = 0x44524E31


def drain_lock_key(name: str) -> int:
    """The second int4 of a drain's lock: a stable, non-negative crc32 of its name."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


class LockLost(RuntimeError):
    """The lock connection died (e.g. ``pg_terminate_backend``): another runner may start now."""


@dataclass(frozen=True)
class LockHolder:
    backend_pid: int
    application_name: str
    client_addr: str | None


def _own_connection(application_name: str) -> psycopg.Connection:
    """A new autocommit connection to the project's database, separate from Django's."""
    params = dict(default_connection.get_connection_params())
    for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(key, None)
    params["application_name"] = application_name[:63]
    return psycopg.connect(autocommit=True, **params)


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
        conn = _own_connection(f"drain-{self.name} host={socket.gethostname()} pid={os.getpid()}")
        try:
            got = conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s), pg_backend_pid()",
                (DRAIN_LOCK_NAMESPACE, self.key),
            ).fetchone()
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


_HOLDERS_SQL = """
SELECT l.objid::bigint, l.pid
FROM pg_locks l
WHERE l.locktype = 'advisory'
  AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %s
  AND l.objsubid = 2
  AND l.objid::bigint = ANY(%s)
"""


def drain_lock_holders(names) -> dict[str, int | None]:
    """``{name: backend pid holding its lock, or None}`` for every name, in one query."""
    names = list(names)
    by_key = {drain_lock_key(name): name for name in names}
    holders: dict[str, int | None] = dict.fromkeys(names)
    if not names:
        return holders
    with default_connection.cursor() as cursor:
        cursor.execute(_HOLDERS_SQL, [DRAIN_LOCK_NAMESPACE, list(by_key)])
        for key, pid in cursor.fetchall():
            holders[by_key[key]] = pid
    return holders


def lock_holder(name: str) -> LockHolder | None:
    """The session holding ``name``'s lock, with its application_name, or None when free."""
    with default_connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.pid, a.application_name, a.client_addr::text
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory'
              AND l.granted
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND l.classid::bigint = %s
              AND l.objsubid = 2
              AND l.objid::bigint = %s
            LIMIT 1
            """,
            [DRAIN_LOCK_NAMESPACE, drain_lock_key(name)],
        )
        row = cursor.fetchone()
    return LockHolder(*row) if row else None
