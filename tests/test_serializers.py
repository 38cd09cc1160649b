import pytest
from rest_framework.exceptions import ValidationError

from users.models import User
from users.serializers import UserSerializer

pytestmark = pytest.mark.django_db


def test_a_user_has_a_string_id_and_an_empty_email_when_it_has_none():
    user = User.objects.create(name="Ann")
    assert UserSerializer(user).data == {"id": str(user.pk), "name": "Ann", "email": ""}


@pytest.mark.parametrize(
    ("data", "field"),
    [({}, "name"), ({"name": None}, "name"), ({"name": "Ann", "email": None}, "email")],
)
def test_missing_or_null_fields_are_invalid(data, field):
    serializer = UserSerializer(data=data)
    assert not serializer.is_valid()
    assert field in serializer.errors


def test_the_id_cannot_be_chosen_by_the_client():
    serializer = UserSerializer(data={"id": "999", "name": "Ann"})
    serializer.is_valid(raise_exception=True)
    assert serializer.save().pk != 999


def test_model_rules_surface_as_field_errors():
    User.objects.create(name="Ann", email="ann@example.org")
    serializer = UserSerializer(data={"name": "Ann", "email": "Ann@Example.org"})
    serializer.is_valid(raise_exception=True)
    with pytest.raises(ValidationError) as caught:
        serializer.save()
    assert caught.value.detail == {"email": ["A user with this email already exists."]}
