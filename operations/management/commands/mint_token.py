"""``manage.py mint_token USERNAME``: an API token for scripts (run by hand, never by cron)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = (
        "Print the API token of a user for scripts calling /api/operations/ (header "
        "'Authorization: Token <key>'), creating it if needed. Run by hand; cron never runs it. "
        "The token has the user's permissions: drains.view_draincontrol to read, "
        "drains.change_draincontrol to toggle bursts."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="The existing user the token acts as.")
        parser.add_argument(
            "--rotate",
            action="store_true",
            help="Replace the user's token with a new one (the old key stops working).",
        )

    def handle(self, *args, username: str, rotate: bool, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(
                f"There is no user {username!r}. Create one first "
                "(manage.py createsuperuser, or in the admin) and give it the drains permissions."
            ) from None
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive; a token for it would not work.")
        with transaction.atomic():
            if rotate:
                Token.objects.filter(user=user).delete()
            token, created = Token.objects.get_or_create(user=user)
        missing = [
            perm
            for perm in ("drains.view_draincontrol", "drains.change_draincontrol")
            if not user.has_perm(perm)
        ]
        if missing:
            self.stderr.write(f"note: {username} lacks {', '.join(missing)}; the API will answer 403.")
        self.stdout.write(token.key)
        if created:
            self.stderr.write(f"new token for {username}")
