"""
Writes to users: the one path that REST, the socket and the admin share.

Each write validates with the model's rules and saves in a transaction; the
live list is told by the model's signals, so ORM code elsewhere reaches it too.
"""

from django.db import IntegrityError, transaction

from .models import User


def user_save(user: User) -> User:
    """Validate and save ``user``; on ValidationError nothing is written."""
    try:
        with transaction.atomic():
            # The constraints back up what the fields and clean() check already;
            # validating them again cost more than the insert itself.
            user.full_clean(validate_constraints=False)
            user.save()
    except IntegrityError:
        # On PostgreSQL another writer can commit the same email between the
        # check and the insert; validating again reports it as a field error.
        user.full_clean()
        raise
    return user


def user_create(*, name: str, email: str = "") -> User:
    """Create a user."""
    return user_save(User(name=name, email=email))


def user_update(user: User, *, name: str | None = None, email: str | None = None) -> User:
    """Change the given fields of ``user``."""
    if name is not None:
        user.name = name
    if email is not None:
        user.email = email
    return user_save(user)


def user_delete(user: User) -> None:
    """Delete ``user``."""
    user.delete()


def generated_name() -> str:
    """Return a name for a user added without one, as the Dart example's ``__addUser__`` does."""
    return f"User {User.objects.count() + 1}"
