import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from tests.helpers import make_account
from users import commands
from users.models import CommandReceipt, User

pytestmark = pytest.mark.django_db


def test_a_receipt_is_kept_per_account_so_other_accounts_may_use_the_same_id():
    ann, bob = make_account("ann"), make_account("bob")
    command = {"action": "create", "name": "X", "request_id": "same"}
    first = commands.run(ann, {**command, "name": "From Ann"})
    second = commands.run(bob, {**command, "name": "From Bob"})
    assert first != second
    assert User.objects.count() == 2


def test_a_command_without_a_request_id_leaves_no_receipt():
    commands.run(make_account(), {"action": "create", "name": "Ann"})
    assert not CommandReceipt.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite runs one writer at a time: no such race"
)
def test_the_same_request_at_the_same_moment_on_two_connections_writes_once(monkeypatch):
    account = make_account()
    both_about_to_save = threading.Barrier(2, timeout=5)
    save = User.save

    def save_with_the_other(user, *args, **kwargs):
        both_about_to_save.wait()  # both have checked for a receipt and found none
        save(user, *args, **kwargs)

    def create() -> dict:
        try:
            return commands.run(account, {"action": "create", "name": "Ann", "request_id": "r"})
        finally:
            connection.close()

    monkeypatch.setattr(User, "save", save_with_the_other)
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: create(), range(2))
    assert first == second
    assert User.objects.count() == 1


@pytest.mark.parametrize("action", ["update", "delete"])
def test_a_command_on_a_user_deleted_meanwhile_answers_not_found(monkeypatch, action):
    ann = User.objects.create(name="Ann")
    user = commands._user

    def load_then_lose(user_id):
        loaded = user(user_id)
        User.objects.filter(pk=loaded.pk).delete()
        return loaded

    monkeypatch.setattr(commands, "_user", load_then_lose)
    with pytest.raises(commands.CommandError) as caught:
        commands.run(make_account(perms=["change_user", "delete_user"]),
                     {"action": action, "id": str(ann.pk), "name": "Anna"})  # fmt: skip
    assert caught.value.code == "not_found"
    assert not User.objects.exists()
