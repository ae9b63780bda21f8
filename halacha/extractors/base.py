"""The extractor interface every backend implements.

``extract(decision) -> ExtractionResult`` or raises ``RateLimited`` (drains.ratelimit) when the
quota is exhausted, or ``ExtractionError`` for any other failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drains.ratelimit import RateLimited  # noqa: F401  (re-exported for backends)


class ExtractionError(Exception):
    """The extractor failed for a reason other than a rate limit."""


@dataclass(frozen=True)
class ExtractedHalacha:
    rule: str
    quote: str
    topics: list[str] = field(default_factory=list)


@dataclass
class ExtractionResult:
    halachot: list[ExtractedHalacha]
    usage: dict[str, Any]
    raw: Any
    rejected: int = 0
    extractor: str = ""
    model: str = ""


class Extractor:
    """Base class for backends.

    ``name`` is the backend name stored on each Halacha; ``model`` the model it used;
    ``quota_key()`` names the quota the backend draws on (the API key or the CLI account), so a
    rate limit backs off every drain that shares it.
    """

    name = "base"
    model = ""

    def quota_key(self) -> str:
        return self.name

    def extract(self, decision) -> ExtractionResult:  # pragma: no cover - interface
        raise NotImplementedError
