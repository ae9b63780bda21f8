"""``manage.py revoke_token KEY_PREFIX`` or ``--user USERNAME [--name NAME]``."""

from __future__ import annotations

from drains import validate
from operations.token_commands import TokenCommand, user_name
from operations.tokens import MAX_NAME, TOKEN_KEY_MAX, revoke_tokens


class Command(TokenCommand):
    help = (
        "Revoke API tokens: the one whose key starts with KEY_PREFIX (as list_tokens shows it), "
        "or a user's tokens (--user, optionally --name). Callers using them get 401 at once. "
        "Run by hand; cron never runs it."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "key_prefix", nargs="?", type=validate.text(TOKEN_KEY_MAX, what="a key prefix"),
            help="The token's prefix from list_tokens.",
        )
        parser.add_argument(
            "--user", type=user_name, help="Revoke this user's tokens instead.",
        )
        parser.add_argument(
            "--name", type=validate.text(MAX_NAME, what="a token name"),
            help="With --user: only the tokens of this name.",
        )

    def handle(self, *args, key_prefix, user, name, **options):
        if key_prefix and user:
            raise validate.BadInput("Give a key prefix or --user, not both.")
        if name and not user:
            raise validate.BadInput("--name goes with --user.")
        revoked = revoke_tokens(token_key=key_prefix, username=user, name=name)
        for t in revoked:
            self.stdout.write(f"revoked {t.token_key}  {t.user.get_username()}  {t.name!r}")
