"""The /operations page and its burn-down charts (staff only, server-rendered).

The page renders the snapshot once on the server and then refreshes itself from the same API
(``/api/operations/``) that scripts use; the burst toggle posts to the API too. Nothing here
writes: there is no second control path beside the API and the burst service.
"""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import ensure_csrf_cookie

from drains import registry
from drains.bursts import upcoming_week_boundary
from operations import selectors
from operations.chart import burndown_svg
from operations.errors import error_body
from operations.serializers import as_json

page_access = [
    staff_member_required,
    permission_required("drains.view_draincontrol", raise_exception=True),
]


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
