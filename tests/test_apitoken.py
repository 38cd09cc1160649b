"""``manage.py apitoken``: create, rotate and revoke an app's token."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from tests.helpers import make_account

pytestmark = pytest.mark.django_db


def apitoken(*args) -> str:
    out = StringIO()
    call_command("apitoken", *args, stdout=out)
    return out.getvalue().strip()


def test_create_prints_the_accounts_token_and_keeps_it_until_rotated():
    account = make_account("app")
    key = apitoken("create", "app")
    assert key == Token.objects.get(user=account).key
    assert apitoken("create", "app") == key
    rotated = apitoken("create", "app", "--rotate")
    assert rotated != key
    assert list(Token.objects.values_list("key", flat=True)) == [rotated]


def test_revoke_deletes_the_token():
    make_account("app")
    apitoken("create", "app")
    assert apitoken("revoke", "app") == "Revoked app's token."
    assert not Token.objects.exists()


def test_an_unknown_account_is_an_error():
    with pytest.raises(CommandError, match="No account named 'ghost'"):
        apitoken("create", "ghost")
