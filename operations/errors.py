"""One shape for every error the API answers, whatever raised it.

``{"error": {"code": "<machine word>", "message": "<one line>", "fields": {"<field>": ["..."]}}}``
for 400, 401, 403, 404, 405, 406, 413, 415, 429 and 500 alike (``fields`` is ``{}`` unless the
error is about the request's content). Three entry points produce it, so that no /api/ answer is
ever Django's HTML page:

- ``api_exception_handler`` (DRF's EXCEPTION_HANDLER): anything raised inside an API view,
  including an unexpected exception, which is logged with its traceback and answered 500;
- ``json_error_view`` as ``handler400/403/404/500``: what fails outside a view (no route
  matched, a middleware failed, a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``);
- ``LimitedJSONParser``: the request body, read with a size limit and a nesting limit, so a
  10 KB body of ``[[[[…`` is a 400 and not a RecursionError.

It never hides a failure: a 500 is logged (``logger.exception``) before the JSON is answered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

logger = logging.getLogger(__name__)

# How deep a request body may nest. The burst body is one flat object; 32 leaves room for any
# sane client and stays far below the interpreter's recursion limit.
MAX_JSON_DEPTH = 32

# The code for each status when the exception names none of its own.
CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
}


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"

    def __init__(self, limit: int):
        super().__init__(
            f"The request body is larger than {limit} bytes; the API's bodies are small JSON "
            "objects such as {\"on\": true}."
        )


def error_body(status_code: int, message: str, *, code: str | None = None,
               fields: dict | None = None) -> dict:
    return {"error": {"code": code or CODES.get(status_code, "error"), "message": message,
                      "fields": fields or {}}}


def _flatten(detail) -> list[str]:
    if isinstance(detail, dict):
        return [msg for value in detail.values() for msg in _flatten(value)]
    if isinstance(detail, list | tuple):
        return [msg for value in detail for msg in _flatten(value)]
    return [str(detail)]


def _fields(detail: dict) -> dict[str, list[str]]:
    return {str(name): _flatten(value) for name, value in detail.items()}


def _from_api_exception(exc: exceptions.APIException) -> tuple[dict, dict]:
    headers = {}
    auth_header = getattr(exc, "auth_header", None)  # NotAuthenticated, AuthenticationFailed
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    wait = getattr(exc, "wait", None)  # Throttled
    if wait is not None:
        headers["Retry-After"] = str(max(1, int(wait + 0.999)))
    detail = exc.detail
    if isinstance(exc, exceptions.ValidationError):
        if isinstance(detail, dict):
            fields = _fields(detail)
            non_field = fields.pop(str(settings.REST_FRAMEWORK.get("NON_FIELD_ERRORS_KEY",
                                                                   "non_field_errors")), [])
            message = " ".join(non_field + [f"{name}: {' '.join(msgs)}"
                                            for name, msgs in fields.items()])
            if non_field:
                fields["non_field_errors"] = non_field
        else:
            fields, message = {}, " ".join(_flatten(detail))
        return error_body(400, message or "The request is not valid.", fields=fields), headers
    if isinstance(exc, exceptions.ParseError):
        message = str(detail)
        return error_body(400, message, code="parse_error", fields={"body": [message]}), headers
    code = CODES.get(exc.status_code) or getattr(detail, "code", None) or exc.default_code
    if isinstance(exc, exceptions.Throttled):
        code = "throttled"
    return error_body(exc.status_code, " ".join(_flatten(detail)), code=code), headers


def api_exception_handler(exc, context):
    """DRF's exception handler, answering every exception in the one shape (never ``None``)."""
    # Imported here: rest_framework.views reads DEFAULT_PARSER_CLASSES, which names this module.
    from rest_framework.views import set_rollback

    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) if exc.args else "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) if exc.args else None)
    elif isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if isinstance(exc, exceptions.APIException):
        body, headers = _from_api_exception(exc)
        set_rollback()
        return Response(body, status=exc.status_code, headers=headers)
    request = context.get("request")
    logger.exception(
        "API %s %s failed", getattr(request, "method", "?"), getattr(request, "path", "?"),
        exc_info=exc,
    )
    set_rollback()
    return Response(
        error_body(500, "The server failed; the error is in the server log. Try again in a minute."),
        status=500,
    )


def json_error_view(status_code: int):
    """A handler400/403/404/500 that answers JSON under /api/ and Django's page elsewhere."""
    from django.views import defaults

    pages: dict[int, Callable[..., HttpResponse]] = {
        400: defaults.bad_request, 403: defaults.permission_denied,
        404: defaults.page_not_found, 500: defaults.server_error,
    }
    html = pages[status_code]

    def view(request, exception=None):
        if not request.path.startswith("/api/") and request.path != "/metrics":
            if exception is None:
                return html(request)
            return html(request, exception)
        answer_status = status_code
        message: object = {
            400: "The request is not valid.",
            403: "You may not do this.",
            404: "Not found: no API endpoint has this path. The endpoints are listed at /api/docs/.",
            500: "The server failed; the error is in the server log. Try again in a minute.",
        }[status_code]
        if isinstance(exception, RequestDataTooBig):
            answer_status = 413
            message = RequestTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE).detail
        elif isinstance(exception, SuspiciousOperation) and status_code == 400:
            message = f"The request is not valid: {exception}"
        return JsonResponse(error_body(answer_status, str(message)), status=answer_status)

    view.__name__ = f"json_error_{status_code}"
    return view


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON value")


def _loads(text: str):
    return json.loads(text, parse_constant=_reject_constant)


def _depth(value, limit: int) -> int:
    """Nesting depth of parsed JSON, iteratively (a recursive walk is what must not crash)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


class LimitedJSONParser(JSONParser):
    """JSON bodies of at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes and MAX_JSON_DEPTH levels."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(limit)
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            raise exceptions.ParseError(f"The body is not valid {encoding} text.") from None
        # A quick upper bound first: fewer brackets than the limit cannot nest deeper than it.
        if text.count("[") + text.count("{") > MAX_JSON_DEPTH:
            try:
                parsed = _loads(text)
            except RecursionError:
                raise exceptions.ParseError(self._too_deep()) from None
            except ValueError as exc:
                raise exceptions.ParseError(f"The body is not valid JSON: {exc}") from None
            if _depth(parsed, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
                raise exceptions.ParseError(self._too_deep())
            return parsed
        try:
            return _loads(text)
        except ValueError as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {exc}") from None

    @staticmethod
    def _too_deep() -> str:
        return (f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels; send a flat object "
                "such as {\"on\": true}.")
