"""Template filters that say a time the way drains/clock.py does (``{{ moment|clock }}``)."""

from __future__ import annotations

from django import template

from drains import clock as _clock

register = template.Library()


@register.filter
def clock(moment) -> str:
    """``Sat 2026-12-05 18:00 IST``; "—" for none."""
    return _clock.format_local(moment) if moment else "—"


@register.filter
def clock_short(moment) -> str:
    """``Sat 18:00 IST`` within six days of now, else the full form; "—" for none."""
    return _clock.short_time(moment) if moment else "—"
