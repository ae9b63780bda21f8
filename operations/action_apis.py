"""The operations REST API for a run, the failed items and the operator's actions (run now,
retry now, stop a run, enable or disable, retry failed items), one view per action, thin: each
calls its service in drains/ (operator, controls, retries) and answers what it says."""

from __future__ import annotations

from collections.abc import Callable

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from drains import operator
from drains.controls import set_drain_enabled
from drains.models import DrainRun
from drains.retries import retry_failed_items
from operations import runs as run_reads
from operations.api_base import (
    COMMON_ERRORS,
    ChangeApi,
    Conflict,
    ReadApi,
    action_done,
    drain_or_404,
    error_responses,
    valid_input,
)
from operations.inputs import (
    EmptyInputSerializer,
    EnabledInputSerializer,
    RetryFailedInputSerializer,
)
from operations.runs import FilterError, timeline_filters
from operations.serializers import (
    ActionResultSerializer,
    FailedListSerializer,
    RunDetailSerializer,
    TimelineSerializer,
    as_json,
)

ACTION_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 415, *COMMON_ERRORS)


def _operator_action(action: Callable[..., operator.Done], request, **target) -> Response:
    """One of drains/operator.py's actions for the request's user: its answer, or 409 with the
    reason it was refused."""
    try:
        done = action(actor=request.user.get_username(), **target)
    except operator.Refused as exc:
        raise Conflict(str(exc)) from None
    return action_done(done.message, data=done.data)


class RunApi(ReadApi):
    @extend_schema(operation_id="run", summary="One run: its counts, usage, error, events, items "
                   "and the end of its log (the traceback for staff only)",
                   responses={200: RunDetailSerializer,
                              **error_responses(401, 403, 404, *COMMON_ERRORS)})
    def get(self, request, run_id: int):
        try:
            detail = run_reads.run_detail(run_id, staff=request.user.is_staff)
        except DrainRun.DoesNotExist:
            raise NotFound(f"No run {run_id}.") from None
        return Response(as_json(detail))


class FailedItemsApi(ReadApi):
    @extend_schema(operation_id="failed_items", summary="The items each drain failed for good, "
                   "with attempts, last error and when (at most 200 per drain)",
                   parameters=[OpenApiParameter("drain", str, description="Only this drain.")],
                   responses={200: FailedListSerializer,
                              **error_responses(401, 403, 404, *COMMON_ERRORS)})
    def get(self, request):
        drain = request.query_params.get("drain") or None
        if drain is not None:
            drain_or_404(drain)
        return Response(as_json(run_reads.failed_items(drain=drain)))


class RetryFailedApi(ChangeApi):
    @extend_schema(operation_id="retry_failed", summary="Put failed items (all, or the listed "
                   "ones) back in the backlog with their attempts reset",
                   request=RetryFailedInputSerializer,
                   responses={200: ActionResultSerializer, **ACTION_ERRORS})
    def post(self, request, name: str):
        drain_or_404(name)
        data = valid_input(RetryFailedInputSerializer, request)
        result = retry_failed_items(name=name, item_keys=data.get("items"),
                                    actor=request.user.get_username())
        return action_done(result.message, changed=bool(result.keys), data={"items": result.keys})


class EnabledApi(ChangeApi):
    @extend_schema(operation_id="drain_enabled", summary="Enable or disable a drain, with a reason",
                   request=EnabledInputSerializer,
                   responses={200: ActionResultSerializer, **ACTION_ERRORS})
    def post(self, request, name: str):
        drain_or_404(name)
        data = valid_input(EnabledInputSerializer, request)
        changed = set_drain_enabled(name=name, enabled=data["enabled"],
                                    actor=request.user.get_username(),
                                    reason=data.get("reason", ""))
        word = "enabled" if data["enabled"] else "disabled"
        message = f"{name}: {word}" if changed else f"{name}: already {word} (no change)"
        return action_done(message, changed=changed, data={"enabled": data["enabled"]})


def _no_body_action(operation_id: str, summary: str):
    """The schema of an action whose path says everything (an empty JSON body)."""
    return extend_schema(operation_id=operation_id, summary=summary,
                         request=EmptyInputSerializer,
                         responses={200: ActionResultSerializer, **ACTION_ERRORS})


def _drain_action(action: Callable[..., operator.Done], request, name: str) -> Response:
    drain_or_404(name)
    valid_input(EmptyInputSerializer, request)
    return _operator_action(action, request, name=name)


class RunNowApi(ChangeApi):
    @_no_body_action("run_now", "Start a run now (refused with the reason when disabled, "
                     "backing off, already running, about to start or empty)")
    def post(self, request, name: str):
        return _drain_action(operator.run_now, request, name)


class RetryNowApi(ChangeApi):
    @_no_body_action("retry_now", "Clear the backoff in force now; the next run probes the "
                     "quota with one call first")
    def post(self, request, name: str):
        return _drain_action(operator.retry_now, request, name)


class StopRunApi(ChangeApi):
    @_no_body_action("stop_run", "Stop a running run: SIGTERM on this host, its lock session "
                     "ended (the fence) on another")
    def post(self, request, run_id: int):
        valid_input(EmptyInputSerializer, request)
        try:
            return _operator_action(operator.stop_run, request, run_id=run_id)
        except LookupError as exc:
            raise NotFound(str(exc)) from None


class TimelineApi(ReadApi):
    @extend_schema(operation_id="timeline", summary="Events newest first, 50 at a time, "
                   "filtered by drain and kind",
                   parameters=[OpenApiParameter("drain", str, description="Only this drain."),
                               OpenApiParameter("kind", str, description="Only this kind."),
                               OpenApiParameter("before", int, description="Events older than "
                                                "this one (the previous page's next_before).")],
                   responses={200: TimelineSerializer,
                              **error_responses(400, 401, 403, *COMMON_ERRORS)})
    def get(self, request):
        try:
            filters = timeline_filters(request.query_params)
        except FilterError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        return Response(as_json(run_reads.timeline(**filters)))
