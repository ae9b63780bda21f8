"""``manage.py revoke_token KEY_PREFIX`` or ``--user USERNAME [--name NAME]``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from operations.tokens import TokenError, revoke_tokens


class Command(BaseCommand):
    help = (
        "Revoke API tokens: the one whose key starts with KEY_PREFIX (as list_tokens shows it), "
        "or a user's tokens (--user, optionally --name). Callers using them get 401 at once. "
        "Run by hand; cron never runs it."
    )

    def add_arguments(self, parser):
        parser.add_argument("key_prefix", nargs="?", help="The token's prefix from list_tokens.")
        parser.add_argument("--user", help="Revoke this user's tokens instead.")
        parser.add_argument("--name", help="With --user: only the tokens of this name.")

    def handle(self, *args, key_prefix, user, name, **options):
        if key_prefix and user:
            raise CommandError("Give a key prefix or --user, not both.")
        if name and not user:
            raise CommandError("--name goes with --user.")
        try:
            revoked = revoke_tokens(token_key=key_prefix, username=user, name=name)
        except TokenError as exc:
            raise CommandError(str(exc)) from None
        for t in revoked:
            self.stdout.write(f"revoked {t.token_key}  {t.user.get_username()}  {t.name!r}")
