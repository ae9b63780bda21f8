"""The /operations page and its burn-down charts (staff only, server-rendered).

The page renders the snapshot once on the server and then refreshes itself from the same API
(``/api/operations/``) that scripts use; the burst toggle posts to the API too. Nothing here
writes: there is no second control path beside the API and the burst service.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import ensure_csrf_cookie

from drains import registry
from drains.bursts import MSG_DISABLED_BURST, upcoming_week_boundary
from operations import selectors
from operations.chart import burndown_svg
from operations.errors import error_body
from operations.serializers import as_json

VIEW_PERMISSION = "drains.view_draincontrol"


def require_view_permission(view):
    """A 403 that names the missing permission and who can grant it (not a bare "Forbidden")."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.has_perm(VIEW_PERMISSION):
            raise PermissionDenied(
                f"{request.user.get_username()} lacks the permission {VIEW_PERMISSION} "
                "(\"Can view drain control\"). An administrator can grant it in the admin: "
                "Users → this user → User permissions, or through a group."
            )
        return view(request, *args, **kwargs)

    return wrapped


page_access = [staff_member_required, require_view_permission]


@method_decorator(page_access, name="dispatch")
@method_decorator(ensure_csrf_cookie, name="dispatch")
class OperationsPage(View):
    def get(self, request):
        snapshot = selectors.snapshot()
        return render(
            request,
            "operations/page.html",
            {
                "snapshot": snapshot,
                # The same JSON the API answers, for the script's first render.
                "snapshot_data": as_json(snapshot),
                "can_change": request.user.has_perm("drains.change_draincontrol"),
                "disabled_burst_notice": MSG_DISABLED_BURST,
                # The picker's 24-hour clock: the page and the picker read times the same way.
                "hours": [f"{h:02d}" for h in range(24)],
                "minutes": [f"{m:02d}" for m in range(60)],
            },
        )


@method_decorator(page_access, name="dispatch")
class BurndownChart(View):
    def get(self, request, name: str):
        try:
            chart = selectors.drain_chart(name)
        except registry.UnknownDrain as exc:
            return JsonResponse(error_body(404, str(exc)), status=404)
        now = chart.history[-1][0]
        svg = burndown_svg(
            history=chart.history,
            projection=chart.projection,
            now=now,
            week_reset=upcoming_week_boundary(now),
            title=f"{name} backlog: {chart.projection.text}",
        )
        response = HttpResponse(svg, content_type="image/svg+xml")
        response["Cache-Control"] = "no-store"
        return response
