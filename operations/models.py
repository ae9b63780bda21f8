"""API tokens, stored hashed (django-rest-knox), each with a name and an expiry.

The table holds a token's SHA-512 digest and its first 15 characters (to find the row), never the
token: a read of the database is no working credential. Minting, listing and revoking go through
``operations.tokens``.
"""

from __future__ import annotations

from django.db import models
from knox.models import AbstractAuthToken


class ApiToken(AbstractAuthToken):
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'nightly report'.")

    class Meta:
        ordering = ["user_id", "name", "created"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.user}, {self.token_key}…)"
