"""A local stand-in for the Anthropic Messages API: a real HTTP server on 127.0.0.1.

Tests queue responses (status, JSON body, headers); every request is recorded (method, path,
headers, decoded body), so a test can prove what the real SDK sent and how many requests it made.
Point the SDK at it with ``ANTHROPIC_BASE_URL=stub.url``.
"""

from __future__ import annotations

import json
import threading
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


@dataclass
class StubResponse:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def message_body(
    text: str,
    *,
    model: str = "claude-sonnet-4-5-20250929",
    stop_reason: str = "end_turn",
    input_tokens: int = 1200,
    output_tokens: int = 85,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 1100,
) -> dict:
    """A Messages API success body whose only content block is ``text``."""
    return {
        "id": "msg_stub_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
        },
    }


def error_body(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_stub"}


class AnthropicStub:
    def __init__(self):
        self.requests: list[RecordedRequest] = []
        self._responses: deque[StubResponse] = deque()
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - the http.server API
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with stub._lock:
                    stub.requests.append(
                        RecordedRequest(
                            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                    response = (
                        stub._responses.popleft()
                        if stub._responses
                        else StubResponse(
                            500, error_body("api_error", "the stub has no response queued")
                        )
                    )
                payload = json.dumps(response.body).encode()
                self.send_response(response.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.send_header("request-id", "req_stub")
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

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

    def enqueue(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._responses.append(StubResponse(status, body, headers or {}))

    def reply(self, text: str, **kwargs) -> None:
        """Queue a 200 whose assistant text is ``text``."""
        self.enqueue(200, message_body(text, **kwargs))

    def __enter__(self) -> AnthropicStub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
