"""Extractor backends and the factory that picks one by name (``HALACHA_EXTRACTOR``).

Names: ``offline`` (default), ``anthropic``, ``claude-cli``; or ``module.path:ClassName`` for a
class of your own (tests use this to plug in counting or blocking extractors).
"""

from __future__ import annotations

import importlib

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from halacha.extractors.base import Extractor

BACKENDS = {
    "offline": "halacha.extractors.offline:OfflineExtractor",
    "anthropic": "halacha.extractors.anthropic_api:AnthropicExtractor",
    "claude-cli": "halacha.extractors.claude_cli:ClaudeCliExtractor",
}


def extractor_class(name: str | None = None) -> type[Extractor]:
    name = name or str(settings.HALACHA_EXTRACTOR)
    target = BACKENDS.get(name, name)
    if ":" not in target:
        raise ImproperlyConfigured(
            f"HALACHA_EXTRACTOR={name!r} is not a known backend; use one of "
            f"{', '.join(BACKENDS)} or module.path:ClassName."
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise ImproperlyConfigured(f"HALACHA_EXTRACTOR={name!r} cannot be loaded: {exc}") from exc
    if getattr(cls, "call", Extractor.call) is Extractor.call:
        raise ImproperlyConfigured(
            f"HALACHA_EXTRACTOR={name!r} has no call(ModelCall) method: a backend implements the "
            "one generic model call (halacha/extractors/base.py); extract() and "
            "extract_metadata() are no longer used."
        )
    return cls


def get_extractor(name: str | None = None, *, model: str = "", effort: str = "") -> Extractor:
    """A ready extractor instance for ``name`` (default: settings.HALACHA_EXTRACTOR); ``model``
    and ``effort`` configure it otherwise than the settings ("": as set). A class of one's own
    that takes no configuration is built without one."""
    cls = extractor_class(name)
    return cls(model=model, effort=effort) if model or effort else cls()
