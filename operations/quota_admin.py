"""The quota in the Django admin (imported by operations/admin.py; listed under "Drains").

``QuotaWindow`` and ``QuotaSample`` are the calls' readings: read-only here, written only by
drains/quota/store.py. ``QuotaPolicy`` (the reserves, the release hours, the autopilot) is changed
only through the quota policy service (``drains.quota.controls.set_quota_policy``), which
validates, writes and records the audit event, exactly as ``manage.py quota set`` and the REST API
do; the admin never saves the row itself. The lists show what the page shows (the same words,
from drains/quota/wording.py).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.utils import timezone

from drains.admin import ReadOnlyAdmin
from drains.quota import controls, reserve
from drains.quota.models import QuotaPolicy, QuotaSample, QuotaWindow
from drains.quota.wording import forecast_text, window_text
from drains.selectors.quota import quota_entries

POLICY_FIELDS = ("weekly_reserve", "session_reserve", "reserve_release_hours", "autopilot")


@admin.register(QuotaWindow)
class QuotaWindowAdmin(ReadOnlyAdmin):
    list_display = ["quota_key", "window", "reading", "status", "using_overage", "observed_at",
                    "observed_by"]
    list_filter = ["quota_key"]

    def changelist_view(self, request, extra_context=None):
        # One read of every key's entries for the whole list (the rows' "reading" column).
        now = timezone.now()
        self._texts = {(q.key, w.window): window_text(w, now)
                       for q in quota_entries(now=now) for w in q.windows}
        return super().changelist_view(request, extra_context)

    @admin.display(description="reading (as /operations shows it)")
    def reading(self, obj: QuotaWindow) -> str:
        return getattr(self, "_texts", {}).get((obj.quota_key, obj.window), str(obj))


@admin.register(QuotaSample)
class QuotaSampleAdmin(ReadOnlyAdmin):
    list_display = ["quota_key", "window", "utilization", "resets_at", "observed_at", "drain", "run"]
    list_filter = ["quota_key", "window"]
    date_hierarchy = "observed_at"


class QuotaPolicyForm(forms.ModelForm):
    class Meta:
        model = QuotaPolicy
        fields = ["quota_key", *POLICY_FIELDS]


@admin.register(QuotaPolicy)
class QuotaPolicyAdmin(admin.ModelAdmin):
    form = QuotaPolicyForm
    list_display = ["quota_key", "weekly_reserve", "session_reserve", "reserve_release_hours",
                    "autopilot", "autopilot_held_until", "now", "updated_by", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        held = ["autopilot_held_until", "updated_by", "updated_at"]
        return ["quota_key", *held] if obj is not None else held

    def has_delete_permission(self, request, obj=None):
        return False  # an empty value already means the default; the audit trail stays whole

    def changelist_view(self, request, extra_context=None):
        now = timezone.now()
        self._lines = {q.key: forecast_text(q, now) for q in quota_entries(now=now)}
        return super().changelist_view(request, extra_context)

    @admin.display(description="now (as /operations shows it)")
    def now(self, obj: QuotaPolicy) -> str:
        return getattr(self, "_lines", {}).get(obj.quota_key, "")

    def save_model(self, request, obj, form, change):
        key = obj.quota_key if change else form.cleaned_data["quota_key"]
        changes = {f: form.cleaned_data[f] for f in POLICY_FIELDS
                   if f in form.changed_data or not change}
        try:
            controls.set_quota_policy(quota_key=key, actor=request.user.get_username(), **changes)
        except reserve.QuotaPolicyError as exc:  # the service's one line; nothing was written
            self.message_user(request, str(exc), messages.ERROR)
            request.quota_policy_refused = True
            return
        saved = QuotaPolicy.objects.get(quota_key=key)
        obj.pk = saved.pk  # the admin logs and redirects to the row the service wrote
        obj.refresh_from_db()

    # A refusal goes back to the form with the service's message: no "changed successfully", no
    # log entry for a change that did not happen.
    def log_addition(self, request, obj, message):
        if not getattr(request, "quota_policy_refused", False):
            return super().log_addition(request, obj, message)
        return None

    def log_change(self, request, obj, message):
        if not getattr(request, "quota_policy_refused", False):
            return super().log_change(request, obj, message)
        return None

    def response_add(self, request, obj, post_url_continue=None):
        if getattr(request, "quota_policy_refused", False):
            return HttpResponseRedirect(request.path)
        return super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        if getattr(request, "quota_policy_refused", False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)
