"""The ``anthropic`` backend: the official SDK's Messages API, one HTTP request per call.

Model from HALACHA_MODEL, key from ANTHROPIC_API_KEY, base URL from the SDK's own
ANTHROPIC_BASE_URL, all read at call time. The SDK's retries are off (``max_retries=0``): the
drain owns backoff, and a retry inside the SDK would spend quota the drain cannot see. The
reply is constrained to the JSON schema, and usage (input, output, cache tokens) is returned with
every result.

Prompt caching (HALACHA_PROMPT_CACHE, on by default): the system prompt carries
``cache_control: {"type": "ephemeral"}``, so the first call writes it to the API's cache (billed
at 1.25x the input price, reported as ``cache_creation_input_tokens``) and every later call with
the same prompt within the cache's lifetime (5 minutes, refreshed by each hit) reads it at 0.1x
(``cache_read_input_tokens``); only the decision is billed at full price. The API caches nothing
below a model's minimum cacheable prompt length. The documented minimum is 1024 tokens for
Sonnet 4.5 and 4.6 (4096 for Opus 4.5/4.6 and Haiku 4.5); one user report
(anthropic-sdk-python#1194) saw Sonnet 4.6 cache only from 2048. The extraction prompt
(SYSTEM_PROMPT) is 4,800 characters, about 1,200 tokens by the rough chars/4 estimate (its Hebrew
examples tokenize denser, so likely somewhat more; it was not counted by the real tokenizer here):
above the documented 1024, so the saving applies, but below 2048 if that report holds. The
metadata prompt (about 1,060 characters, roughly 260 tokens) is below any minimum: it is marked
all the same, which costs nothing, but nothing is cached for it until it grows past the minimum.
Neither prompt is padded to reach it.

Every answer and every refusal is read for the subscription's windows: the
``anthropic-ratelimit-unified-*`` headers (``-5h-``/``-7d-`` utilization, reset and status, the
top-level status and representative claim) become the result's or the exception's ``quota``
(drains.quota.signals.from_unified_headers); an API-key account gets none of those headers and
an empty signal. The SDK's raw response (``with_raw_response``) is how the headers of an answer
are read.

A 429 (or the spend-limit 400) becomes ``RateLimited`` with the reset and the kind read by
drains.quota.resets; a 529 (overloaded) becomes ``RateLimited`` of kind ``overloaded``, which the
runtime retries inside the run (drains/runner/pacing.py); refused credentials, the service's 5xx
and a connection that cannot be made are a ``HostFault`` (halacha/extractors/faults.py); every
other failure is this item's ``ExtractionError``.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from typing import Any, cast

import anthropic
from anthropic.types import OutputConfigParam, TextBlockParam
from django.conf import settings
from django.utils import timezone

from drains.quota.resets import (
    RateLimited,
    is_limit_message,
    overloaded,
    parse_reset,
    parse_reset_headers,
)
from drains.quota.signals import QuotaSignal, from_unified_headers
from halacha.extractors.base import (
    ExtractionError,
    Extractor,
    HostFault,
    ModelCall,
    ModelReply,
    usage_from,
)
from halacha.extractors.faults import service_fault

logger = logging.getLogger(__name__)


def system_block(text: str) -> TextBlockParam:
    """The system prompt as a content block, marked for prompt caching when HALACHA_PROMPT_CACHE
    is on (read at call time). The mark costs nothing when the prompt is too short to cache: the
    API then simply caches nothing."""
    block: TextBlockParam = {"type": "text", "text": text}
    if settings.HALACHA_PROMPT_CACHE:
        block["cache_control"] = {"type": "ephemeral"}
    return block


def key_fingerprint(api_key: str) -> str:
    """A short, stable name for an API key that reveals nothing about it."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:12]


class AnthropicExtractor(Extractor):
    name = "anthropic"
    model_setting = "HALACHA_MODEL"
    efforts = ("low", "medium", "high", "xhigh", "max")  # the Messages API's output_config

    def quota_key(self) -> str:
        api_key = settings.ANTHROPIC_API_KEY
        return f"anthropic:{key_fingerprint(api_key)}" if api_key else "anthropic:no-key"

    def client(self) -> anthropic.Anthropic:
        """A client for one call (the caller closes it), from the settings as they are now.

        One per call, closed right after: a call takes seconds, so a fresh connection costs
        nothing worth keeping one open (and never closing it) for the life of the extractor.
        """
        api_key = settings.ANTHROPIC_API_KEY
        if not api_key:
            raise HostFault(
                "ANTHROPIC_API_KEY is not set",
                advice="set it for HALACHA_EXTRACTOR=anthropic, or use HALACHA_EXTRACTOR=offline "
                "(no key) or claude-cli",
            )
        timeout = float(settings.HALACHA_API_TIMEOUT_SECONDS)
        # base_url is left to the SDK, which reads ANTHROPIC_BASE_URL itself.
        return anthropic.Anthropic(api_key=api_key, max_retries=0, timeout=timeout)

    def _output_config(self, schema: dict) -> OutputConfigParam:
        """The reply's JSON schema, and the configured effort when there is one."""
        config: OutputConfigParam = {"format": {"type": "json_schema", "schema": schema}}
        if self.effort:
            config["effort"] = cast(Any, self.effort)  # one of ``efforts``, checked at init
        return config

    def _call(self, *, system: str, user: str, schema: dict):
        """One Messages API request; returns (message, reply text, raw, usage, quota) or raises
        (the exception's ``quota`` what the refusal's headers said)."""
        client = self.client()
        caught: list[warnings.WarningMessage] = []
        try:
            # The SDK warns (DeprecationWarning, hidden by default) when HALACHA_MODEL is near its
            # end of life; a cron job's log is where an operator will see that, so log it.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                response = client.messages.with_raw_response.create(
                    model=self.model,
                    max_tokens=int(settings.HALACHA_MAX_TOKENS),
                    system=[system_block(system)],
                    messages=[{"role": "user", "content": user}],
                    output_config=self._output_config(schema),
                )
                quota = from_unified_headers(response.headers, now=timezone.now())
                message = response.parse()
        except anthropic.APIStatusError as exc:
            raise _with_quota(_refused(exc), exc) from exc
        except anthropic.APIConnectionError as exc:  # refused, DNS, TLS, a timeout with no reply
            raise HostFault(
                f"could not reach the Anthropic API at {client.base_url}: {_cause(exc)}",
                advice="check the network, DNS and any proxy from this host (ANTHROPIC_BASE_URL "
                "if set); the drain probes again on its own",
            ) from exc
        finally:
            client.close()
            for warning in caught:
                logger.warning("anthropic SDK: %s", warning.message)
        usage = usage_from(getattr(message, "usage", None))
        raw = message.model_dump(mode="json")
        text = "".join(
            block.text for block in message.content if block.type == "text"
        )
        if message.stop_reason == "max_tokens":
            raise ExtractionError(
                f"the reply was cut off at HALACHA_MAX_TOKENS={settings.HALACHA_MAX_TOKENS}; "
                "a host's own settings module raises it for long decisions (docs/deploy.md)",
                raw=raw,
                usage=usage,
                quota=quota,
            )
        if message.stop_reason == "refusal":
            raise ExtractionError("the model refused to answer", raw=raw, usage=usage, quota=quota)
        return message, text, raw, usage, quota

    def call(self, request: ModelCall) -> ModelReply:
        message, text, raw, usage, quota = self._call(
            system=request.system, user=request.user, schema=request.schema
        )
        return ModelReply(text=text, usage=usage, raw=raw, backend=self.name,
                          model=message.model or self.model, quota=quota)


def _refused(exc: anthropic.APIStatusError) -> RateLimited | ExtractionError:
    """What a refused or failed request becomes: ``RateLimited`` for a 429, the spend-limit 400
    or a 529 (overloaded), a ``HostFault`` (a kind of RateLimited) for refused credentials and
    the service's 5xx, ``ExtractionError`` for everything else (this request's own 400, 413)."""
    if isinstance(exc, anthropic.RateLimitError):
        return parse_reset_headers(
            exc.response.headers, status=exc.response.status_code
        ).rate_limited(_describe(exc))
    if isinstance(exc, anthropic.BadRequestError):
        text = exc.api_message or str(exc)
        if is_limit_message(text):  # the spend limit: "You will regain access on ..."
            return parse_reset(text).rate_limited(_describe(exc))
        return ExtractionError(_describe(exc))
    if exc.status_code == 529:  # overloaded: no limit; the runtime retries the call
        return overloaded(_describe(exc))
    fault = service_fault(exc.status_code, _describe(exc), service="the Anthropic API",
                          login_advice=KEY_ADVICE)
    return fault or ExtractionError(_describe(exc))


KEY_ADVICE = "check ANTHROPIC_API_KEY: the key may be revoked, mistyped or lack access to the model"


def _cause(exc: BaseException) -> str:
    """The connection error's own reason (refused, a name not found), under the SDK's wrapper."""
    cause = exc.__cause__ or exc.__context__
    return f"{exc} ({type(cause).__name__}: {cause})" if cause is not None else str(exc)


def _with_quota(
    error: RateLimited | ExtractionError, exc: anthropic.APIStatusError
) -> RateLimited | ExtractionError:
    """``error`` carrying what the refusal's unified headers said of the windows."""
    signal = from_unified_headers(exc.response.headers, now=timezone.now())
    error.quota = signal if isinstance(signal, QuotaSignal) else QuotaSignal()
    return error


def _describe(exc: anthropic.APIStatusError) -> str:
    """HTTP status, error type and message, request id, and the rate-limit headers as received."""
    parts = [f"HTTP {exc.status_code}"]
    if exc.type:
        parts.append(str(exc.type))
    parts.append(exc.api_message or exc.message)
    described = " ".join(parts)
    if exc.request_id:
        described += f" (request {exc.request_id})"
    limits = "; ".join(
        f"{k}: {v}"
        for k, v in sorted(exc.response.headers.items())
        if k.lower().startswith(("retry-after", "anthropic-ratelimit-"))
    )
    return f"{described}; {limits}" if limits else described
