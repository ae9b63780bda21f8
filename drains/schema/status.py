"""Who holds the schema lock, who waits for it, and what the holder's DDL session is running
(``manage.py migrate_lock_status``, and the waiters' reports). Reads only."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from drains import pglock
from drains.schema.keys import DDL_APPLICATION_PREFIX, LOCK_APPLICATION_PREFIX, schema_lock_key


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
