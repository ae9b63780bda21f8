"""A tiny test-only app whose migrations let the schema-gate tests stop a migrator mid-way.

Installed only by tests/support/gate_settings.py, in child processes. Migration 0002 waits for
the test's *latch* (an advisory lock the test holds), so a real migrator can be held inside a
migration — holding the schema lock — for as long as a test needs. 0003 is an ALTER TABLE that
a test's open transaction can block.
"""

#: pg_advisory_xact_lock(LATCH_NAMESPACE, LATCH_KEY) is what migration 0002 waits for.
LATCH_NAMESPACE = 0x47415445  # ASCII "GATE"
LATCH_KEY = 1
