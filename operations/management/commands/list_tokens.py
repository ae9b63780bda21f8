"""``manage.py list_tokens [--user USERNAME]``: the API tokens there are (never the tokens)."""

from __future__ import annotations

from django.utils import timezone

from drains.clock import format_local
from operations.token_commands import TokenCommand, user_name
from operations.tokens import expired, list_tokens


class Command(TokenCommand):
    help = (
        "List API tokens: key prefix, user, name, created, expiry. The prefix names a token for "
        "revoke_token; the token itself is never stored. Run by hand; cron never runs it."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--user", type=user_name, help="Only this user's tokens.",
        )

    def handle(self, *args, user, **options):
        tokens = list_tokens(username=user)
        if not tokens:
            self.stdout.write("no tokens")
            return
        now = timezone.now()
        for t in tokens:
            expiry = format_local(t.expiry) if t.expiry else "never"
            state = " (expired)" if expired(t, now) else ""
            created = format_local(t.created)
            self.stdout.write(f"{t.token_key}  {t.user.get_username()}  {t.name!r}  "
                              f"created {created}  expires {expiry}{state}")
