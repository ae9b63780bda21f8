"""API tokens in the admin: listed and revoked (deleted); minted only by `manage.py mint_token`,
which can show the token once (the admin could not show it again). The quota's rows are
registered by operations/quota_admin.py (imported below): they are shown in the page's words,
which live here in operations, and drains never imports operations."""

from __future__ import annotations

from django.contrib import admin

from operations import quota_admin  # noqa: F401  (registers the quota's admin on import)
from operations.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["token_key", "user", "name", "created", "expiry"]
    list_filter = ["user"]
    search_fields = ["name", "user__username", "token_key"]
    readonly_fields = ("token_key", "user", "name", "created", "expiry")
    fields = readonly_fields
    actions = ["delete_selected"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
