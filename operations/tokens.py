"""Minting, listing and revoking API tokens: the one write path for ``ApiToken``.

``mint_token`` returns the token itself once; only its digest is stored, so it can never be shown
again. A revoked or expired token is answered 401 (knox deletes an expired row when it is used).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from operations.models import ApiToken

MAX_NAME = 100  # ApiToken.name
USERNAME_MAX = 150  # auth.User.username
TOKEN_KEY_MAX = 15  # knox's token_key: the prefix list_tokens shows
MIN_DAYS = 0.01  # about a quarter of an hour
MAX_DAYS = 3650.0  # ten years: a token always expires, and the expiry stays in the calendar


class TokenError(Exception):
    """A request about tokens that cannot be carried out; the message says what to do."""


@dataclass(frozen=True)
class MintedToken:
    token: ApiToken
    key: str  # shown once


def _user(username: str):
    User = get_user_model()
    try:
        user = User.objects.get(**{User.USERNAME_FIELD: username})
    except User.DoesNotExist:
        raise TokenError(
            f"There is no user {username!r}. Create one first (manage.py createsuperuser, or in "
            "the admin) and give it the drains permissions."
        ) from None
    return user


def mint_token(*, username: str, name: str, days: float, replace: bool = False) -> MintedToken:
    """A new token for ``username`` named ``name``, expiring in ``days`` days."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise TokenError(f"A token name is 1 to {MAX_NAME} characters, e.g. --name 'nightly report'.")
    if not MIN_DAYS <= days <= MAX_DAYS:  # nan fails too
        raise TokenError(
            f"--days must be from {MIN_DAYS:g} to {MAX_DAYS:g} (got {days:g}); a token always "
            "expires."
        )
    user = _user(username)
    if not user.is_active:
        raise TokenError(f"User {username!r} is inactive; a token for it would not work.")
    with transaction.atomic():
        if replace:
            ApiToken.objects.filter(user=user, name=name).delete()
        token, key = ApiToken.objects.create(user=user, expiry=timedelta(days=days), name=name)
    return MintedToken(token=token, key=key)


def list_tokens(*, username: str | None = None):
    tokens = ApiToken.objects.select_related("user").order_by("user__username", "name", "created")
    if username is not None:
        tokens = tokens.filter(user=_user(username))
    return list(tokens)


def revoke_tokens(*, token_key: str | None = None, username: str | None = None,
                  name: str | None = None) -> list[ApiToken]:
    """Delete the tokens with this key prefix, or this user's tokens (of this name). Returns them."""
    if token_key:
        tokens = ApiToken.objects.filter(token_key=token_key)
    elif username:
        tokens = ApiToken.objects.filter(user=_user(username))
        if name:
            tokens = tokens.filter(name=name)
    else:
        raise TokenError("Say which token: its key (the first column of list_tokens) or --user.")
    with transaction.atomic():
        revoked = list(tokens.select_related("user").select_for_update(of=("self",)))
        if not revoked:
            raise TokenError("No such token. list_tokens shows the tokens there are.")
        ApiToken.objects.filter(digest__in=[t.digest for t in revoked]).delete()
    return revoked


def expired(token: ApiToken, now: datetime | None = None) -> bool:
    return token.expiry is not None and token.expiry <= (now or timezone.now())
