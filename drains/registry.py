"""The registry of drain classes. Apps register their drains at start-up (AppConfig.ready);
drains itself imports no sibling app."""

from __future__ import annotations

from typing import Any

_DRAINS: dict[str, Any] = {}


class UnknownDrain(LookupError):
    def __init__(self, name: str):
        self.name = name
        known = ", ".join(sorted(_DRAINS)) or "none registered"
        super().__init__(f"There is no drain named {name!r}; known drains: {known}.")


def register(drain_cls):
    """Class decorator: make a drain known by its ``name``."""
    name = drain_cls.name
    existing = _DRAINS.get(name)
    if existing is not None and existing is not drain_cls:
        raise ValueError(f"Two drains registered under the name {name!r}.")
    _DRAINS[name] = drain_cls
    return drain_cls


def unregister(name: str) -> None:
    """Forget a drain (tests and benches that registered their own); no error if unknown."""
    _DRAINS.pop(name, None)


def get(name: str):
    try:
        return _DRAINS[name]
    except KeyError:
        raise UnknownDrain(name) from None


def names() -> list[str]:
    return sorted(_DRAINS)


def drain_for_command(command: str) -> str | None:
    """The drain that the management command ``command`` runs, or None for another job."""
    return next((name for name, cls in _DRAINS.items() if cls.command_name() == command), None)
