"""Court decisions and halachot in the Django admin: searchable, with each drain's state of the
decision shown but not edited (the drains framework owns it, drains.Item; a hand-set status would
hide an item from the drain or make it pay twice)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models

from drains import registry
from drains.models import Item
from halacha import gold_entries
from halacha.gold import GoldSetError
from halacha.models import CourtDecision, GoldEntry, Halacha


class HalachaInline(admin.TabularInline):
    model = Halacha
    fields = readonly_fields = ("ordinal", "rule", "quote", "grounding", "quote_spans", "topics",
                                "extractor", "model")
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(CourtDecision)
class CourtDecisionAdmin(admin.ModelAdmin):
    list_display = ["external_id", "title", "court", "decided_on", "language"]
    list_filter = ["language", "court", "decided_on"]
    search_fields = ["external_id", "case_number", "title", "court"]
    readonly_fields = [
        "text_sha256",
        "drain_state",
        "judges",
        "parties",
        "created_at",
        "updated_at",
    ]
    inlines = [HalachaInline]
    actions = ["add_to_gold_set"]
    show_full_result_count = False
    # Court sites are https; say so explicitly (Django 6 makes it the default).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    @admin.action(description="Add to the gold set (its stored halachot as the answer to check)",
                  permissions=["add_gold"])
    def add_to_gold_set(self, request, queryset):
        added, skipped = gold_entries.add_decisions(queryset, actor=request.user.get_username())
        if added:
            self.message_user(request, f"Added to the gold set: {', '.join(added)}. Check each "
                              "rule and span by hand in Gold set decisions before you evaluate.",
                              messages.SUCCESS)
        for line in skipped:
            self.message_user(request, line, messages.WARNING)

    def has_add_gold_permission(self, request) -> bool:
        """The action writes gold set decisions: who may add those may use it."""
        return bool(request.user.has_perm("halacha.add_goldentry"))

    @admin.display(description="drains")
    def drain_state(self, decision: CourtDecision) -> str:
        """Each drain's state of this decision: status, attempts, last error."""
        if decision.pk is None:
            return "—"
        drains = [cls.name for cls in registry.classes() if cls.source.model is CourtDecision]
        rows = Item.objects.filter(ref=decision.pk, drain__in=drains).order_by("drain")
        return "; ".join(
            f"{row.drain}: {row.status}"
            + (f" after {row.attempts} attempt(s), last error: {row.last_error}"
               if row.attempts else "")
            for row in rows) or "—"


@admin.register(Halacha)
class HalachaAdmin(admin.ModelAdmin):
    list_display = ["decision", "ordinal", "short_rule", "extractor", "model", "created_at"]
    list_filter = ["extractor", "model", "decision__court"]
    search_fields = ["rule", "quote", "decision__external_id", "decision__title",
                     "decision__case_number"]
    list_select_related = ["decision"]
    raw_id_fields = ["decision"]
    readonly_fields = ["extractor", "model", "created_at"]
    show_full_result_count = False

    @admin.display(description="rule")
    def short_rule(self, obj: Halacha) -> str:
        return obj.rule if len(obj.rule) <= 120 else obj.rule[:119] + "…"


class GoldEntryForm(forms.ModelForm):
    class Meta:
        model = GoldEntry
        fields = ["external_id", "language", "title", "court", "case_number", "decided_on", "text",
                  "halachot", "notes"]
        help_texts = {"halachot": 'A list of {"rule": ..., "quote": ..., "span": [start, end]}: '
                      "each quote exactly the text's characters start to end."}

    def clean(self):
        cleaned = super().clean() or {}
        if not self.errors:
            try:
                gold_entries.check(cleaned)
            except GoldSetError as exc:
                raise ValidationError(str(exc)) from None
        return cleaned


@admin.register(GoldEntry)
class GoldEntryAdmin(admin.ModelAdmin):
    """Decisions an operator checked by hand and added to the gold set, beside the shipped
    files (halacha/gold/); ``manage.py evaluate`` scores against both."""

    form = GoldEntryForm
    list_display = ["external_id", "language", "title", "added_by", "created_at"]
    list_filter = ["language"]
    search_fields = ["external_id", "title"]
    readonly_fields = ["added_by", "created_at"]
