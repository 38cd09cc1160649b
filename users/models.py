"""The directory of users that the live list shows."""

from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Lower

from .signals import users_changed


class UserQuerySet(models.QuerySet):
    """Report the bulk writes that Django performs without save or delete signals."""

    def update(self, **kwargs):
        with transaction.atomic(using=self.db):
            count = super().update(**kwargs)
            if count:
                users_changed.send(sender=self.model)
        return count

    def bulk_create(self, objs, *args, **kwargs):
        with transaction.atomic(using=self.db):
            created = super().bulk_create(objs, *args, **kwargs)
            if created:
                users_changed.send(sender=self.model)
        return created


def validate_encodable(value: str) -> None:
    """
    Refuse text that cannot be stored: lone surrogates have no UTF-8 encoding.

    JSON can carry them ("\\ud800"); without this check the database driver
    would fail the write with an encoding error instead of a field error.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Enter text without unpaired surrogate characters.") from None


# NUL characters: PostgreSQL refuses them in text, SQLite cuts C strings at them.
TEXT_VALIDATORS = [ProhibitNullCharactersValidator(), validate_encodable]


class User(models.Model):
    """
    A person in the live directory.

    Not a login account: the admin's accounts are ``django.contrib.auth``'s.
    """

    name = models.CharField(max_length=150, validators=TEXT_VALIDATORS)
    email = models.EmailField(blank=True, validators=TEXT_VALIDATORS)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            # The database's guard for the race that clean() cannot see.
            models.UniqueConstraint(
                Lower("email"),
                condition=~Q(email=""),
                name="users_user_email_ci_unique",
                violation_error_message="A user with this email already exists.",
            ),
            models.CheckConstraint(
                condition=~Q(name=""),
                name="users_user_name_not_blank",
                violation_error_message="A user needs a name.",
            ),
        ]

    def __str__(self):
        return self.name

    def clean_fields(self, exclude=None):
        # Trim first, so that "  " counts as blank and " a@b.org " as valid.
        self.name, self.email = self.name.strip(), self.email.strip()
        super().clean_fields(exclude=exclude)

    def clean(self):
        # Checked here rather than left to the constraint so the error names the field.
        duplicates = User.objects.exclude(pk=self.pk).filter(email__iexact=self.email)
        if self.email and duplicates.exists():
            raise ValidationError(
                {"email": "A user with this email already exists."}, code="unique"
            )


class UserListVersion(models.Model):
    """
    The version of the users list: one row, bumped by every change to users.

    Writers bump it inside their transaction, so its value orders snapshots by
    commit, across every server process.
    """

    number = models.BigIntegerField(default=0)

    def __str__(self):
        return f"users list version {self.number}"
