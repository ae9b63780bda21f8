"""What the token commands (``mint_token``, ``list_tokens``, ``revoke_token``) share: the user
name they take, and a ``TokenError`` from operations/tokens.py (its message says what to do)
as the one-line refusal with exit status 2."""

from __future__ import annotations

from typing import Any

from drains import validate
from operations.tokens import USERNAME_MAX, TokenError

user_name = validate.text(USERNAME_MAX, what="a user name")
"""A user name argument's check (auth.User.username's length)."""


class TokenCommand(validate.CheckedCommand):
    """A token command's base: whichever service call raises ``TokenError``, the command is
    refused with its message in one line (exit status 2), as any bad input is."""

    def execute(self, *args: Any, **options: Any) -> Any:
        try:
            return super().execute(*args, **options)
        except TokenError as exc:
            raise validate.BadInput(str(exc)) from None
