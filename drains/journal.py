"""The local journal of paid results: one small SQLite file per host, outside PostgreSQL.

The moment an extractor call returns, the runner appends its raw answer here (one INSERT,
``synchronous = FULL`` in WAL mode: appended to the ``-wal`` file beside it and fsync'd at its
commit, so on disk before the database is touched; https://www.sqlite.org/pragma.html#pragma_synchronous:
"With synchronous=FULL in WAL mode, an additional sync operation of the WAL file happens after each
transaction commit", which makes each commit durable across a power loss).
Staging in PostgreSQL follows. An entry stays until the checkpoint that counts its item has
committed; whatever next runs the drain on this host (the next run, or the supervisor's promotion
step) moves what is left into staging and onto its run's counts first (``drains/runs.py``,
``replay_journal``), and an item with an entry is never called again.

This module only stores and reads entries; it never touches PostgreSQL and never decides when
an entry is replayed. A journal that cannot be written raises ``JournalError`` (one line).
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS paid ("
    " drain TEXT NOT NULL, item_key TEXT NOT NULL, run_id INTEGER, payload TEXT NOT NULL,"
    " usage TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL,"
    " PRIMARY KEY (drain, item_key))"
)
# Paid calls whose item failed (ItemFailed: a reply that could not be used, its usage): kept like
# a paid result until the checkpoint that counts the failure, so that a run killed before that
# checkpoint still has its failures and their usage counted on its row (replay_journal).
_FAILED_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS failed ("
    " drain TEXT NOT NULL, item_key TEXT NOT NULL, run_id INTEGER,"
    " usage TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL,"
    " PRIMARY KEY (drain, item_key))"
)


# Ballast kept beside the journal: when its disk fills up, deleting it makes room for the
# deletes (SQLite writes a rollback journal for them too) that must follow counted checkpoints,
# so that entries already counted in PostgreSQL are never left behind to be counted again.
RESERVE_BYTES = 256 * 1024
# The -wal file beside the journal: it is checkpointed into the main file after each chunk's
# deletes (forget), so the next write starts it over and it holds about one chunk's entries;
# SQLite also checkpoints it by itself past WAL_AUTOCHECKPOINT_PAGES (4 KB pages), and truncates
# it to WAL_SIZE_LIMIT_BYTES when it starts over.
WAL_AUTOCHECKPOINT_PAGES = 256
WAL_SIZE_LIMIT_BYTES = 512 * 1024


class JournalError(RuntimeError):
    """The journal cannot be written or read: the run stops before its next call."""


@dataclass(frozen=True)
class Entry:
    drain: str
    item_key: str
    run_id: int | None
    payload: Any
    usage: dict


def journal_path() -> Path:
    return Path(settings.DRAINS_JOURNAL_DIR) / f"{socket.gethostname()}.sqlite3"


class Journal:
    """One process's handle on its host's journal file; safe to share between threads."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30
            )
            # WAL and a full fsync per commit: a committed entry is on disk when record()
            # returns, whatever happens to this process or the host next. One sync of the -wal
            # file per commit (rollback mode syncs the rollback journal and the file: about
            # twice the cost). synchronous is per connection; only this class opens the file.
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":  # a file system without shared memory: still durable, slower
                logger.warning("the journal %s stays in %s mode (WAL refused)", path, mode)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            conn.execute(_SCHEMA)
            conn.execute(_FAILED_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise self._error("open", exc) from exc
        self._conn = conn
        self.reserve = path.with_name(path.name + ".reserve")
        self._keep_reserve()

    def _keep_reserve(self) -> None:
        if self.reserve.exists():
            return
        try:
            with open(self.reserve, "wb") as f:
                f.write(b"\0" * RESERVE_BYTES)
        except OSError as exc:  # no room even for it: the run goes on; a full disk stops it later
            self.reserve.unlink(missing_ok=True)
            logger.warning("cannot keep the journal's reserve %s: %s", self.reserve, exc)

    def _release_reserve(self) -> None:
        self.reserve.unlink(missing_ok=True)

    def _error(self, what: str, exc: BaseException) -> JournalError:
        return JournalError(
            f"cannot {what} the journal of paid results {self.path}: {exc}. Free space on its "
            "disk or fix its permissions (DRAINS_JOURNAL_DIR), then run the drain again."
        )

    def record(self, *, drain: str, item_key: str, run_id: int | None, payload: Any,
               usage: Mapping[str, Any] | None) -> None:
        """Append one paid result; an older entry for the item wins (it was paid for first)."""
        body = json.dumps(payload, ensure_ascii=False, default=str)
        spent = json.dumps(dict(usage or {}), ensure_ascii=False, default=str)
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT OR IGNORE INTO paid (drain, item_key, run_id, payload, usage, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (drain, item_key, run_id, body, spent, timezone.now().isoformat()),
                )
        except sqlite3.Error as exc:
            self._release_reserve()  # room for the forget() of what was counted already
            raise self._error("write", exc) from exc

    def record_failure(self, *, drain: str, item_key: str, run_id: int | None,
                       usage: Mapping[str, Any] | None) -> None:
        """Append one paid call whose item failed (counted as failed on ``run_id`` if replayed)."""
        spent = json.dumps(dict(usage or {}), ensure_ascii=False, default=str)
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT OR IGNORE INTO failed (drain, item_key, run_id, usage, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (drain, item_key, run_id, spent, timezone.now().isoformat()),
                )
        except sqlite3.Error as exc:
            self._release_reserve()
            raise self._error("write", exc) from exc

    def failures(self, drain: str) -> list[Entry]:
        """The failed calls of ``drain`` not yet counted by a checkpoint (payload None)."""
        try:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT item_key, run_id, usage FROM failed WHERE drain = ?"
                    " ORDER BY created_at, item_key",
                    (drain,),
                ).fetchall()
        except sqlite3.Error as exc:
            raise self._error("read", exc) from exc
        return [Entry(drain, key, run_id, None, json.loads(spent)) for key, run_id, spent in rows]

    def entries(self, drain: str) -> list[Entry]:
        try:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT item_key, run_id, payload, usage FROM paid WHERE drain = ?"
                    " ORDER BY created_at, item_key",
                    (drain,),
                ).fetchall()
        except sqlite3.Error as exc:
            raise self._error("read", exc) from exc
        return [Entry(drain, key, run_id, json.loads(body), json.loads(spent))
                for key, run_id, body, spent in rows]

    def keys(self, drain: str) -> set[str]:
        return {entry.item_key for entry in self.entries(drain)}

    def forget(self, drain: str, keys, *, tables: tuple[str, ...] = ("paid", "failed")) -> None:
        """Delete entries once PostgreSQL holds and counts them (after that commit, never before).
        ``tables``: only paid results, or only failed calls, when just those were counted (an
        item's failed call and its later paid result are two entries)."""
        if not set(tables) <= {"paid", "failed"}:  # names go into the SQL: the two tables only
            raise ValueError(f"no journal table {tables!r}")
        keys = list(keys)
        if not keys:
            return
        try:
            self._delete(drain, keys, tables)
        except sqlite3.Error:
            self._release_reserve()  # the disk is full: the ballast makes room, once
            try:
                self._delete(drain, keys, tables)
            except sqlite3.Error as exc:
                raise self._error("write", exc) from exc

    def _delete(self, drain: str, keys: list[str], tables: tuple[str, ...]) -> None:
        with self._lock:
            # One transaction (one fsync) for the chunk, not one per entry.
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for table in tables:
                    self._conn.executemany(
                        f"DELETE FROM {table} WHERE drain = ? AND item_key = ?",
                        [(drain, k) for k in keys],
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the -wal file into the main file (the next write then starts the -wal over). The
        entries are durable in the -wal either way: a checkpoint that cannot finish (a reader, a
        full disk) only leaves the -wal longer for now."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            logger.warning("the journal %s could not be checkpointed: %s", self.path, exc)

    def count(self) -> int:
        with self._lock:
            return self._conn.execute(
                "SELECT (SELECT count(*) FROM paid) + (SELECT count(*) FROM failed)"
            ).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_open: dict[Path, Journal] = {}
_open_lock = threading.Lock()


def open_journal() -> Journal | None:
    """This host's journal (one handle per process), or None when switched off (tests only)."""
    if settings.DRAINS_JOURNAL_UNSAFE_OFF:
        return None
    path = journal_path()
    with _open_lock:
        if path not in _open:
            _open[path] = Journal(path)
        return _open[path]
