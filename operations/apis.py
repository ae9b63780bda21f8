"""The operations REST API: one view per operation, thin.

Reads go through ``operations.selectors``; the burst toggle goes through
``drains.bursts.set_drain_burst`` (the one write path, which records the DrainEvent) and shows
its ValidationError messages as they are. Views hold no rules of their own.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, connection
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, AuthenticationFailed, NotFound, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from drains import operator, registry
from drains.bursts import DEFAULT_DEADLINE, set_drain_burst
from drains.controls import set_drain_enabled
from drains.models import DrainRun
from drains.quota.controls import set_quota_policy
from drains.quota.reserve import (
    UNSET,
    QuotaPolicyError,
    reserves_from,
    resolve_quota_key,
)
from drains.retries import retry_failed_items
from drains.schema import unapplied_migrations
from operations import runs as run_reads
from operations import selectors
from operations.authentication import HashedTokenAuthentication
from operations.errors import LimitedJSONParser
from operations.permissions import CanChangeDrains, CanViewDrains
from operations.runs import timeline_filters
from operations.serializers import (
    ActionResultSerializer,
    BurstInputSerializer,
    BurstResultSerializer,
    EmptyInputSerializer,
    EnabledInputSerializer,
    ErrorSerializer,
    FailedListSerializer,
    HealthSerializer,
    QuotaPolicyInputSerializer,
    QuotaPolicyResultSerializer,
    RetryFailedInputSerializer,
    RunDetailSerializer,
    SnapshotSerializer,
    TimelineSerializer,
    as_json,
)
from operations.throttles import (
    PRE_AUTH_THROTTLES,
    AuthFailureThrottle,
    BurstToggleThrottle,
    UserThrottle,
)

logger = logging.getLogger(__name__)

# Token first: an anonymous request then gets 401 with "WWW-Authenticate: Token" (DRF answers
# 403 when the first class is session auth). Session auth enforces CSRF on unsafe methods.
AUTHENTICATION = [HashedTokenAuthentication, SessionAuthentication]


class ThrottledApiView(APIView):
    """An API view whose address throttles run before authentication (operations/throttles.py),
    and whose rejected credentials count against the caller's address."""

    throttle_classes = [UserThrottle]
    pre_auth_throttles = PRE_AUTH_THROTTLES

    def initial(self, request, *args, **kwargs):
        for throttle in (cls() for cls in self.pre_auth_throttles):
            if not throttle.allow_request(request, self):
                self.throttled(request, throttle.wait())
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, AuthenticationFailed):
            AuthFailureThrottle().record_failure(self.request, self)
        return super().handle_exception(exc)

ERROR_DESCRIPTIONS = {
    400: "Bad input: one message per field in error.fields (\"body\" for the body as a whole).",
    401: "Not authenticated, or the token is unknown, revoked or expired.",
    403: "Missing permission (the message names it), or CSRF refused.",
    404: "No drain (or run) of that name.",
    409: "The action cannot apply now (the message says why); nothing was changed.",
    405: "Method not allowed on this path (the Allow header lists the allowed ones).",
    406: "The Accept header asks for something other than JSON.",
    413: "The body is larger than the upload limit.",
    415: "The body is not JSON.",
    429: "Too many requests: wait Retry-After seconds.",
    500: "The server failed; the error is in the server log.",
}
RETRY_AFTER = OpenApiParameter(
    "Retry-After", int, location=OpenApiParameter.HEADER, response=[429],
    description="Seconds to wait before trying again.",
)


def error_responses(*codes: int) -> dict:
    """The documented error answers of an endpoint: every one has the shape of ErrorSerializer."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
            for code in codes}


# Any endpoint can answer these, whatever its input.
COMMON_ERRORS = (405, 406, 429, 500)


class OperationsSnapshotApi(ThrottledApiView):
    authentication_classes = AUTHENTICATION
    permission_classes = [CanViewDrains]

    @extend_schema(
        operation_id="operations_snapshot",
        summary="Every scheduled service: state and reason, runs, burst, backoff, backlog, notes",
        responses={200: SnapshotSerializer, **error_responses(401, 403, *COMMON_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def get(self, request):
        return Response(as_json(selectors.snapshot()))


class DrainBurstApi(ThrottledApiView):
    authentication_classes = AUTHENTICATION
    permission_classes = [CanChangeDrains]
    throttle_classes = [UserThrottle, BurstToggleThrottle]
    parser_classes = [LimitedJSONParser]

    @extend_schema(
        operation_id="drain_burst",
        summary="Start (on, optional until) or stop (off) a drain's burst",
        request=BurstInputSerializer,
        responses={
            200: BurstResultSerializer,
            **error_responses(400, 401, 403, 404, 413, 415, *COMMON_ERRORS),
        },
        parameters=[RETRY_AFTER],
        examples=[
            OpenApiExample("until the upcoming Saturday 18:00", value={"on": True},
                           request_only=True),
            OpenApiExample("until a chosen time", value={"on": True,
                           "until": "2026-12-05T14:00:00+02:00"}, request_only=True),
            OpenApiExample("stop", value={"on": False}, request_only=True),
        ],
    )
    def post(self, request, name: str):
        try:
            registry.get(name)
        except registry.UnknownDrain as exc:
            raise NotFound(str(exc)) from None
        serializer = BurstInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not data["on"]:
            until = None
        elif data.get("until") is None:
            until = DEFAULT_DEADLINE
        else:
            until = data["until"]
        try:
            state = set_drain_burst(name=name, until=until, actor=request.user.get_username())
        except DjangoValidationError as exc:
            raise ValidationError({"until": exc.messages}) from None
        # A disabled drain still takes the burst (it starts when the drain is enabled again);
        # the answer says so, so that nobody waits for a run that cannot start.
        return Response({**as_json(selectors.service_entry(name)), "notice": state.notice,
                         "changed": state.changed})


class QuotaPolicyApi(ThrottledApiView):
    """Change a quota key's reserves or autopilot through drains.quota.controls.set_quota_policy
    (the one write path, which validates and records the DrainEvent); its one-line messages are
    the 400's field messages as they are."""

    authentication_classes = AUTHENTICATION
    permission_classes = [CanChangeDrains]
    throttle_classes = [UserThrottle, BurstToggleThrottle]
    parser_classes = [LimitedJSONParser]
    FIELDS = ("weekly_reserve", "session_reserve", "reserve_release_hours", "autopilot")

    @extend_schema(
        operation_id="quota_policy",
        summary="Change a quota key's weekly or session reserve, the reserve release, or the "
        "autopilot",
        request=QuotaPolicyInputSerializer,
        responses={
            200: QuotaPolicyResultSerializer,
            **error_responses(400, 401, 403, 413, 415, *COMMON_ERRORS),
        },
        parameters=[RETRY_AFTER],
        examples=[
            OpenApiExample("keep 15 % of the week", value={"weekly_reserve": 0.15},
                           request_only=True),
            OpenApiExample("one key of several, autopilot on",
                           value={"quota": "claude-cli:/usr/bin/claude", "autopilot": True},
                           request_only=True),
            OpenApiExample("back to the default release", value={"reserve_release_hours": None},
                           request_only=True),
        ],
    )
    def post(self, request):
        serializer = QuotaPolicyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            key = resolve_quota_key(data.get("quota"))
            policy = set_quota_policy(
                quota_key=key, actor=request.user.get_username(),
                **{name: data.get(name, UNSET) for name in self.FIELDS},
            )
        except QuotaPolicyError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        reserves = reserves_from(policy)
        return Response({
            "quota_key": policy.quota_key,
            "weekly_reserve": reserves.weekly,
            "session_reserve": reserves.session,
            "reserve_release_hours": reserves.release_hours,
            "autopilot": policy.autopilot,
            "defaults": [name for name in self.FIELDS[:3] if getattr(policy, name) is None],
            "updated_by": policy.updated_by,
        })


class HealthApi(ThrottledApiView):
    """For monitors: no authentication, and nothing disclosed beyond ok / the kind of failure.

    Not throttled: the counters live in the database (or Redis), and the probe that reports the
    database down must not need it to answer."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []
    pre_auth_throttles = ()

    @extend_schema(
        operation_id="health",
        summary="Database reachable and schema current",
        auth=[],
        responses={200: HealthSerializer, 503: HealthSerializer,
                   **error_responses(405, 406, 500)},
    )
    def get(self, request):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            pending = unapplied_migrations()
        except DatabaseError:
            # The detail goes to the log for the operator, never to the (anonymous) caller.
            logger.exception("health check: the database is unreachable")
            return Response({"status": "unavailable", "reason": "database unreachable"}, status=503)
        if pending:
            logger.error("health check: %d unapplied migrations", len(pending))
            return Response(
                {"status": "unavailable",
                 "reason": f"schema not current: {len(pending)} unapplied migrations"},
                status=503,
            )
        return Response({"status": "ok"})


# --- a run, the failed items, and the operator's actions ------------------------------------------


class Conflict(APIException):
    """The action cannot apply now (the message says why); nothing was changed."""

    status_code = 409
    default_code = "conflict"


ACTION_ERRORS = error_responses(400, 401, 403, 404, 409, 413, 415, *COMMON_ERRORS)


def _drain_or_404(name: str) -> None:
    try:
        registry.get(name)
    except registry.UnknownDrain as exc:
        raise NotFound(str(exc)) from None


def _valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data if request.data is not None else {})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _done(message: str, *, changed: bool = True, data: dict | None = None) -> Response:
    return Response(as_json({"message": message, "changed": changed, "data": data or {}}))


class RunApi(ThrottledApiView):
    authentication_classes = AUTHENTICATION
    permission_classes = [CanViewDrains]

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


class FailedItemsApi(ThrottledApiView):
    authentication_classes = AUTHENTICATION
    permission_classes = [CanViewDrains]

    @extend_schema(operation_id="failed_items", summary="The items each drain failed for good, "
                   "with attempts, last error and when (at most 200 per drain)",
                   parameters=[OpenApiParameter("drain", str, description="Only this drain.")],
                   responses={200: FailedListSerializer,
                              **error_responses(401, 403, 404, *COMMON_ERRORS)})
    def get(self, request):
        drain = request.query_params.get("drain") or None
        if drain is not None:
            _drain_or_404(drain)
        return Response(as_json(run_reads.failed_items(drain=drain)))


class _ActionApi(ThrottledApiView):
    authentication_classes = AUTHENTICATION
    permission_classes = [CanChangeDrains]
    throttle_classes = [UserThrottle, BurstToggleThrottle]
    parser_classes = [LimitedJSONParser]


class RetryFailedApi(_ActionApi):
    @extend_schema(operation_id="retry_failed", summary="Put failed items (all, or the listed "
                   "ones) back in the backlog with their attempts reset",
                   request=RetryFailedInputSerializer,
                   responses={200: ActionResultSerializer, **ACTION_ERRORS})
    def post(self, request, name: str):
        _drain_or_404(name)
        data = _valid(RetryFailedInputSerializer, request)
        result = retry_failed_items(name=name, item_keys=data.get("items"),
                                    actor=request.user.get_username())
        return _done(result.message, changed=bool(result.keys), data={"items": result.keys})


class EnabledApi(_ActionApi):
    @extend_schema(operation_id="drain_enabled", summary="Enable or disable a drain, with a reason",
                   request=EnabledInputSerializer,
                   responses={200: ActionResultSerializer, **ACTION_ERRORS})
    def post(self, request, name: str):
        _drain_or_404(name)
        data = _valid(EnabledInputSerializer, request)
        changed = set_drain_enabled(name=name, enabled=data["enabled"],
                                    actor=request.user.get_username(),
                                    reason=data.get("reason", ""))
        word = "enabled" if data["enabled"] else "disabled"
        message = f"{name}: {word}" if changed else f"{name}: already {word} (no change)"
        return _done(message, changed=changed, data={"enabled": data["enabled"]})


class RunNowApi(_ActionApi):
    @extend_schema(operation_id="run_now", summary="Start a run now (refused with the reason when "
                   "disabled, backing off, already running, about to start or empty)",
                   request=EmptyInputSerializer,
                   responses={200: ActionResultSerializer, **ACTION_ERRORS})
    def post(self, request, name: str):
        _drain_or_404(name)
        _valid(EmptyInputSerializer, request)
        try:
            done = operator.run_now(name=name, actor=request.user.get_username())
        except operator.Refused as exc:
            raise Conflict(str(exc)) from None
        return _done(done.message, data=done.data)


class RetryNowApi(_ActionApi):
    @extend_schema(operation_id="retry_now", summary="Clear the backoff in force now; the next "
                   "run probes the quota with one call first",
                   request=EmptyInputSerializer,
                   responses={200: ActionResultSerializer, **ACTION_ERRORS})
    def post(self, request, name: str):
        _drain_or_404(name)
        _valid(EmptyInputSerializer, request)
        try:
            done = operator.retry_now(name=name, actor=request.user.get_username())
        except operator.Refused as exc:
            raise Conflict(str(exc)) from None
        return _done(done.message, data=done.data)


class StopRunApi(_ActionApi):
    @extend_schema(operation_id="stop_run", summary="Stop a running run: SIGTERM on this host, "
                   "its lock session ended (the fence) on another",
                   request=EmptyInputSerializer,
                   responses={200: ActionResultSerializer, **ACTION_ERRORS})
    def post(self, request, run_id: int):
        _valid(EmptyInputSerializer, request)
        try:
            done = operator.stop_run(run_id=run_id, actor=request.user.get_username())
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        except operator.Refused as exc:
            raise Conflict(str(exc)) from None
        return _done(done.message, data=done.data)


class TimelineApi(ThrottledApiView):
    authentication_classes = AUTHENTICATION
    permission_classes = [CanViewDrains]

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
        except ValueError as exc:
            raise ValidationError({"before": [str(exc)]}) from None
        return Response(as_json(run_reads.timeline(**filters)))
