"""The schema lock's key and the names its sessions carry: what both the lock (drains/schema/
lock.py) and the description of its holder (drains/schema/status.py) need, so neither imports
the other's internals."""

from __future__ import annotations

import os
import socket

from drains import pglock

#: First half of the lock key: ASCII "MIGR" (0x4D494752). Fixed; documented; never reuse it.
SCHEMA_LOCK_NAMESPACE = 0x4D494752
#: ``application_name`` prefixes of the two sessions a migrator opens.
LOCK_APPLICATION_PREFIX = "drains-migrate lock"
DDL_APPLICATION_PREFIX = "drains-migrate ddl"

_APPLICATION_NAME_MAX = 63  # NAMEDATALEN - 1


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
