"""``manage.py mint_token USERNAME --name NAME [--days N]``: a new API token, shown once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings

from drains import validate
from drains.clock import format_local
from operations.token_commands import TokenCommand, user_name
from operations.tokens import MAX_DAYS, MAX_NAME, MIN_DAYS, mint_token


class Command(TokenCommand):
    help = (
        "Mint a new API token for a user and print it once (stdout) for scripts calling /api/ "
        "(header 'Authorization: Token <key>'). Only its digest is stored: copy it now. Run by "
        "hand; cron never runs it. The token has the user's permissions: drains.view_draincontrol "
        "to read, drains.change_draincontrol to toggle bursts. See list_tokens and revoke_token."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "username", type=user_name, help="The existing user the token acts as.",
        )
        parser.add_argument(
            "--name", default="script", type=validate.text(MAX_NAME, what="a token name"),
            help=f"What the token is for, shown by list_tokens, 1 to {MAX_NAME} characters "
            "(default: script).",
        )
        parser.add_argument(
            "--days", type=validate.decimal_number(MIN_DAYS, MAX_DAYS, "days"), default=None,
            help=f"Days until it expires, {MIN_DAYS:g} to {MAX_DAYS:g} (default: 90).",
        )
        parser.add_argument(
            "--rotate", action="store_true",
            help="Revoke the user's other tokens of the same name first.",
        )

    def handle(
        self, *args: Any, username: str, name: str, days: float | None, rotate: bool,
        **options: Any,
    ) -> None:
        if days is None:
            ttl = settings.REST_KNOX["TOKEN_TTL"]  # a timedelta (config/settings.py)
            assert isinstance(ttl, timedelta), "REST_KNOX TOKEN_TTL is a timedelta"
            days = ttl.total_seconds() / 86400
        minted = mint_token(username=username, name=name, days=days, replace=rotate)
        user = minted.token.user
        missing = [
            perm
            for perm in ("drains.view_draincontrol", "drains.change_draincontrol")
            if not user.has_perm(perm)
        ]
        if missing:
            self.stderr.write(f"note: {username} lacks {', '.join(missing)}; the API will answer 403.")
        self.stdout.write(minted.key)
        self.stderr.write(
            f"new token {name!r} for {username} ({minted.token.token_key}…), expires "
            f"{format_local(minted.token.expiry)}; it is shown only this once."
        )
