"""Template words of the page's quota section (operations/templates/operations/_quota.html): the
line shown when no quota key is known, from drains/quota/wording.py, so the page needs nothing from
the view."""

from __future__ import annotations

from django import template

from drains.quota.wording import NO_QUOTA

register = template.Library()


@register.simple_tag
def no_quota_text() -> str:
    return NO_QUOTA
