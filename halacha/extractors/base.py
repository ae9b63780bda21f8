"""The extractor interface every backend implements.

``extract(decision) -> ExtractionResult`` or raises ``RateLimited`` (drains.quota.resets) when the
quota is exhausted, ``HostFault`` (drains.runner.plugin) when the fault is the host's or the
service's and no item's (halacha/extractors/faults.py decides which), or ``ExtractionError``
for a failure of this item. ``extract_metadata(decision)
-> MetadataResult`` is the same contract for the metadata drain.

A backend never writes to the database: the drain runtime persists what it returns (staging
first, so nothing paid for is lost). When a paid call came back unusable, the ``ExtractionError``
carries the ``raw`` reply and its ``usage`` so the runtime can still record both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
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
class ExtractedHalacha:
    rule: str
    quote: str
    topics: list[str] = field(default_factory=list)


@dataclass
class ExtractionResult:
    """What one extraction produced.

    ``halachot`` holds only rules whose quote occurs verbatim in the decision; ``rejected``
    counts the others and ``problems`` says why each was dropped. ``raw`` is JSON-serialisable.
    """

    halachot: list[ExtractedHalacha]
    usage: dict[str, Any]
    raw: Any
    rejected: int = 0
    extractor: str = ""
    model: str = ""
    problems: list[str] = field(default_factory=list)
    quota: QuotaSignal = field(default_factory=QuotaSignal)  # what the call said of its windows


@dataclass
class MetadataResult:
    """Metadata read from a decision's text; None/empty where the text does not say."""

    court: str | None
    case_number: str | None
    decided_on: date | None
    judges: list[str]
    parties: list[str]
    usage: dict[str, Any]
    raw: Any
    extractor: str = ""
    model: str = ""
    quota: QuotaSignal = field(default_factory=QuotaSignal)


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

    ``name`` is the backend name stored on each Halacha; ``model`` the model it used;
    ``quota_key()`` names the quota the backend draws on (the API key or the CLI account), so a
    rate limit backs off every drain that shares it.
    """

    name = "base"
    model_setting = ""  # the setting naming the model, read at call time ("": none)

    @property
    def model(self) -> str:
        """The model it uses ("": none): a backend whose model is a setting names it in
        ``model_setting``, read at call time like every setting; one with a fixed model sets
        ``model`` as a class attribute."""
        return getattr(settings, self.model_setting) if self.model_setting else ""

    def quota_key(self) -> str:
        return self.name

    def extract(self, decision) -> ExtractionResult:  # pragma: no cover - interface
        raise NotImplementedError

    def extract_metadata(self, decision) -> MetadataResult:  # pragma: no cover - interface
        raise NotImplementedError
