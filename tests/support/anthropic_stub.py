"""A local stand-in for the Anthropic Messages API: a real HTTP server on 127.0.0.1.

Tests queue responses (status, JSON body, headers); every request is recorded (method, path,
headers, decoded body and its size in bytes), so a test can prove what a client sent and how many
requests it made. Point a client at it with ``ANTHROPIC_BASE_URL=stub.url``.

Two clients use it: the official SDK (plain JSON replies) and the real Claude CLI, which asks for
``"stream": true``. A queued 200 message is then sent as the Messages API's server-sent events
(``message_start``, one ``content_block_*`` group per block, ``message_delta``,
``message_stop``), so the CLI parses the same reply the SDK would get. Errors are plain JSON with
their status, as the real API sends them before a stream starts. Any request the stub does not
serve (a GET, another path) is recorded too and answered 404, so a test sees stray traffic.

Prompt caching (``AnthropicStub(prompt_cache=True)``): the stub then reports usage as the real API
does instead of the queued body's token counts. The cached prefix of a request is everything up to
and including its last block that carries ``cache_control`` (tools, then system, then messages),
keyed on the model and the exact bytes of that prefix (``cache_control`` marks left out). The
first request with a prefix reports it as ``cache_creation_input_tokens``; every later request
with the same prefix reports it as ``cache_read_input_tokens``; ``input_tokens`` is the rest of
the request. A changed prompt, another model, or a prefix shorter than ``min_cacheable_tokens``
(the API's minimum cacheable length; nothing is cached below it) misses. Tokens are estimated as
characters / 4 (``estimate_tokens``), of the texts only (the JSON schema is not counted); each
request's reported usage is kept on its ``RecordedRequest.usage``. Simplified against the real
API: only the last breakpoint is looked up, and entries never expire (the real lifetime is 5
minutes, refreshed by each hit).

Quota model (``AnthropicStub(quota=QuotaModel(...))``): the subscription's windows as the real
service keeps them for a subscriber. Every Messages call first brings the model up to "now"
(windows past their reset start again at 0; the "owner" spends what its schedule says it spent
since); a call arriving while a window is full (utilization 1.0) is refused with a 429 and the
rejected ``anthropic-ratelimit-unified-*`` headers, without taking a queued response; otherwise it
is answered and adds each window's ``per_call`` (capped at 1.0). Every answer, refused or not,
carries the unified headers (``-5h-``/``-7d-`` utilization, reset and status, ``-status``,
``-reset``, ``-representative-claim``, ``-overage-status``), as the API sends them and the real
CLI turns them into its ``rate_limit_event`` lines. See ``QuotaModel``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    size: int = 0  # bytes of the request body as sent
    usage: dict | None = None  # the usage the stub reported for it (a 200 Messages reply)
    at: float = field(default_factory=time.monotonic)  # when it arrived
    answered_at: float | None = None  # when its answer was sent
    status: int | None = None  # the status it was answered with

    @property
    def streamed(self) -> bool:
        return isinstance(self.body, dict) and bool(self.body.get("stream"))


@dataclass
class StubResponse:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds the stub takes before it answers (a call's latency)


def message_body(
    text: str | None = None,
    *,
    content: list[dict] | None = None,
    model: str = "claude-sonnet-4-5-20250929",
    stop_reason: str = "end_turn",
    input_tokens: int = 1200,
    output_tokens: int = 85,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 1100,
) -> dict:
    """A Messages API success body: one text block ``text``, or the given ``content`` blocks."""
    if content is None:
        content = [{"type": "text", "text": text or ""}]
    return {
        "id": "msg_stub_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
        },
    }


def tool_use_body(name: str, tool_input: dict, **kwargs) -> dict:
    """A reply in which the "model" asks to call tool ``name`` (what an obeyed injection does)."""
    block = {"type": "tool_use", "id": "toolu_stub_01", "name": name, "input": tool_input}
    return message_body(content=[block], stop_reason="tool_use", **kwargs)


def error_body(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_stub"}


def sse_events(message: dict) -> bytes:
    """``message`` as the Messages API's stream of server-sent events."""
    events: list[tuple[str, dict]] = []
    start = dict(message, content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = dict(message["usage"], output_tokens=1)
    events.append(("message_start", {"type": "message_start", "message": start}))
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            empty = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        elif block["type"] == "tool_use":
            empty = dict(block, input={})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:  # pragma: no cover - the stub only sends the two kinds above
            raise ValueError(f"the stub cannot stream a {block['type']!r} block")
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
        )
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def estimate_tokens(text: str) -> int:
    """The stub's token count for ``text``: characters / 4, rounded up (a rough rule of thumb)."""
    return math.ceil(len(text) / 4)


def _text_of(value: Any) -> str:
    """The text a content value carries: a string, a block's ``text``, or a tool's description."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        parts = [value.get("text"), value.get("description"), value.get("content")]
        return "".join(_text_of(part) for part in parts if part)
    if isinstance(value, list):
        return "".join(_text_of(item) for item in value)
    return ""


def _segments(body: dict) -> list[tuple[Any, bool]]:
    """The request's prompt in cache order (tools, system, messages), block by block, each with
    whether it carries a cache breakpoint (``cache_control``)."""
    segments: list[tuple[Any, bool]] = []
    for tool in body.get("tools") or []:
        segments.append((tool, isinstance(tool, dict) and "cache_control" in tool))
    system = body.get("system")
    if isinstance(system, str):
        segments.append((system, False))
    for block in system if isinstance(system, list) else []:
        segments.append((block, isinstance(block, dict) and "cache_control" in block))
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for block in content:
                marked = isinstance(block, dict) and "cache_control" in block
                segments.append(({"role": message.get("role"), "block": block}, marked))
        else:
            segments.append((message, False))
    return segments


def _unmarked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unmarked(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_unmarked(v) for v in value]
    return value


class PromptCache:
    """The API's prompt cache as the stub models it: prefix key -> its token count."""

    def __init__(self, min_cacheable_tokens: int):
        self.min_cacheable_tokens = min_cacheable_tokens
        self.entries: dict[str, int] = {}

    def usage(self, body: dict) -> dict[str, int]:
        """Input, cache-creation and cache-read tokens for one request, updating the cache."""
        segments = _segments(body)
        tokens = [estimate_tokens(_text_of(_unmarked(value))) for value, _ in segments]
        total = sum(tokens)
        marked = [i for i, (_, is_marked) in enumerate(segments) if is_marked]
        if not marked:
            return {"input_tokens": total, "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0}
        end = marked[-1] + 1
        prefix_tokens = sum(tokens[:end])
        if prefix_tokens < self.min_cacheable_tokens:  # the API caches nothing this short
            return {"input_tokens": total, "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0}
        prefix = [_unmarked(value) for value, _ in segments[:end]]
        raw = json.dumps([body.get("model"), prefix], sort_keys=True, ensure_ascii=False)
        key = hashlib.sha256(raw.encode("utf-8")).hexdigest()
        if key in self.entries:
            read, created = prefix_tokens, 0
        else:
            self.entries[key] = prefix_tokens
            read, created = 0, prefix_tokens
        return {"input_tokens": total - prefix_tokens, "cache_creation_input_tokens": created,
                "cache_read_input_tokens": read}


# --- the subscription's quota windows ---------------------------------------------------------

# The windows the stub models, with the short name their headers use (the CLI reads these).
UNIFIED_WINDOWS = (("five_hour", "5h"), ("seven_day", "7d"))
REFUSED_MESSAGE = "This request would exceed your account's rate limit. Please try again later."


@dataclass
class StubWindow:
    """One window: its utilization 0..1, when it resets (epoch seconds), what a call adds."""

    name: str
    length: float  # seconds
    per_call: float  # utilization one answered call (or one owner's call) adds
    utilization: float = 0.0
    # None: expired and not open (the 5-hour window opens with the first call after it expired).
    resets_at: float | None = None
    opens_on_call: bool = False  # True for the 5-hour window; the weekly one rolls on its own
    early: float = 0.0  # the reset really comes this many seconds before the announced one


@dataclass(frozen=True)
class QuotaCall:
    """One Messages call as the quota model saw it."""

    at: float
    answered: bool
    using_overage: bool
    before: dict[str, float]  # each window's utilization when the call arrived
    after: dict[str, float]


@dataclass(frozen=True)
class QuotaReset:
    """A window reset: when, and the utilization it had just before (what the week ended at)."""

    window: str
    at: float
    utilization: float


class QuotaModel:
    """A subscriber's 5-hour and weekly windows, shared by the drains' calls and an "owner".

    ``owner(t0, t1)`` returns how many calls the account's owner made between two epoch times
    (a float is fine); each adds ``per_call`` to every window, like a drain's call, and is never
    refused (it just fills a window to 1.0). The owner's spending is applied lazily, whenever the
    model is asked (each request, ``state()``), in steps that stop at every reset, so what the
    week ended at is exact. ``clock`` is epoch seconds (``time.time``); tests may pass their own.
    """

    def __init__(
        self,
        *,
        week: float = 0.0,
        session: float = 0.0,
        week_per_call: float = 0.03,
        session_per_call: float = 0.03,
        week_seconds: float = 7 * 86400.0,
        session_seconds: float = 5 * 3600.0,
        week_resets_in: float | None = None,
        session_resets_in: float | None = None,
        week_early: float = 0.0,
        owner=None,
        overage: bool = False,
        warn_at: float = 0.9,
        clock=time.time,
        weight=None,
    ):
        self.clock = clock
        # weight(request body) -> how many calls' worth one request spends (a model's price):
        # None, every request one.
        self.weight = weight
        now = clock()
        self.windows = {
            "five_hour": StubWindow(
                "five_hour", session_seconds, session_per_call, session,
                now + (session_resets_in if session_resets_in is not None else session_seconds)
                if session or session_resets_in is not None else None,
                opens_on_call=True,
            ),
            "seven_day": StubWindow(
                "seven_day", week_seconds, week_per_call, week,
                now + (week_resets_in if week_resets_in is not None else week_seconds / 2),
                early=week_early,
            ),
        }
        self.owner = owner
        self.overage = overage  # extra usage on: a call at a full window is answered, and paid
        self.warn_at = warn_at
        self.calls: list[QuotaCall] = []
        self.resets: list[QuotaReset] = []
        self.owner_calls = 0.0
        self._advanced_to = now
        self._lock = threading.Lock()

    # -- what tests set --
    def set(self, window: str, utilization: float, *, resets_in: float | None = None) -> None:
        """Put ``window`` at ``utilization`` (and its reset ``resets_in`` seconds from now)."""
        with self._lock:
            self._advance(self.clock())
            w = self.windows[window]
            w.utilization = utilization
            if resets_in is not None:
                w.resets_at = self.clock() + resets_in

    # -- the model --
    def _spend(self, calls: float, at: float) -> None:
        if calls <= 0:
            return
        for w in self.windows.values():
            if w.resets_at is None and w.opens_on_call:
                # Whole seconds, as the API's headers give resets: the header is the reset.
                w.resets_at = float(math.ceil(at + w.length))
            w.utilization = min(1.0, w.utilization + w.per_call * calls)

    def _next_reset(self) -> tuple[float, StubWindow] | None:
        due = [(w.resets_at - w.early, w) for w in self.windows.values() if w.resets_at is not None]
        return min(due, key=lambda pair: pair[0]) if due else None

    def _advance(self, now: float) -> None:
        while True:
            nxt = self._next_reset()
            step_end = now if nxt is None or nxt[0] > now else nxt[0]
            if self.owner is not None and step_end > self._advanced_to:
                calls = float(self.owner(self._advanced_to, step_end))
                self.owner_calls += max(0.0, calls)
                self._spend(calls, self._advanced_to)
            self._advanced_to = max(self._advanced_to, step_end)
            if nxt is None or nxt[0] > now:
                return
            at, w = nxt
            self.resets.append(QuotaReset(w.name, at, w.utilization))
            w.utilization = 0.0
            w.resets_at = None if w.opens_on_call else w.resets_at + w.length

    def _full(self) -> list[StubWindow]:
        return [w for w in self.windows.values() if w.utilization >= 1.0]

    def call(self, body=None) -> tuple[bool, dict[str, str]]:
        """One Messages call arriving now: (answered, the unified headers of its answer); its
        ``body`` weighs it (``weight``)."""
        with self._lock:
            now = self.clock()
            self._advance(now)
            before = {name: w.utilization for name, w in self.windows.items()}
            full = self._full()
            answered = not full or self.overage
            if not full:
                self._spend(self.weight(body) if self.weight else 1.0, now)
            self.calls.append(
                QuotaCall(now, answered, bool(full) and self.overage, before,
                          {name: w.utilization for name, w in self.windows.items()})
            )
            return answered, self._headers(now)

    def state(self) -> dict[str, tuple[float, float | None]]:
        """Each window's (utilization, reset epoch) now."""
        with self._lock:
            self._advance(self.clock())
            return {name: (w.utilization, w.resets_at) for name, w in self.windows.items()}

    def _status(self, w: StubWindow) -> str:
        if w.utilization >= 1.0:
            return "rejected"
        return "allowed_warning" if w.utilization >= self.warn_at else "allowed"

    def _headers(self, now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, short in UNIFIED_WINDOWS:
            w = self.windows[name]
            reset = w.resets_at if w.resets_at is not None else now + w.length
            headers[f"anthropic-ratelimit-unified-{short}-utilization"] = f"{w.utilization:.4g}"
            # Whole seconds, as the API sends them, rounded up: the window has reset by then.
            headers[f"anthropic-ratelimit-unified-{short}-reset"] = str(math.ceil(reset))
            headers[f"anthropic-ratelimit-unified-{short}-status"] = self._status(w)
        full = self._full()
        windows = list(self.windows.values())
        # The binding window: a full one, else the fullest (the later reset on a tie).
        claim = full[0] if full else max(
            windows, key=lambda w: (w.utilization, w.resets_at or now + w.length)
        )
        statuses = {self._status(w) for w in windows}
        status = ("rejected" if "rejected" in statuses
                  else "allowed_warning" if "allowed_warning" in statuses else "allowed")
        headers["anthropic-ratelimit-unified-status"] = status
        headers["anthropic-ratelimit-unified-representative-claim"] = claim.name
        claim_reset = claim.resets_at if claim.resets_at is not None else now + claim.length
        headers["anthropic-ratelimit-unified-reset"] = str(math.ceil(claim_reset))
        headers["anthropic-ratelimit-unified-fallback-percentage"] = "0.5"
        if self.overage:
            headers["anthropic-ratelimit-unified-overage-status"] = "allowed"
        else:
            headers["anthropic-ratelimit-unified-overage-status"] = "rejected"
            headers["anthropic-ratelimit-unified-overage-disabled-reason"] = "org_level_disabled"
        return headers


def owner_at(times: list[float], calls: float = 1.0):
    """An owner who makes ``calls`` calls at each epoch time in ``times``."""

    def owner(t0: float, t1: float) -> float:
        return calls * sum(1 for t in times if t0 < t <= t1)

    return owner


def owner_steady(calls_per_second: float):
    """An owner who spends at a steady pace."""

    def owner(t0: float, t1: float) -> float:
        return calls_per_second * (t1 - t0)

    return owner


class AnthropicStub:
    def __init__(
        self,
        *,
        prompt_cache: bool = False,
        min_cacheable_tokens: int = 1024,
        quota: QuotaModel | None = None,
        responder=None,
    ):
        self.requests: list[RecordedRequest] = []
        # The subscription's windows (None: no unified headers, as for an API key).
        self.quota = quota
        # Called with the RecordedRequest when nothing is queued: returns its StubResponse.
        self.responder = responder
        # None: the queued bodies' usage is sent as it is (the default).
        self.prompt_cache = PromptCache(min_cacheable_tokens) if prompt_cache else None
        self._responses: deque[StubResponse] = deque()
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> RecordedRequest:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                recorded = RecordedRequest(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    len(raw),
                )
                with stub._lock:
                    stub.requests.append(recorded)
                return recorded

            def _send(self, status: int, payload: bytes, content_type: str, headers=None):
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                self.send_header("request-id", "req_stub")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    # A client that gave up (a CONNECT it does not wait for) is not the stub's
                    # failure: the request is already recorded for the test to see.
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        self.wfile.write(payload)

            def do_POST(self):  # noqa: N802 - the http.server API
                recorded = self._record()
                if recorded.path.split("?")[0] != "/v1/messages":
                    self._not_served()
                    return
                quota_headers: dict[str, str] = {}
                if stub.quota is not None:
                    answered, quota_headers = stub.quota.call(recorded.body)
                    if not answered:  # a full window: refused, no queued response taken
                        recorded.answered_at = time.monotonic()
                        recorded.status = 429
                        payload = json.dumps(error_body("rate_limit_error", REFUSED_MESSAGE))
                        self._send(429, payload.encode(), "application/json", quota_headers)
                        return
                with stub._lock:
                    queued = stub._responses.popleft() if stub._responses else None
                if queued is not None:
                    response = queued
                elif stub.responder is not None:
                    response = stub.responder(recorded)
                else:
                    response = StubResponse(
                        500, error_body("api_error", "the stub has no response queued")
                    )
                if quota_headers:
                    response = StubResponse(response.status, response.body,
                                            {**quota_headers, **response.headers}, response.delay)
                if (
                    stub.prompt_cache is not None
                    and response.status == 200
                    and isinstance(recorded.body, dict)
                    and isinstance(response.body, dict)
                ):
                    with stub._lock:
                        usage = stub.prompt_cache.usage(recorded.body)
                    body = dict(response.body, usage=dict(response.body.get("usage", {}), **usage))
                    response = StubResponse(response.status, body, response.headers,
                                            response.delay)
                if response.status == 200 and isinstance(response.body, dict):
                    recorded.usage = response.body.get("usage")
                if response.delay:
                    time.sleep(response.delay)
                recorded.answered_at = time.monotonic()
                recorded.status = response.status
                if recorded.streamed and response.status == 200:
                    self._send(
                        200, sse_events(response.body), "text/event-stream", response.headers
                    )
                else:
                    payload = json.dumps(response.body).encode()
                    self._send(response.status, payload, "application/json", response.headers)

            def _not_served(self):
                payload = json.dumps(error_body("not_found_error", "not served by the stub"))
                self._send(404, payload.encode(), "application/json")

            def do_GET(self):  # noqa: N802
                self._record()
                self._not_served()

            def do_CONNECT(self):  # noqa: N802 - a client that uses the stub as its proxy
                self._record()
                self._not_served()
                self.close_connection = True

            do_HEAD = do_GET  # noqa: N815
            do_PUT = do_GET  # noqa: N815
            do_DELETE = do_GET  # noqa: N815

            def log_message(self, format, *args):  # keep test output clean
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def messages(self) -> list[RecordedRequest]:
        """The Messages API calls among the recorded requests."""
        return [
            r
            for r in self.requests
            if r.method == "POST" and r.path.split("?")[0] == "/v1/messages"
        ]

    def enqueue(
        self, status: int, body: Any, headers: dict[str, str] | None = None, *, delay: float = 0.0
    ) -> None:
        with self._lock:
            self._responses.append(StubResponse(status, body, headers or {}, delay))

    def reply(self, text: str, *, delay: float = 0.0, **kwargs) -> None:
        """Queue a 200 whose assistant text is ``text`` (answered after ``delay`` seconds)."""
        self.enqueue(200, message_body(text, **kwargs), delay=delay)

    def __enter__(self) -> AnthropicStub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
