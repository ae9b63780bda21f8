"""What every operations API view shares: authentication, the throttles before it, the
documented error answers, and the small steps of a view (the drain or 404, the valid input, the
one answer of an action)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, AuthenticationFailed, NotFound
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from drains import registry
from operations.authentication import HashedTokenAuthentication
from operations.errors import LimitedJSONParser
from operations.permissions import CanChangeDrains, CanViewDrains
from operations.serializers import ErrorSerializer, as_json
from operations.throttles import (
    PRE_AUTH_THROTTLES,
    AuthFailureThrottle,
    BurstToggleThrottle,
    UserThrottle,
)

# Token first: an anonymous request then gets 401 with "WWW-Authenticate: Token" (DRF answers
# 403 when the first class is session auth). Session auth enforces CSRF on unsafe methods.
AUTHENTICATION = [HashedTokenAuthentication, SessionAuthentication]


class ThrottledApiView(APIView):
    """An API view whose address throttles run before authentication (operations/throttles.py),
    and whose rejected credentials count against the caller's address."""

    throttle_classes: list[type[BaseThrottle]] = [UserThrottle]
    pre_auth_throttles: tuple[type[BaseThrottle], ...] = PRE_AUTH_THROTTLES

    def initial(self, request, *args, **kwargs):
        for throttle in (cls() for cls in self.pre_auth_throttles):
            if not throttle.allow_request(request, self):
                # DRF takes None too: no Retry-After to say.
                self.throttled(request, throttle.wait())  # type: ignore[arg-type]
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, AuthenticationFailed):
            AuthFailureThrottle().record_failure(self.request, self)
        return super().handle_exception(exc)


# (Comments, not docstrings: the schema describes each view by the nearest docstring.)
class ReadApi(ThrottledApiView):
    # A read: any user who may view the drains.

    authentication_classes = AUTHENTICATION
    permission_classes = [CanViewDrains]


class ChangeApi(ThrottledApiView):
    # A change: a user who may change the drains, a JSON body within the upload limit, and the
    # action throttle on top of the user's.

    authentication_classes = AUTHENTICATION
    permission_classes = [CanChangeDrains]
    throttle_classes = [UserThrottle, BurstToggleThrottle]
    parser_classes = [LimitedJSONParser]


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


class Conflict(APIException):
    """The action cannot apply now (the message says why); nothing was changed."""

    status_code = 409
    default_code = "conflict"


def drain_or_404(name: str) -> None:
    """A drain the operations surfaces list (an on-demand one, such as the evaluations', is
    not steered from them), or 404 naming the known ones."""
    if name not in registry.names():
        raise NotFound(str(registry.UnknownDrain(name)))


def valid_input(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data if request.data is not None else {})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def action_done(message: str, *, changed: bool = True, data: dict | None = None) -> Response:
    return Response(as_json({"message": message, "changed": changed, "data": data or {}}))
