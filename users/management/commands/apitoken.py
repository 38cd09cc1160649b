"""``manage.py apitoken create|revoke <username>``: the token an app signs in with."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = (
        "Create (or with --rotate, replace) an account's API token and print it, or revoke it. "
        "Apps send it as 'Authorization: Token <key>' and as the socket subprotocol "
        "'token.<key>'. The admin's Auth Token page does the same."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["create", "revoke"])
        parser.add_argument("username")
        parser.add_argument(
            "--rotate", action="store_true", help="create: replace an existing token"
        )

    def handle(self, *args, action, username, rotate, **options):
        try:
            account = get_user_model().objects.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No account named {username!r}.") from None
        if action == "revoke":
            deleted, _ = Token.objects.filter(user=account).delete()
            self.stdout.write(f"Revoked {username}'s token." if deleted else "No token to revoke.")
            return
        if rotate:
            Token.objects.filter(user=account).delete()
        token, _ = Token.objects.get_or_create(user=account)
        self.stdout.write(token.key)
