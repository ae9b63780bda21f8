"""The schema gate's errors: each a ``CommandError`` whose message says what to do next."""

from __future__ import annotations

from django.core.management.base import CommandError


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
