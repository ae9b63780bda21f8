"""The drains in the Django admin: bursts and settings steered through the services, runs,
events, staged results and items' state for inspection only.

The admin never writes ``burst_until`` itself: the form validates with the burst service's own
rule (``validate_burst_until``) and saving calls ``set_drain_burst`` (which records the event),
exactly as the API, the page and ``manage.py burst`` do. Runs, events and staged results belong
to the runtime and the supervisor, so they are read-only here.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from drains import bursts, controls, registry, rules
from drains.clock import format_local
from drains.models import DrainControl, DrainEvent, DrainRun, Item, StagedResult


class DrainControlForm(forms.ModelForm):
    class Meta:
        model = DrainControl
        fields = ["name", "burst_until"]
        help_texts = {
            "burst_until": "Asia/Jerusalem time. Empty = no burst. It must be in the future and "
            "no later than the upcoming Saturday 18:00 (the weekly quota reset).",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "name" in self.fields:
            taken = set(DrainControl.objects.values_list("name", flat=True))
            free = [name for name in registry.names() if name not in taken]
            self.fields["name"] = forms.ChoiceField(
                choices=[(name, name) for name in free],
                help_text="A registered drain that has no control row yet.",
            )

    def clean_burst_until(self):
        value = self.cleaned_data.get("burst_until")
        # Only a changed deadline is checked: an expired one left in the row (the supervisor
        # clears it) must not block editing the other fields.
        if value is not None and "burst_until" in self.changed_data:
            try:
                bursts.validate_burst_until(value)
            except ValidationError as exc:
                raise forms.ValidationError(exc.messages) from None
        return value


@admin.register(DrainControl)
class DrainControlAdmin(admin.ModelAdmin):
    form = DrainControlForm
    list_display = [
        "name", "enabled", "burst", "backoff_until", "backoff_kind", "updated_by", "updated_at"
    ]
    list_filter = ["enabled"]
    search_fields = ["name"]
    readonly_fields = [
        "burst",
        # Switched only through drains.controls (the enable/disable actions), never edited here.
        "enabled",
        "hung_after_seconds",
        "quota_key",
        "backoff_until",
        "backoff_reason",
        "backoff_kind",
        "backoff_model",
        "backoff_observed_at",
        "backoff_from_run",
        "updated_by",
        "updated_at",
    ]
    actions = ["start_burst_until_week_boundary", "stop_burst", "enable_drains", "disable_drains"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return ["name", *fields] if obj is not None else fields

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "burst_until"]
        return ["name", "burst_until", *self.readonly_fields]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is not None:
            kwargs["fields"] = ["burst_until"]
        return super().get_form(request, obj, change=change, **kwargs)

    def has_delete_permission(self, request, obj=None):
        return False  # a drain's row is its control state and audit anchor: never deleted here

    @admin.display(description="burst")
    def burst(self, obj: DrainControl) -> str:
        if obj.burst_until is None:
            return "off"
        if rules.burst_active(obj.burst_until, now=timezone.now()):
            return f"on until {format_local(obj.burst_until)}"
        return f"over (deadline {format_local(obj.burst_until)} passed)"

    def save_model(self, request, obj, form, change):
        actor = request.user.get_username()
        name = obj.name if change else form.cleaned_data["name"]
        control = bursts.ensure_control(name=name)
        if "burst_until" in form.changed_data:
            try:
                bursts.set_drain_burst(name=name, until=form.cleaned_data["burst_until"], actor=actor)
            except ValidationError as exc:  # time moved on between the form check and now
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
        obj.pk = control.pk  # the admin logs and redirects to the row the services wrote
        obj.refresh_from_db()

    def _toggle(self, request, queryset, until):
        actor = request.user.get_username()
        for control in queryset:
            try:
                state = bursts.set_drain_burst(name=control.name, until=until, actor=actor)
            except (registry.UnknownDrain, ValidationError) as exc:
                text = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                self.message_user(request, f"{control.name}: {text}", messages.ERROR)
                continue
            if state.active and state.burst_until is not None:  # an active burst has a deadline
                text = f"{control.name}: burst on until {format_local(state.burst_until)}"
            elif not state.changed:
                text = f"{control.name}: {state.notice} (no change)"
            else:
                text = f"{control.name}: burst stopped"
            self.message_user(request, text, messages.SUCCESS)

    @admin.action(
        description="Start burst until the upcoming Saturday 18:00", permissions=["change"]
    )
    def start_burst_until_week_boundary(self, request, queryset):
        self._toggle(request, queryset, bursts.DEFAULT_DEADLINE)

    @admin.action(description="Stop burst", permissions=["change"])
    def stop_burst(self, request, queryset):
        self._toggle(request, queryset, None)


    def _switch(self, request, queryset, enabled: bool):
        actor = request.user.get_username()
        for control in queryset:
            try:
                changed = controls.set_drain_enabled(name=control.name, enabled=enabled, actor=actor)
            except registry.UnknownDrain as exc:
                self.message_user(request, f"{control.name}: {exc}", messages.ERROR)
                continue
            word = "enabled" if enabled else "disabled"
            self.message_user(
                request,
                f"{control.name}: {word}" + ("" if changed else " already"),
                messages.SUCCESS,
            )

    @admin.action(description="Enable drain", permissions=["change"])
    def enable_drains(self, request, queryset):
        self._switch(request, queryset, True)

    @admin.action(description="Disable drain (no run starts, bursts included)", permissions=["change"])
    def disable_drains(self, request, queryset):
        self._switch(request, queryset, False)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DrainRun)
class DrainRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "drain",
        "status",
        "trigger",
        "mode",
        "host",
        "pid",
        "started_at",
        "last_checkpoint_at",
        "finished_at",
        "items_done",
        "items_failed",
        "models_used",
        "page",
    ]
    list_filter = ["drain", "status", "error_kind", "trigger", "mode", "started_at"]
    search_fields = ["drain", "host", "error"]
    show_full_result_count = False  # no COUNT(*) over every run ever on each page

    @admin.display(description="page")
    def page(self, run: DrainRun) -> str:
        """The run's page on /operations (its error, traceback, events, items and log)."""
        return format_html('<a href="{}">run {}</a>', reverse("operations:run", args=[run.pk]),
                           run.pk)

    @admin.display(description="models")
    def models_used(self, run: DrainRun) -> str:
        """The models the run's calls used (its model_usage has their calls, tokens and cost)."""
        return ", ".join(sorted(run.model_usage or {})) or "—"


@admin.register(DrainEvent)
class DrainEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "drain", "kind", "actor", "message", "run"]
    list_filter = ["drain", "kind", "actor", "at"]
    search_fields = ["message", "actor", "drain"]
    list_select_related = ["run"]
    show_full_result_count = False


@admin.register(StagedResult)
class StagedResultAdmin(ReadOnlyAdmin):
    list_display = ["id", "drain", "item_key", "run", "created_at", "promote_attempts",
                    "promote_error"]
    list_filter = ["drain"]
    search_fields = ["item_key", "promote_error"]


@admin.register(Item)
class ItemAdmin(ReadOnlyAdmin):
    """Each drain's state of each of its items. Read-only: a hand-set status would hide an item
    from its drain or make it pay twice; failed items are retried from the operations page, the
    API or ``manage.py`` (audited)."""

    list_display = ["drain", "ref", "status", "attempts", "short_error", "arrived_at", "done_at",
                    "updated_at"]
    list_filter = ["drain", "status"]
    search_fields = ["=ref", "last_error"]
    show_full_result_count = False

    @admin.display(description="last error")
    def short_error(self, item: Item) -> str:
        error = item.last_error
        return error if len(error) <= 120 else error[:119] + "…"
