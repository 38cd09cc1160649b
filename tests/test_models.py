import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from users.models import User, UserListVersion, UserTombstone, parse_user_id
from users.signals import users_changed

pytestmark = pytest.mark.django_db


def test_name_and_email_are_trimmed_when_validated():
    user = User(name="  Ann  ", email=" ann@example.org ")
    user.full_clean()
    assert (user.name, user.email) == ("Ann", "ann@example.org")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 151}, "name"),
        ({"name": "Ann", "email": "not-an-address"}, "email"),
    ],
)
def test_invalid_fields_are_reported_by_name(fields, field):
    with pytest.raises(ValidationError) as caught:
        User(**fields).full_clean()
    assert field in caught.value.message_dict


def test_a_name_of_150_characters_is_valid():
    User(name="x" * 150).full_clean()


def test_email_is_unique_ignoring_case():
    User.objects.create(name="Ann", email="ann@example.org")
    with pytest.raises(ValidationError) as caught:
        User(name="Other Ann", email="ANN@Example.org").full_clean()
    assert caught.value.message_dict == {"email": ["A user with this email already exists."]}


def test_a_user_keeps_its_own_email_when_revalidated():
    user = User.objects.create(name="Ann", email="ann@example.org")
    user.full_clean()


def test_many_users_may_have_no_email():
    User.objects.create(name="Ann")
    User(name="Bob").full_clean()
    User.objects.create(name="Bob")
    assert User.objects.filter(email="").count() == 2


def test_database_refuses_an_email_differing_only_in_case():
    User.objects.create(name="Ann", email="ann@example.org")
    with pytest.raises(IntegrityError):
        User.objects.create(name="Ann again", email="ANN@EXAMPLE.ORG")


def test_database_refuses_an_empty_name():
    with pytest.raises(IntegrityError):
        User.objects.create(name="")


def version() -> int:
    return UserListVersion.objects.get().number


def test_a_user_deleted_meanwhile_is_not_inserted_again_by_a_save():
    stale = User.objects.create(name="Ann")
    User.objects.filter(pk=stale.pk).delete()
    stale.name = "Anna"
    with pytest.raises(User.DoesNotExist):
        stale.save()
    assert not User.objects.exists()


def test_writes_that_change_nothing_take_no_version():
    ann = User.objects.create(name="Ann")
    before = version()
    assert User.objects.filter(pk=ann.pk + 1).update(name="Nobody") == 0
    assert User.objects.filter(pk=ann.pk).update(name="Ann") == 0  # holds it already
    assert User.objects.bulk_create([]) == []
    assert User.objects.filter(pk=ann.pk + 1).delete() == (0, {})
    assert version() == before


def test_a_bulk_delete_takes_one_version_and_leaves_a_tombstone_per_user():
    users = User.objects.bulk_create(User(name=f"User {n}") for n in range(3))
    before = version()
    assert User.objects.all().delete() == (3, {"users.User": 3})
    assert version() == before + 1
    tombstones = UserTombstone.objects.values_list("user_id", "version")
    assert sorted(tombstones) == [(user.pk, before + 1) for user in users]


def test_a_bulk_update_takes_one_version_for_the_rows_it_changes():
    ann, bob = User.objects.create(name="Ann"), User.objects.create(name="Bob")
    before = version()
    assert User.objects.update(name="Bob") == 1  # Bob holds it already
    ann.refresh_from_db(), bob.refresh_from_db()
    assert (ann.name, ann.version, bob.version) == ("Bob", before + 1, before)


def test_every_kind_of_write_tells_the_live_list_once():
    told = []

    def tell(sender, **kwargs):
        told.append(sender)

    users_changed.connect(tell, sender=User, dispatch_uid="test.told")
    try:
        ann = User.objects.create(name="Ann")
        User.objects.bulk_create([User(name="Bob"), User(name="Cy")])
        User.objects.filter(name="Bob").update(name="Bo")
        ann.delete()
        User.objects.all().delete()
    finally:
        users_changed.disconnect(dispatch_uid="test.told", sender=User)
    assert len(told) == 5


@pytest.mark.parametrize(
    ("text", "user_id"),
    [("7", 7), ("007", 7), ("0", 0), (str(2**63 - 1), 2**63 - 1), ("0" * 40 + "5", 5)],
)
def test_a_user_id_is_read_from_its_digits(text, user_id):
    assert parse_user_id(text) == user_id


@pytest.mark.parametrize("text", ["", "-1", "1.0", " 7", "٣", str(2**63), "9" * 5000, 7, None])
def test_what_names_no_user_id_reads_as_none(text):
    assert parse_user_id(text) is None
