"""The quota's readings: the only code that writes ``QuotaWindow`` and ``QuotaSample``.

``record_signal`` runs on the hot path, after every call: ONE SQL statement (a CTE that upserts
the window rows, sets the overage flag on the key's other rows and inserts the samples), nothing
for an empty signal. A drop in a window's utilization is a reset: the new reading is simply kept.
A reading older than the row's (calls finishing out of order) does not overwrite it.
``latest_windows`` is the read the ceiling and the command use; ``prune_samples`` keeps the
history bounded (the supervisor tick calls it). Never calls an extractor.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from drains.quota.models import QuotaSample, QuotaWindow
from drains.quota.signals import QuotaSignal

_WINDOW = QuotaWindow._meta.db_table
_SAMPLE = QuotaSample._meta.db_table

# One statement: the readings as VALUES, the upsert of the rows (kept only when at least as fresh
# as what is stored; a missing reset keeps a stored one that is still ahead), the overage flag
# on the key's rows the signal did not name (overage is the quota's, not one window's), and the
# samples for the spend rate.
_RECORD = f"""
WITH data("window", utilization, resets_at, status) AS (VALUES {{values}}),
upserted AS (
    INSERT INTO {_WINDOW} AS w
        (quota_key, "window", utilization, resets_at, status, using_overage, observed_at,
         observed_by)
    SELECT %s, d."window", d.utilization, d.resets_at, d.status, %s, %s, %s FROM data d
    ON CONFLICT (quota_key, "window") DO UPDATE SET
        utilization = EXCLUDED.utilization,
        resets_at = COALESCE(
            EXCLUDED.resets_at,
            CASE WHEN w.resets_at > EXCLUDED.observed_at THEN w.resets_at END
        ),
        status = EXCLUDED.status,
        using_overage = EXCLUDED.using_overage,
        observed_at = EXCLUDED.observed_at,
        observed_by = EXCLUDED.observed_by
    WHERE w.observed_at <= EXCLUDED.observed_at
    RETURNING 1
),
others AS (
    UPDATE {_WINDOW} SET using_overage = %s
    WHERE quota_key = %s AND "window" NOT IN (SELECT "window" FROM data)
      AND using_overage <> %s
    RETURNING 1
)
INSERT INTO {_SAMPLE} (quota_key, "window", utilization, resets_at, observed_at, drain, run_id)
SELECT %s, d."window", d.utilization, d.resets_at, %s, %s, %s FROM data d
"""

# A signal that only says "extra usage is being spent" (no window): the flag on the key's rows.
_OVERAGE_ONLY = f"UPDATE {_WINDOW} SET using_overage = true WHERE quota_key = %s"


def record_signal(
    *, quota_key: str, drain: str, run_id: int | None, signal: QuotaSignal, now: datetime
) -> None:
    """Store what one call said of its quota: at most one statement, none for an empty signal."""
    if not signal or not quota_key:
        return
    with connection.cursor() as cursor:
        if not signal.windows:
            cursor.execute(_OVERAGE_ONLY, [quota_key])
            return
        values = ", ".join(["(%s, %s::float8, %s::timestamptz, %s)"] * len(signal.windows))
        params: list = []
        for reading in signal.windows:
            params += [reading.window, reading.utilization, reading.resets_at, reading.status]
        overage = signal.using_overage
        params += [quota_key, overage, now, drain[:64]]
        params += [overage, quota_key, overage]
        params += [quota_key, now, drain[:64], run_id]
        cursor.execute(_RECORD.format(values=values), params)


def latest_windows(quota_key: str | None = None) -> list[QuotaWindow]:
    """The latest reading of every window (of one quota key, or of all), by key and window."""
    rows = QuotaWindow.objects.all()
    if quota_key is not None:
        rows = rows.filter(quota_key=quota_key)
    return list(rows.order_by("quota_key", "window"))


def known_quota_keys() -> list[str]:
    """Every quota key a drain recorded at a run start, a reading or a policy row names, sorted
    (three small queries)."""
    from drains.models import DrainControl
    from drains.quota.models import QuotaPolicy

    keys = set(DrainControl.objects.exclude(quota_key="").values_list("quota_key", flat=True))
    keys |= set(QuotaWindow.objects.values_list("quota_key", flat=True))
    keys |= set(QuotaPolicy.objects.values_list("quota_key", flat=True))
    return sorted(keys)


def prune_samples(*, now: datetime, keep_days: int | None = None) -> int:
    """Delete the samples older than ``keep_days`` (DRAINS_QUOTA_SAMPLE_DAYS); how many went."""
    days = settings.DRAINS_QUOTA_SAMPLE_DAYS if keep_days is None else keep_days
    deleted, _ = QuotaSample.objects.filter(observed_at__lt=now - timedelta(days=days)).delete()
    return deleted
