import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection

from tests.helpers import make_account
from users import commands
from users.models import CommandReceipt, User

pytestmark = pytest.mark.django_db


def test_a_receipt_is_kept_per_account_so_other_accounts_may_use_the_same_id():
    ann, bob = make_account("ann"), make_account("bob")
    command = {"action": "create", "name": "X", "request_id": "same"}
    first = commands.run(ann, "test-client", {**command, "name": "From Ann"})
    second = commands.run(bob, "test-client", {**command, "name": "From Bob"})
    assert first != second
    assert User.objects.count() == 2


def test_a_command_without_a_request_id_leaves_no_receipt():
    commands.run(make_account(), "test-client", {"action": "create", "name": "Ann"})
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
            return commands.run(
                account, "test-client", {"action": "create", "name": "Ann", "request_id": "r"}
            )
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
        commands.run(make_account(perms=["change_user", "delete_user"]), "test-client",
                     {"action": action, "id": str(ann.pk), "name": "Anna"})  # fmt: skip
    assert caught.value.code == "not_found"
    assert not User.objects.exists()


def editor():
    return make_account(perms=["add_user", "change_user", "delete_user"])


@pytest.mark.parametrize("action", ["update", "delete"])
def test_a_command_at_another_version_of_the_user_is_a_conflict_and_changes_nothing(action):
    ann, account = User.objects.create(name="Ann"), editor()
    command = {"action": action, "id": str(ann.pk), "name": "Anna", "if_version": ann.version - 1}
    with pytest.raises(commands.CommandError) as caught:
        commands.run(account, "test-client", command)
    assert caught.value.code == "conflict"
    assert User.objects.get().version == ann.version
    ack = commands.run(account, "test-client", {**command, "if_version": ann.version})
    assert ack["version"] == ann.version + 1


@pytest.mark.parametrize("if_version", ["3", True, -1, 2**63, 1.0])
def test_an_if_version_that_is_no_version_is_invalid(if_version):
    ann = User.objects.create(name="Ann")
    command = {"action": "update", "id": str(ann.pk), "name": "Anna", "if_version": if_version}
    with pytest.raises(commands.CommandError) as caught:
        commands.run(editor(), "test-client", command)
    assert (caught.value.code, list(caught.value.errors)) == ("invalid", ["if_version"])


def test_a_retry_after_the_permission_was_withdrawn_is_refused_not_replayed(settings):
    settings.USERS_ANONYMOUS_WRITES = False
    account = make_account(perms=["add_user"])
    command = {"action": "create", "name": "Ann", "request_id": "r"}
    commands.run(account, "test-client", command)
    account.user_permissions.clear()
    account = type(account).objects.get(pk=account.pk)  # no cached permissions
    with pytest.raises(commands.CommandError) as caught:
        commands.run(account, "test-client", command)
    assert caught.value.code == "forbidden"


def test_anonymous_request_ids_are_scoped_to_their_client(settings):
    settings.USERS_ANONYMOUS_WRITES = True
    command = {"action": "create", "name": "Ann", "request_id": "1"}
    first = commands.run(AnonymousUser(), "socket:one", command)
    second = commands.run(AnonymousUser(), "socket:two", command)
    assert first["user"]["id"] != second["user"]["id"]
    assert commands.run(AnonymousUser(), "socket:one", command) == first
