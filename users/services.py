"""
Writes to users: the one path that REST, the socket and the admin share.

Each write validates with the model's rules and saves through the model, whose
``change_users`` takes the locks in one order and the list's next version
(users.models); a user deleted meanwhile raises User.DoesNotExist.
"""

from django.db import IntegrityError, transaction

from .models import User

FIELDS = ("name", "email")


class UserChangedError(Exception):
    """The user changed since the version its writer last saw; nothing was written."""

    def __init__(self, user: User):
        super().__init__(f"User {user.pk} is at version {user.version} now.")
        self.user = user


def user_save(user: User, **kwargs) -> User:
    """Validate and save ``user`` (``kwargs`` go to ``save``); if invalid, write nothing."""
    # The constraints back up what the fields and clean() check already;
    # validating them again cost more than the insert itself.
    user.full_clean(validate_constraints=False)
    return _save(user, **kwargs)


def _save(user: User, **kwargs) -> User:
    try:
        with transaction.atomic():
            user.save(**kwargs)
    except IntegrityError:
        # On PostgreSQL another writer can commit the same email between the
        # check and the insert; validating again reports it as a field error.
        user.full_clean()
        raise
    return user


def user_create(*, name: str, email: str = "") -> User:
    """Create a user."""
    return user_save(User(name=name, email=email))


def user_update(
    user: User,
    *,
    name: str | None = None,
    email: str | None = None,
    if_version: int | None = None,
) -> User:
    """
    Change the given fields of ``user`` as the database holds it now; return
    ``user``, which then holds what the database holds.

    Fields not given keep what any other writer saved meanwhile, and a change
    to nothing writes nothing and takes no version. With ``if_version``, only
    if the user is still at that version (UserChangedError otherwise).
    """
    given = {"name": name, "email": email}
    given = {field: value for field, value in given.items() if value is not None}
    with transaction.atomic():
        current = _locked(user, if_version)
        before = {field: getattr(current, field) for field in given}
        for field, value in given.items():
            setattr(current, field, value)
        current.full_clean(validate_constraints=False)  # also trims: " Ann " is "Ann"
        changed = [field for field in given if getattr(current, field) != before[field]]
        if changed:
            _save(current, update_fields=changed)
    for field in User._meta.concrete_fields:
        setattr(user, field.attname, getattr(current, field.attname))
    return user


def user_delete(user: User, *, if_version: int | None = None) -> int:
    """
    Delete ``user``; return the list's version without it.

    User.DoesNotExist if another writer has deleted it already; with
    ``if_version``, UserChangedError unless the user is still at that version.
    """
    with transaction.atomic():
        if if_version is not None:
            _locked(user, if_version)
        deleted, version = User.objects.filter(pk=user.pk).delete_versioned()
    if not deleted:
        raise User.DoesNotExist(f"User {user.pk} has been deleted.")
    return version


def _locked(user: User, if_version: int | None) -> User:
    """Lock ``user``'s row and return it as committed, checking it is at ``if_version``."""
    current = User.objects.select_for_update().get(pk=user.pk)
    if if_version is not None and current.version != if_version:
        raise UserChangedError(current)
    return current


def generated_name() -> str:
    """Return a name for a user added without one, as the Dart example's ``__addUser__`` does."""
    return f"User {User.objects.count() + 1}"
