"""The quota's rows: the latest reading of each window, a bounded history, and the operator's
policy per quota key. Imported by drains/models.py so Django finds them in the ``drains`` app.

Written only through drains/quota/store.py (readings) and the quota policy service.
"""

from __future__ import annotations

from django.db import models


class WindowStatus(models.TextChoices):
    ALLOWED = "allowed", "allowed"
    WARNING = "allowed_warning", "allowed (warning)"
    REJECTED = "rejected", "rejected"
    UNKNOWN = "", "not said"


class QuotaWindow(models.Model):
    """The latest reading of one window of one quota key: one row each, updated in place."""

    quota_key = models.CharField(max_length=200)
    window = models.CharField(max_length=40, help_text="five_hour, seven_day, seven_day_opus, ...")
    utilization = models.FloatField(help_text="Fraction 0..1 of the window used.")
    resets_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=WindowStatus.choices, blank=True, default="")
    using_overage = models.BooleanField(default=False)
    observed_at = models.DateTimeField()
    observed_by = models.CharField(max_length=64, blank=True, default="")

    # Not columns: set by drains.quota.store.quota_state on the unsaved copies it reads — the
    # mean step one call of the drains moved this window, over ``step_pairs`` pairs of readings
    # (None: nothing measured), for the ceiling's one-call headroom (quota/ceiling.py).
    step: float | None = None
    step_pairs: int = 0

    class Meta:
        ordering = ["quota_key", "window"]
        constraints = [
            models.UniqueConstraint(fields=["quota_key", "window"], name="quota_window_once"),
        ]

    def __str__(self) -> str:
        return f"{self.quota_key} {self.window} {self.utilization:.0%}"


class QuotaSample(models.Model):
    """One reading kept for the spend rate; pruned after a few weeks."""

    quota_key = models.CharField(max_length=200)
    window = models.CharField(max_length=40)
    utilization = models.FloatField()
    resets_at = models.DateTimeField(null=True, blank=True)
    observed_at = models.DateTimeField()
    drain = models.CharField(max_length=64, blank=True, default="")
    run = models.ForeignKey(
        "drains.DrainRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["observed_at"]
        indexes = [
            models.Index(fields=["quota_key", "window", "observed_at"], name="quota_sample_by_time"),
        ]

    def __str__(self) -> str:
        return f"{self.quota_key} {self.window} {self.utilization:.0%} at {self.observed_at}"


class QuotaPolicy(models.Model):
    """The operator's choices for one quota key; an empty value means the setting's default."""

    quota_key = models.CharField(max_length=200, unique=True)
    weekly_reserve = models.FloatField(
        null=True, blank=True, help_text="0..0.9; empty: DRAINS_QUOTA_WEEKLY_RESERVE."
    )
    session_reserve = models.FloatField(
        null=True, blank=True, help_text="0..0.9; empty: DRAINS_QUOTA_SESSION_RESERVE."
    )
    reserve_release_hours = models.FloatField(
        null=True, blank=True,
        help_text="Release the weekly reserve over the last hours before the reset; 0 = never.",
    )
    autopilot = models.BooleanField(default=False)
    autopilot_held_until = models.DateTimeField(
        null=True, blank=True,
        help_text="An operator stopped an autopilot burst: no new one before this (the weekly reset).",
    )
    updated_by = models.CharField(max_length=150, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["quota_key"]
        verbose_name_plural = "quota policies"

    def __str__(self) -> str:
        return self.quota_key
