"""How API callers authenticate: a hashed, expiring knox token (``Authorization: Token <key>``)
or the page's session (with CSRF on unsafe methods)."""

from __future__ import annotations

from knox.auth import TokenAuthentication
from rest_framework import exceptions


class HashedTokenAuthentication(TokenAuthentication):
    """knox's token check; a header that is not UTF-8 is a bad token (401), not a crash."""

    def authenticate_credentials(self, token):
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return super().authenticate_credentials(token)
