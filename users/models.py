"""The directory of users that the live list shows, and the history of its changes."""

import secrets

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.db import connection, models, transaction
from django.db.models import Q
from django.db.models.functions import Lower

from .signals import users_changed


class UserQuerySet(models.QuerySet):
    """Report the bulk writes that Django performs without save or delete signals."""

    def update(self, **kwargs):
        with transaction.atomic(using=self.db):
            count = super().update(version=next_version(), **kwargs)
            if count:
                users_changed.send(sender=self.model)
        return count

    def bulk_create(self, objs, *args, **kwargs):
        with transaction.atomic(using=self.db):
            objs, version = list(objs), next_version()
            for user in objs:
                user.version = version
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
    # The list's version at this user's last change: "what changed since
    # version V" is then an indexed query (users.changes).
    version = models.BigIntegerField(default=0, db_index=True, editable=False)

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

    def save(self, *args, **kwargs):
        # The version and the row commit together, or a reader could see the
        # version without the row and never be sent it.
        with transaction.atomic(using=kwargs.get("using")):
            self.version = next_version()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "version"}
            super().save(*args, **kwargs)

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


def new_epoch() -> str:
    return secrets.token_hex(8)


class UserListVersion(models.Model):
    """
    The version of the users list: one row, bumped by every change to users.

    Writers bump it inside their transaction, so its value orders changes by
    commit, across every server process. ``epoch`` names the sequence the
    numbers belong to: a client's version means nothing under another epoch
    (a new database, a restore from a backup: ``manage.py newepoch``).
    ``history_starts`` is the oldest version from which every change is still
    known: deletions before it have been forgotten (users.changes).
    """

    number = models.BigIntegerField(default=0)
    epoch = models.CharField(max_length=32, default=new_epoch)
    history_starts = models.BigIntegerField(default=0)

    def __str__(self):
        return f"users list version {self.number} of epoch {self.epoch}"


VERSION_ROW = 1  # UserListVersion's one row, created by migration 0003


def next_version() -> int:
    """Count one change to users in the caller's transaction and return its version."""
    table = UserListVersion._meta.db_table
    with connection.cursor() as cursor:
        # One statement: it takes the row's lock, which the writer keeps until
        # it commits, so versions commit in order.
        cursor.execute(
            f"UPDATE {table} SET number = number + 1 WHERE id = %s RETURNING number",
            [VERSION_ROW],
        )
        row = cursor.fetchone()
    if row is None:
        raise ImproperlyConfigured("The users list has no version row: run `manage.py migrate`.")
    return row[0]


class UserTombstone(models.Model):
    """A deleted user, kept USERS_HISTORY_SECONDS so that resuming clients learn of it."""

    user_id = models.BigIntegerField()
    version = models.BigIntegerField(db_index=True)
    deleted_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self):
        return f"user {self.user_id} deleted at version {self.version}"


class CommandReceipt(models.Model):
    """
    The answer to a write that carried a request id, kept USERS_HISTORY_SECONDS.

    The same request id from the same requester gets this answer again instead
    of a second write: a client that lost an acknowledgement can retry safely.
    """

    requester = models.CharField(max_length=80)  # "user:<pk>", or "anonymous"
    request_id = models.CharField(max_length=64)
    action = models.CharField(max_length=10)
    target = models.CharField(max_length=20, blank=True)  # the user id it acted on, if given
    fields = models.JSONField(default=dict)  # the fields it sent: a reuse with others is refused
    result = models.JSONField()  # {"user": <user>} or {"deleted": "<id>"}
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["requester", "request_id"], name="users_receipt_once_per_requester"
            )
        ]

    def __str__(self):
        return f"{self.action} {self.request_id} by {self.requester}"
