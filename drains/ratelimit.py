"""Rate limits: the ``RateLimited`` signal and the one reset-time parser (G1).

Every extractor turns its quota signal into ``RateLimited(reset_at, message)``; the runtime turns
that into a backoff on DrainControl. The parser (issue 3) knows every format in
samples/rate-limits.md.
"""

from __future__ import annotations

from datetime import datetime


class RateLimited(Exception):
    """The extractor's quota is exhausted until ``reset_at`` (aware datetime)."""

    def __init__(self, reset_at: datetime, message: str, *, trusted: bool = True):
        self.reset_at = reset_at
        self.message = message
        self.trusted = trusted  # False when reset_at is the fallback, not a parsed time
        super().__init__(f"rate limited until {reset_at.isoformat()}: {message}")
