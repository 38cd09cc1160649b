import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from users import services
from users.models import User

pytestmark = pytest.mark.django_db


def test_user_create_validates_trims_and_saves():
    user = services.user_create(name=" Ann ", email="ann@example.org")
    assert User.objects.get(pk=user.pk).name == "Ann"


def test_invalid_create_writes_nothing():
    with pytest.raises(ValidationError):
        services.user_create(name="Ann", email="nope")
    assert not User.objects.exists()


def test_user_update_changes_only_the_given_fields():
    user = services.user_create(name="Ann", email="ann@example.org")
    services.user_update(user, name="Anna")
    user.refresh_from_db()
    assert (user.name, user.email) == ("Anna", "ann@example.org")


def test_invalid_update_leaves_the_row_unchanged():
    user = services.user_create(name="Ann", email="ann@example.org")
    with pytest.raises(ValidationError):
        services.user_update(user, name="  ")
    assert User.objects.get(pk=user.pk).name == "Ann"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite runs one writer at a time: no such race"
)
def test_duplicate_email_committed_by_a_concurrent_writer_is_a_field_error(monkeypatch):
    def rival_insert():
        try:
            User.objects.create(name="First", email="ann@example.org")
        finally:
            connection.close()  # this thread's own connection

    save = User.save

    def rival_commits_the_same_email_before_the_insert(user, *args, **kwargs):
        # After the service's check, before the save takes the list's version.
        if user.name == "Second":
            rival = threading.Thread(target=rival_insert)
            rival.start()
            rival.join()
        save(user, *args, **kwargs)

    monkeypatch.setattr(User, "save", rival_commits_the_same_email_before_the_insert)
    with pytest.raises(ValidationError) as caught:
        services.user_create(name="Second", email="ANN@example.org")
    assert "email" in caught.value.message_dict
    assert list(User.objects.values_list("name", flat=True)) == ["First"]


def test_user_delete_removes_the_user():
    user = services.user_create(name="Ann")
    services.user_delete(user)
    assert not User.objects.exists()


def test_generated_names_count_up():
    assert services.generated_name() == "User 1"
    services.user_create(name=services.generated_name())
    assert services.generated_name() == "User 2"
