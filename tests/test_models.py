import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from users.models import User

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
