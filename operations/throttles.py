"""API throttles: DRF throttles over the default cache, so every worker and host shares the counts.

The default cache is the database (``django_cache`` table, created by a migration) or Redis when
REDIS_URL is set; never a process's local memory, which each gunicorn worker would count apart.
Rates come from ``settings.DRAINS_API_THROTTLE_RATES`` at request time (not at import time, as
DRF's own classes do), so an operator's change and a test's override both take effect.

Two throttles run *before* authentication, by client address, so that guessing tokens is
throttled too (DRF's own order authenticates first, and a bad token ends in 401 before any
throttle is asked): ``address`` counts every request, ``auth_failure`` counts only rejected
credentials and refuses an address that has collected too many. After authentication, ``user``
counts a user's requests and ``burst`` a user's burst toggles.
"""

from __future__ import annotations

import time

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class SettingsRateThrottle(SimpleRateThrottle):
    scope: str  # every subclass names its rate in DRAINS_API_THROTTLE_RATES
    # Set by SimpleRateThrottle.__init__ from the rate when it is not off (not in the stubs).
    num_requests: int
    duration: int

    def get_rate(self) -> str | None:
        return settings.DRAINS_API_THROTTLE_RATES[self.scope]

    def timer(self) -> float:
        # DRF stores ``time.time`` as a class attribute; a method reading the clock at call time
        # also keeps working when a test pins the clock (freezegun swaps time.time).
        return time.time()


class AddressThrottle(SettingsRateThrottle):
    """Every API request, by client address (before authentication)."""

    scope = "address"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class AuthFailureThrottle(AddressThrottle):
    """Rejected credentials, by client address: after too many, the address waits."""

    scope = "auth_failure"

    def allow_request(self, request, view):
        # Only looks: a request is counted by record_failure, once its credentials are rejected.
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) >= self.num_requests:
            return self.throttle_failure()
        return True

    def record_failure(self, request, view) -> None:
        if self.rate is None:
            return  # this throttle is off
        self.key = self.get_cache_key(request, view)
        self.now = self.timer()
        history = [t for t in self.cache.get(self.key, []) if t > self.now - self.duration]
        history.insert(0, self.now)
        self.cache.set(self.key, history, self.duration)


class UserThrottle(SettingsRateThrottle):
    """A user's API requests, whichever address they come from."""

    scope = "user"

    def get_cache_key(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return None  # the address throttle has counted it
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class BurstToggleThrottle(UserThrottle):
    """A user's burst toggles: each one writes a row and an event."""

    scope = "burst"


PRE_AUTH_THROTTLES = (AddressThrottle, AuthFailureThrottle)
