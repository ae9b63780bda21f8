"""The registry of drain classes. Apps register their drains at start-up (AppConfig.ready);
drains itself imports no sibling app."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from drains.items import Source, watch

if TYPE_CHECKING:
    from drains.runner.plugin import AnyDrain

    D = TypeVar("D", bound=type[AnyDrain])

_DRAINS: dict[str, type[AnyDrain]] = {}
_JOBS: dict[str, str] = {}


class UnknownDrain(LookupError):
    def __init__(self, name: str):
        self.name = name
        known = ", ".join(names()) or "none registered"
        super().__init__(f"There is no drain named {name!r}; known drains: {known}.")


def register(drain_cls: D) -> D:
    """Class decorator: make a drain known by its ``name``, and keep its source's rows queued
    as its items (drains/items.py)."""
    name = drain_cls.name
    if not name or not isinstance(getattr(drain_cls, "source", None), Source):
        raise TypeError(f"{drain_cls.__name__}: a drain needs a name and a source "
                        "(drains.items.Source: which rows are its items).")
    existing = _DRAINS.get(name)
    if existing is not None and existing is not drain_cls:
        raise ValueError(f"Two drains registered under the name {name!r}.")
    _DRAINS[name] = drain_cls
    watch(drain_cls.source.model, classes)
    return drain_cls


def unregister(name: str) -> None:
    """Forget a drain (tests and benches that registered their own); no error if unknown."""
    _DRAINS.pop(name, None)


def get(name: str) -> type[AnyDrain]:
    try:
        return _DRAINS[name]
    except KeyError:
        raise UnknownDrain(name) from None


def classes() -> list[type[AnyDrain]]:
    """Every registered drain class, on-demand ones included."""
    return [_DRAINS[name] for name in sorted(_DRAINS)]


def names() -> list[str]:
    """The drains the operations surfaces list, schedule, supervise and count: every registered
    one but those run only on demand (``Drain.on_demand``: ``manage.py evaluate``), which
    ``get`` still finds."""
    return sorted(name for name, cls in _DRAINS.items() if not cls.on_demand)


def drain_for_command(command: str) -> str | None:
    """The drain that its own management command ``command`` runs (``command``, or a
    ``drain_<name>`` command of a drain that names none), or None for another job."""
    return next((name for name, cls in _DRAINS.items()
                 if command == (cls.command or f"drain_{name}")), None)


def register_job(command: str, *, schedule: str) -> None:
    """A scheduled job that is not a drain (the supervisor tick, the digest, the court fetch):
    the management command and its cron slot. The app that owns the command calls this in its
    ``ready()``, as it registers its drains; the schedule is built from both
    (drains/schedule.py ``declared_cronjobs``)."""
    existing = _JOBS.get(command)
    if existing is not None and existing != schedule:
        raise ValueError(f"The job {command!r} is registered twice, at {existing!r} and {schedule!r}.")
    _JOBS[command] = schedule


def jobs() -> dict[str, str]:
    """Each registered job's command and its cron expression."""
    return dict(_JOBS)
