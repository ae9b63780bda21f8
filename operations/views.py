"""The /operations page and its burn-down charts (staff only, server-rendered).

The page renders the snapshot once on the server and then refreshes itself from the same API
(``/api/operations/``) that scripts use; the burst toggle posts to the API too. Nothing here
writes: there is no second control path beside the API and the burst service.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import ensure_csrf_cookie

from drains import registry
from drains.bursts import MSG_DISABLED_BURST, MSG_NO_BURST, upcoming_week_boundary
from drains.clock import zone_abbreviations
from drains.models import DrainEvent, DrainRun, EventKind
from operations import runs as run_reads
from operations import selectors
from operations.chart import burndown_svg
from operations.errors import error_body
from operations.permissions import CHANGE_PERMISSION, lacks_change_permission
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


_ViewDecorator = Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]
page_access: list[_ViewDecorator] = [staff_member_required, require_view_permission]


@method_decorator(page_access, name="dispatch")
@method_decorator(ensure_csrf_cookie, name="dispatch")
class OperationsPage(View):
    def get(self, request):
        snapshot = selectors.snapshot()
        can_change = request.user.has_perm(CHANGE_PERMISSION)
        supervisor_next = next((s["next_fire_at"] for s in snapshot["services"]
                                if s["kind"] == "supervisor"), None)
        for s in snapshot["services"]:
            if s["kind"] == "drain":
                s["failed_url"] = f"{reverse('operations:failed')}?drain={s['name']}"
        return render(
            request,
            "operations/page.html",
            {
                "snapshot": snapshot,
                # The same JSON the API answers, for the script's first render.
                "snapshot_data": as_json(snapshot),
                "can_change": can_change,
                "why_not": {
                    "burst": lacks_change_permission("Starting or stopping a burst"),
                    "action": lacks_change_permission("This action"),
                },
                "no_burst_to_stop": MSG_NO_BURST,
                "supervisor_next": supervisor_next,
                "operator_zone": settings.DRAINS_OPERATOR_TZ,
                # The page's script names the zone as Python does (IST/IDT, not "GMT+2").
                "zone_abbreviations": json.dumps(zone_abbreviations()),
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


def _action_context(request) -> dict:
    can_change = request.user.has_perm(CHANGE_PERMISSION)
    return {
        "can_change": can_change,
        "why_not_change": "" if can_change else lacks_change_permission("This action"),
        "operator_zone": settings.DRAINS_OPERATOR_TZ,
    }


@method_decorator(page_access, name="dispatch")
@method_decorator(ensure_csrf_cookie, name="dispatch")
class RunPage(View):
    """One run: everything its row holds, its error (the traceback: staff, which every user of
    the page is), events, items and the end of its log; Stop while it runs."""

    def get(self, request, run_id: int):
        try:
            run = run_reads.run_detail(run_id, staff=request.user.is_staff)
        except DrainRun.DoesNotExist:
            raise Http404(f"No run {run_id}.") from None
        return render(request, "operations/run.html", {"run": run, **_action_context(request)})


@method_decorator(page_access, name="dispatch")
@method_decorator(ensure_csrf_cookie, name="dispatch")
class FailedPage(View):
    """The items each drain failed for good, with attempts, last error and when; retry one or
    all (through the API, as the buttons of the main page)."""

    def get(self, request):
        drain = request.GET.get("drain") or None
        if drain is not None and drain not in registry.names():
            raise Http404(f"No drain {drain!r}.")
        return render(request, "operations/failed.html",
                      {"failed": run_reads.failed_items(drain=drain), "only": drain,
                       **_action_context(request)})


@method_decorator(page_access, name="dispatch")
class TimelinePage(View):
    """Every event, newest first, 50 a page, filtered by drain and kind."""

    def get(self, request):
        try:
            filters = run_reads.timeline_filters(request.GET)
        except ValueError as exc:
            return render(request, "operations/timeline.html",
                          {"error": str(exc), "page": {"events": []}, "filters": {},
                           "drains": registry.names(), "kinds": EventKind.choices,
                           "operator_zone": settings.DRAINS_OPERATOR_TZ}, status=400)
        page = run_reads.timeline(**filters)
        older = None
        if page["next_before"]:
            query = request.GET.copy()
            query["before"] = str(page["next_before"])
            older = f"{reverse('operations:timeline')}?{query.urlencode()}"
        return render(request, "operations/timeline.html", {
            "page": page, "filters": filters, "older": older, "drains": registry.names(),
            "kinds": EventKind.choices, "clip": run_reads.MESSAGE_CLIP,
            "operator_zone": settings.DRAINS_OPERATOR_TZ})


@method_decorator(page_access, name="dispatch")
class EventPage(View):
    """One event whole: its message unclipped, its actor, data and run."""

    def get(self, request, event_id: int):
        try:
            event = run_reads.event_detail(event_id)
        except DrainEvent.DoesNotExist:
            raise Http404(f"No event {event_id}.") from None
        return render(request, "operations/event.html",
                      {"event": event, "data": json.dumps(event["data"], indent=2,
                                                          ensure_ascii=False, default=str),
                       "operator_zone": settings.DRAINS_OPERATOR_TZ})
