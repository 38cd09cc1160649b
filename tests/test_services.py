import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from users import services
from users.models import User, UserListVersion

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


def test_updates_of_other_fields_from_stale_copies_keep_both():
    user = services.user_create(name="Ann", email="ann@example.org")
    first, second = User.objects.get(pk=user.pk), User.objects.get(pk=user.pk)
    services.user_update(first, name="Anna")
    services.user_update(second, email="anna@example.org")
    user.refresh_from_db()
    assert (user.name, user.email) == ("Anna", "anna@example.org")


def test_an_update_of_a_user_deleted_meanwhile_raises_and_writes_nothing():
    stale = services.user_create(name="Ann")
    services.user_delete(User.objects.get(pk=stale.pk))
    with pytest.raises(User.DoesNotExist):
        services.user_update(stale, name="Anna")
    with pytest.raises(User.DoesNotExist):
        services.user_delete(stale)
    assert not User.objects.exists()


def test_an_update_to_the_values_held_takes_no_version():
    user = services.user_create(name="Ann", email="ann@example.org")
    services.user_update(user, name=" Ann ", email="ann@example.org")
    assert User.objects.get(pk=user.pk).version == user.version
    assert UserListVersion.objects.get().number == user.version


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite runs one writer at a time: no such race"
)
def test_updates_and_deletes_of_one_user_at_once_never_deadlock_nor_bring_it_back():
    """Each round: two updates and a delete of one user, on three connections at once."""
    outcomes = []

    def write(job, user):
        try:
            job(user)
            outcomes.append("done")
        except User.DoesNotExist:
            outcomes.append("gone")
        finally:
            connection.close()

    for round_ in range(20):
        user = services.user_create(name=f"Round {round_}")
        jobs = [
            lambda u: services.user_update(u, name="Renamed"),
            lambda u: services.user_update(u, email=f"r{u.pk}@example.org"),
            services.user_delete,
        ]
        start = threading.Barrier(len(jobs), timeout=10)

        def run(job, user=user, start=start):
            copy = User.objects.get(pk=user.pk)  # each loads it before any writes
            start.wait()
            write(job, copy)

        threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not User.objects.exists(), "a deleted user came back"
    assert len(outcomes) == 60, "a writer failed otherwise (deadlock?)"
