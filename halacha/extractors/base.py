"""The one model call every backend implements, whatever the drain.

``call(ModelCall) -> ModelReply``: a drain's system prompt, user prompt and the JSON schema its
reply must follow go in; the reply's text, its usage, the model and what the call said of the
quota come out. A backend knows no drain: each drain owns its prompts, its schema, its parser
and its offline rule (``ModelCall.offline``, the reply the ``offline`` backend gives without a
model), so adding a drain touches no backend. Failures come out classified: ``RateLimited``
(drains.quota.resets) when the quota refused, ``HostFault`` (drains.runner.plugin) when the
fault is the host's or the service's and no item's (halacha/extractors/faults.py decides
which), ``ExtractionError`` when the call failed for this item.

A backend never writes to the database: the drain runtime persists what the drain made of the
reply (staging first, so nothing paid for is lost). When a paid call came back unusable, the
``ExtractionError`` carries the ``raw`` reply and its ``usage`` so the runtime can still record
both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from drains.quota.resets import RateLimited  # noqa: F401  (re-exported for backends)
from drains.quota.signals import QuotaSignal
from drains.runner.plugin import HostFault  # noqa: F401  (re-exported for backends)


class ExtractionError(Exception):
    """The extractor failed for a reason other than a rate limit.

    ``raw`` and ``usage`` are set when the model was called (and paid for) but its reply could not
    be used: malformed JSON, a reply cut off at max_tokens, an error object from the CLI.
    """

    failure_kind = "extractor"  # drains/failures.py: what a failed run says it was

    def __init__(
        self,
        message: str,
        *,
        raw: Any = None,
        usage: dict[str, Any] | None = None,
        quota: QuotaSignal | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.raw = raw
        self.usage = usage or {}
        self.quota = quota or QuotaSignal()


@dataclass(frozen=True)
class ModelCall:
    """What a drain asks a model for one item.

    ``offline`` is the drain's offline rule: the reply text the ``offline`` backend returns,
    made without a model (deterministic, no quota). ``item`` is the item the call is for; no
    backend reads it (test stand-ins log its key).
    """

    system: str
    user: str
    schema: dict[str, Any]
    offline: Callable[[], str]
    item: Any = None


@dataclass
class ModelReply:
    """A model's answer: its text (the drain parses it), the usage and the raw reply it was paid
    for, the backend and model that made it, and what the call said of the quota's windows."""

    text: str
    usage: dict[str, Any]
    raw: Any
    backend: str
    model: str
    quota: QuotaSignal = field(default_factory=QuotaSignal)


class ExtractionConfigError(ValueError):
    """A configuration a backend cannot run (an effort it takes not): the operator's to fix."""


def empty_usage() -> dict[str, Any]:
    """The usage keys every backend reports (the drain runtime sums them onto DrainRun)."""
    return {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


class Extractor:
    """Base class for backends.

    ``name`` is the backend name stored with each result; ``model`` the model it uses;
    ``quota_key()`` names the quota the backend draws on (the API key or the CLI account), so a
    rate limit backs off every drain that shares it.
    """

    name = "base"
    model_setting = ""  # the setting naming the model, read at call time ("": none)
    # The effort levels the backend can pass on (empty: it takes no effort).
    efforts: tuple[str, ...] = ()

    def __init__(self, *, model: str = "", effort: str = "") -> None:
        """``model`` and ``effort``: a configuration other than the settings' (an evaluation's,
        or the one an operator chose); "" keeps the setting (and the backend's default effort).
        """
        if effort and effort not in self.efforts:
            raise ExtractionConfigError(
                f"the {self.name} backend takes no effort {effort!r}"
                + (f"; use one of {', '.join(self.efforts)}" if self.efforts else
                   "; leave --effort out for it"))
        self.model_choice = model
        self.effort = effort

    @property
    def model(self) -> str:
        """The model it uses ("": none): the configured one, else a backend whose model is a
        setting names it in ``model_setting``, read at call time like every setting; one with a
        fixed model sets ``model`` as a class attribute."""
        if getattr(self, "model_choice", ""):
            return self.model_choice
        return getattr(settings, self.model_setting) if self.model_setting else ""

    def quota_key(self) -> str:
        return self.name

    def call(self, request: ModelCall) -> ModelReply:  # pragma: no cover - interface
        """One model call (see the module docstring for what it may raise)."""
        raise NotImplementedError


def usage_from(reported: Any, *, cost_usd: Any = None) -> dict[str, Any]:
    """The usage keys every backend reports, read from a mapping (the CLI's JSON) or an object
    (the SDK's ``Usage``); anything missing or unreadable counts 0. ``cost_usd`` is kept when the
    backend states one (the CLI's ``total_cost_usd``)."""
    usage = empty_usage()
    for key in usage:
        value = reported.get(key) if isinstance(reported, dict) else getattr(reported, key, 0)
        try:
            usage[key] = int(value or 0)
        except (TypeError, ValueError):
            usage[key] = 0
    if isinstance(cost_usd, int | float) and not isinstance(cost_usd, bool):
        usage["cost_usd"] = float(cost_usd)
    return usage


def with_model_usage(usage: dict[str, Any], model: str) -> dict[str, Any]:
    """``usage`` with ``model_usage`` (model -> calls, tokens, cost) when the backend gave none.

    The drain runtime sums ``model_usage`` onto the run, so the page and the admin can say which
    model a run spent its quota on.
    """
    if model and "model_usage" not in usage:
        spent = {key: value for key, value in usage.items() if key != "model_usage"}
        usage = dict(usage, model_usage={model: {"calls": 1, **spent}})
    return usage
