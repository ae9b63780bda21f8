"""How API callers authenticate: a hashed, expiring knox token, sent as
``Authorization: Token <key>`` or ``Authorization: Bearer <key>`` (the same token either way:
``/metrics`` takes Bearer, so scripts try it here too), or the page's session (with CSRF on
unsafe methods). A 401 names the scheme in ``WWW-Authenticate: Token``."""

from __future__ import annotations

from knox.auth import TokenAuthentication
from rest_framework import exceptions
from rest_framework.authentication import get_authorization_header

SCHEMES = (b"token", b"bearer")


class HashedTokenAuthentication(TokenAuthentication):
    """knox's token check under either scheme; a header that is not UTF-8 is a bad token
    (401), not a crash."""

    def authenticate(self, request):
        auth = get_authorization_header(request).split()
        if not auth or auth[0].lower() not in SCHEMES:
            return None  # no credentials, or another backend's (the session)
        if len(auth) == 1:
            raise exceptions.AuthenticationFailed("Invalid token header. No credentials provided.")
        if len(auth) > 2:
            raise exceptions.AuthenticationFailed(
                "Invalid token header. Token string should not contain spaces."
            )
        return self.authenticate_credentials(auth[1])

    def authenticate_credentials(self, token):
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        return super().authenticate_credentials(token)
