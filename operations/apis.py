"""The operations REST API: the snapshot, the burst toggle, the quota policy and the health
check, one view per operation, thin (operations/action_apis.py: a run, the failed items and the
operator's actions; operations/api_base.py: what they all share).

Reads go through ``operations.selectors``; the burst toggle goes through
``drains.bursts.set_drain_burst`` (the one write path, which records the DrainEvent) and shows
its ValidationError messages as they are. Views hold no rules of their own.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, connection
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from drains.bursts import DEFAULT_DEADLINE, set_drain_burst
from drains.quota.controls import set_quota_policy
from drains.quota.reserve import (
    UNSET,
    QuotaPolicyError,
    reserves_from,
    resolve_quota_key,
)
from drains.schema import unapplied_migrations
from operations import selectors
from operations.api_base import (
    COMMON_ERRORS,
    RETRY_AFTER,
    ChangeApi,
    ReadApi,
    ThrottledApiView,
    drain_or_404,
    error_responses,
)
from operations.inputs import BurstInputSerializer, QuotaPolicyInputSerializer
from operations.serializers import (
    BurstResultSerializer,
    HealthSerializer,
    QuotaPolicyResultSerializer,
    SnapshotSerializer,
    as_json,
)

logger = logging.getLogger(__name__)


class OperationsSnapshotApi(ReadApi):
    @extend_schema(
        operation_id="operations_snapshot",
        summary="Every scheduled service: state and reason, runs, burst, backoff, backlog, notes",
        responses={200: SnapshotSerializer, **error_responses(401, 403, *COMMON_ERRORS)},
        parameters=[RETRY_AFTER],
    )
    def get(self, request):
        return Response(as_json(selectors.snapshot()))


class DrainBurstApi(ChangeApi):
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
        drain_or_404(name)
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


class QuotaPolicyApi(ChangeApi):
    """Change a quota key's reserves or autopilot through drains.quota.controls.set_quota_policy
    (the one write path, which validates and records the DrainEvent); its one-line messages are
    the 400's field messages as they are."""

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
