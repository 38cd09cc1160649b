"""The wire shape of a user, shared by REST, the socket and the live list."""

from contextlib import contextmanager

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from . import services
from .models import User


@contextmanager
def _model_errors_as_serializer_errors():
    # The model's own checks (such as the case-insensitive unique email) run
    # in the service; answer them like field errors, not as a server error.
    # A user that another writer deleted meanwhile is not found.
    try:
        yield
    except DjangoValidationError as exc:
        raise serializers.ValidationError(serializers.as_serializer_error(exc)) from exc
    except User.DoesNotExist as exc:
        raise NotFound(str(exc)) from exc


class UserSerializer(serializers.ModelSerializer):
    """
    ``{"id": "<id>", "name": "...", "email": "..."}``.

    The id is a string because the existing clients decode it as one; a user
    without an email has ``""``, never null.
    """

    id = serializers.CharField(read_only=True)

    class Meta:
        model = User
        fields = ["id", "name", "email"]

    def to_representation(self, instance):
        # Spelled out rather than walked field by field: the live list encodes
        # every user on every change, and DRF's generic walk was most of that
        # cost. ``instance`` may be a User or a row of ``Meta.fields`` (snapshots).
        return {"id": str(instance.id), "name": instance.name, "email": instance.email}

    def create(self, validated_data):
        with _model_errors_as_serializer_errors():
            return services.user_create(**validated_data)

    def update(self, instance, validated_data):
        with _model_errors_as_serializer_errors():
            return services.user_update(instance, **validated_data)
