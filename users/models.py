"""The directory of users that the live list shows, and the history of its changes."""

import json
import secrets

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.models import F, Q, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower
from django.utils import timezone

from .queries import SortName
from .signals import users_changed


class UserQuerySet(models.QuerySet):
    """Write through ``change_users``, the bulk writes too (Django sends them no signals)."""

    def update(self, **kwargs):
        # Rows that already hold the new values would change nothing: leave them out.
        rows = self if _any_expression(kwargs) else self.exclude(**kwargs)

        def write(ids: list[int], version: int) -> int:
            return models.QuerySet.update(self._locked(ids), version=version, **kwargs)

        return change_users(rows, write) or 0

    def delete(self):
        count, _ = self.delete_versioned()
        return count, ({self.model._meta.label: count} if count else {})

    delete.alters_data = True
    delete.queryset_only = True

    def delete_versioned(self) -> tuple[int, int | None]:
        """Delete these users: return how many, and the version without them (None: none)."""

        def write(ids: list[int], version: int) -> tuple[int, int]:
            rows = self._locked(ids)
            # Set-based: a tombstone instance per user cost seconds per 100,000.
            tombstones = rows.values_list(
                "pk", Value(version), Value(timezone.now(), output_field=models.DateTimeField())
            )
            select, params = tombstones.query.sql_with_params()
            table = UserTombstone._meta.db_table
            with connections[self.db].cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {table} (user_id, version, deleted_at) {select}", params
                )
            count, _ = models.QuerySet.delete(rows)
            return count, version

        return change_users(self, write) or (0, None)

    delete_versioned.alters_data = True
    delete_versioned.queryset_only = True

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        if not objs:
            return objs

        def write(ids: list[int], version: int) -> list:
            for user in objs:
                user.version = version
            return super(UserQuerySet, self).bulk_create(objs, *args, **kwargs)

        return change_users(None, write, using=self.db)

    def _locked(self, ids: list[int]) -> models.QuerySet:
        """
        The users ``ids``, locked already, as a plain QuerySet (Django's own writes).

        Named by id, not by this QuerySet's filter: rows another writer locked
        since must not be waited for (users.models.change_users). The ids go as
        one parameter however many they are.
        """
        if connections[self.db].vendor == "postgresql":
            ids_sql = RawSQL("SELECT unnest(%s::bigint[])", (ids,))
        else:  # SQLite's JSON functions, which Django's JSONField needs too
            ids_sql = RawSQL("SELECT value FROM json_each(%s)", (json.dumps(ids),))
        return models.QuerySet(self.model, using=self.db).filter(pk__in=ids_sql)


def _any_expression(values: dict) -> bool:
    return any(hasattr(value, "resolve_expression") for value in values.values())


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
        indexes = [
            # The name orders of live queries (users.queries); the searches'
            # trigram indexes are PostgreSQL's alone (migration 0006).
            models.Index(SortName("name"), F("id"), name="users_user_sort_name"),
        ]
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
        # A user that was loaded is updated, never inserted again: Django would
        # fall back to an INSERT if another writer had deleted it meanwhile.
        rows = None if self._state.adding else User.objects.filter(pk=self.pk)

        def write(ids: list[int], version: int) -> bool:
            self.version = version
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "version"}
            super(User, self).save(*args, **kwargs)
            return True

        if not change_users(rows, write, using=kwargs.get("using")):
            raise User.DoesNotExist(f"User {self.pk} has been deleted.")

    def delete(self, using=None, keep_parents=False):
        """Delete this user through ``UserQuerySet.delete``, which records its tombstone."""
        count, by_model = User.objects.using(using or self._state.db).filter(pk=self.pk).delete()
        self.pk = None
        return count, by_model

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


MAX_ID = 2**63 - 1  # ids are 64-bit integers on every backend


def parse_user_id(text) -> int | None:
    """
    Return the user id that ``text`` names ("7", or "007"), or None if it names none.

    The one reading of ids from URLs and socket commands: digits only, and
    never ``int()`` of thousands of them (which Python refuses past 4,300).
    """
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()):
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_ID)) or int(digits) > MAX_ID:
        return None
    return int(digits)


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


def change_users(rows: models.QuerySet | None, write, *, using=None):
    """
    Change users in one transaction: the one way every write to users goes.

    Locks are taken in one order by every writer, so that no two can deadlock:
    1. the rows of the users it changes (``rows``; None for a create), in id
       order, with SELECT ... FOR UPDATE;
    2. the list's version row, last (``next_version``), just before
       ``write(ids, version)`` writes the rows and the transaction commits.
    The version row is every writer's lock: taken last, it is held for the
    fewest statements, and its holder waits for nothing (the rows it writes are
    locked already, and only a holder writes user rows), so no cycle can form.
    Row locks in id order cannot form one either. Versions still commit in
    order: the next is handed out only once its holder has committed.

    Returns what ``write`` returns, or None when ``rows`` match nothing: then
    nothing is written and no version is taken. ``users_changed`` tells the
    live list, which publishes after the commit (users.live.publisher).
    """
    # No savepoint of its own: a failed write fails its caller's transaction whole.
    with transaction.atomic(using=using, savepoint=False):
        ids = [] if rows is None else locked_ids(rows)
        if rows is not None and not ids:
            return None
        epoch, version = next_version(using)
        result = write(ids, version)
        users_changed.send(sender=User, epoch=epoch, version=version)
    return result


def locked_ids(rows: models.QuerySet) -> list[int]:
    """Lock the rows of ``rows`` in id order and return their ids."""
    return list(rows.select_for_update().order_by("pk").values_list("pk", flat=True))


def next_version(using=None) -> tuple[str, int]:
    """Count one change to users in the caller's transaction; return its epoch and version."""
    table = UserListVersion._meta.db_table
    with connections[using or DEFAULT_DB_ALIAS].cursor() as cursor:
        # One statement: it takes the row's lock, which the writer keeps until
        # it commits, so versions commit in order.
        cursor.execute(
            f"UPDATE {table} SET number = number + 1 WHERE id = %s RETURNING epoch, number",
            [VERSION_ROW],
        )
        row = cursor.fetchone()
    if row is None:
        raise ImproperlyConfigured("The users list has no version row: run `manage.py migrate`.")
    epoch, number = row
    return epoch, number


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
