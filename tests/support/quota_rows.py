"""Quota rows seeded directly, as drains/quota/store.py would have left them: the page, the API,
/metrics, the digest and the admin are tested on known readings, not on a run of calls."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from drains.quota.models import QuotaWindow


def make_window(quota_key: str, window: str, utilization: float, *, resets_at: datetime | None,
                seen_ago: timedelta = timedelta(minutes=2), status: str = "allowed",
                using_overage: bool = False, now: datetime | None = None) -> QuotaWindow:
    now = now or timezone.now()
    return QuotaWindow.objects.create(
        quota_key=quota_key, window=window, utilization=utilization, resets_at=resets_at,
        status=status, using_overage=using_overage, observed_at=now - seen_ago,
        observed_by="halacha",
    )
