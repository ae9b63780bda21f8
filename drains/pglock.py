"""Who holds a PostgreSQL advisory lock: ``pg_locks`` joined with ``pg_stat_activity``.

This module owns the *read* side of advisory locks for the whole project (the schema gate, and
any other part that wants to say who holds one of its locks). It only reads the catalogue: it
never takes, releases or breaks a lock, and it never terminates a backend.

How an advisory key appears in ``pg_locks`` (PostgreSQL documents this in "pg_locks"):
``pg_advisory_lock(int4 a, int4 b)`` shows as ``classid = a, objid = b, objsubid = 2`` and
``pg_advisory_lock(int8 k)`` as ``classid = k >> 32, objid = k & 0xFFFFFFFF, objsubid = 1``;
both columns are ``oid``, i.e. the unsigned reading of the 32 bits. Advisory locks are scoped to
one database, so every query here is restricted to ``current_database()``.
"""

from __future__ import annotations

from dataclasses import dataclass

INT4_MIN = -(2**31)
INT4_MAX = 2**31 - 1


def to_int4(value: int) -> int:
    """Read a 32-bit unsigned value (an ``oid``) as the signed int4 with the same bits."""
    if not 0 <= value < 2**32:
        raise ValueError(f"{value} does not fit in 32 bits")
    return value - 2**32 if value > INT4_MAX else value


def to_oid(value: int) -> int:
    """The unsigned 32-bit reading of an int4, as ``pg_locks`` shows it."""
    if not INT4_MIN <= value <= INT4_MAX:
        raise ValueError(f"{value} is not an int4")
    return value + 2**32 if value < 0 else value


@dataclass(frozen=True)
class AdvisoryKey:
    """One advisory lock key, in the form ``pg_locks`` shows it."""

    classid: int
    objid: int
    objsubid: int

    @classmethod
    def two_part(cls, key1: int, key2: int) -> AdvisoryKey:
        """The key of ``pg_advisory_lock(key1::int4, key2::int4)``."""
        return cls(to_oid(key1), to_oid(key2), 2)

    @classmethod
    def single(cls, key: int) -> AdvisoryKey:
        """The key of ``pg_advisory_lock(key::int8)``."""
        unsigned = key % 2**64
        return cls(unsigned >> 32, unsigned & 0xFFFFFFFF, 1)

    def __str__(self) -> str:
        return f"classid={self.classid} objid={self.objid} objsubid={self.objsubid}"


@dataclass(frozen=True)
class LockSession:
    """A server session that holds (``granted``) or waits in ``pg_advisory_lock`` for a key."""

    pid: int
    granted: bool
    application_name: str
    state: str
    query: str
    user: str
    client: str
    connected_seconds: float | None
    state_seconds: float | None  # time since the session entered its current state
    query_seconds: float | None  # time since its current (or last) query started
    waiting_seconds: float | None  # for a blocked waiter: how long it has waited

    def describe(self, *, held_for: float | None = None, query_chars: int = 200) -> str:
        """One line with everything an operator needs to find and judge the session."""
        parts = [f"pid {self.pid}", f"application_name {self.application_name!r}"]
        if self.user:
            parts.append(f"user {self.user}")
        if self.client:
            parts.append(f"client {self.client}")
        parts.append(f"state {self.state or 'unknown'}" + _for(self.state_seconds))
        if held_for is not None:
            parts.append(f"holding it for {held_for:.1f}s")
        elif self.waiting_seconds is not None:
            parts.append(f"waiting for {self.waiting_seconds:.1f}s")
        if self.connected_seconds is not None:
            parts.append(f"connected {self.connected_seconds:.1f}s ago")
        parts.append(f"query {shorten(self.query, query_chars)!r}")
        return ", ".join(parts)


def _for(seconds: float | None) -> str:
    return "" if seconds is None else f" for {seconds:.1f}s"


def shorten(text: str, limit: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_SESSION_COLUMNS = """
    a.pid,
    coalesce(a.application_name, ''),
    coalesce(a.state, ''),
    coalesce(a.query, ''),
    coalesce(a.usename::text, ''),
    coalesce(host(a.client_addr), CASE WHEN a.pid IS NOT NULL AND a.client_addr IS NULL
                                        THEN 'local socket' ELSE '' END),
    extract(epoch FROM now() - a.backend_start)::float8,
    extract(epoch FROM now() - a.state_change)::float8,
    extract(epoch FROM now() - a.query_start)::float8
"""

_LOCK_SESSIONS_SQL = f"""
SELECT l.granted, extract(epoch FROM now() - l.waitstart)::float8, {_SESSION_COLUMNS}
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = %s
ORDER BY l.granted DESC, l.waitstart NULLS LAST, l.pid
"""


def _session(row, *, granted: bool, waiting: float | None, pid_fallback: int = 0):
    pid, app, state, query, user, client, connected, in_state, in_query = row
    return LockSession(
        pid=pid if pid is not None else pid_fallback,
        granted=granted,
        application_name=app,
        state=state,
        query=query,
        user=user,
        client=client,
        connected_seconds=connected,
        state_seconds=in_state,
        query_seconds=in_query,
        waiting_seconds=waiting,
    )


def lock_sessions(cursor, key: AdvisoryKey) -> list[LockSession]:
    """Holders first, then sessions blocked in ``pg_advisory_lock``, longest waiting first.

    ``cursor`` is any DB-API cursor on the lock's database (psycopg or Django). Sessions that
    *poll* with ``pg_try_advisory_lock`` do not appear here: between tries they hold nothing.
    """
    cursor.execute(_LOCK_SESSIONS_SQL, [key.classid, key.objid, key.objsubid])
    return [_session(tuple(row[2:]), granted=row[0], waiting=row[1]) for row in cursor.fetchall()]


def holder(cursor, key: AdvisoryKey) -> LockSession | None:
    """The session holding ``key``, or None when it is free."""
    return next((s for s in lock_sessions(cursor, key) if s.granted), None)


_HOLDER_PIDS_SQL = """
SELECT l.objid::bigint, l.pid
FROM pg_locks l
WHERE l.locktype = 'advisory'
  AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %s
  AND l.objsubid = 2
  AND l.objid::bigint = ANY(%s)
"""


def holder_pids(cursor, namespace: int, keys: list[int]) -> dict[int, int]:
    """``{key: backend pid}`` for each two-part key ``(namespace, key)`` that is held, in one
    query (non-negative int4 halves: their oid reading is the same number)."""
    cursor.execute(_HOLDER_PIDS_SQL, [namespace, list(keys)])
    return {key: pid for key, pid in cursor.fetchall()}


#: A boolean SQL expression: session ``%s`` (pid) started at ``%s`` (backend_start) holds the
#: two-part key ``%s``/``%s`` (classid, objid as oids) in this database. Callers embed it in
#: their own round trip (the schema gate re-arms its DDL session in the same statement).
HELD_BY_SESSION_SQL = """
EXISTS (
    SELECT 1
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted
      AND l.pid = %s AND a.backend_start = %s
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = %s::oid AND l.objid = %s::oid AND l.objsubid = 2
)
"""


_SESSIONS_BY_NAME_SQL = f"""
SELECT {_SESSION_COLUMNS}
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.application_name LIKE %s AND a.pid <> pg_backend_pid()
ORDER BY a.backend_start, a.pid
"""


def sessions_named(cursor, pattern: str) -> list[LockSession]:
    """Sessions of this database whose ``application_name`` matches the LIKE ``pattern``."""
    cursor.execute(_SESSIONS_BY_NAME_SQL, [pattern])
    return [_session(tuple(row), granted=False, waiting=None) for row in cursor.fetchall()]


_OPEN_TRANSACTIONS_SQL = f"""
SELECT extract(epoch FROM now() - a.xact_start)::float8, {_SESSION_COLUMNS}
FROM pg_stat_activity a
WHERE a.datname = current_database()
  AND a.xact_start IS NOT NULL
  AND a.pid <> pg_backend_pid()
  AND NOT (a.pid = ANY(%s))
  AND EXISTS (SELECT 1 FROM pg_locks l
              WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.granted)
ORDER BY a.xact_start, a.pid
LIMIT %s
"""


@dataclass(frozen=True)
class OpenTransaction:
    session: LockSession
    open_seconds: float

    def describe(self) -> str:
        return f"transaction open for {self.open_seconds:.1f}s in {self.session.describe()}"


def open_transactions(cursor, *, exclude_pids=(), limit: int = 5) -> list[OpenTransaction]:
    """The oldest open transactions of this database that hold relation locks.

    These are the sessions a DDL statement can queue behind; shown when DDL gives up.
    """
    cursor.execute(_OPEN_TRANSACTIONS_SQL, [list(exclude_pids), limit])
    return [
        OpenTransaction(_session(tuple(row[1:]), granted=True, waiting=None), row[0] or 0.0)
        for row in cursor.fetchall()
    ]
