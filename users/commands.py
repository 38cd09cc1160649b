"""
Writes that clients send over the socket, and the request ids that make them idempotent.

A write that carries a request id leaves a receipt in its own transaction
(users.models.CommandReceipt): the same id from the same requester within
USERS_HISTORY_SECONDS gets the first answer again and writes nothing, so a
client that lost an acknowledgement (a dropped connection) can simply retry.
REST's ``Idempotency-Key`` header shares the receipts (users.api.views).
"""

import logging
from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from rest_framework.exceptions import NotFound, ValidationError

from . import services
from .models import MAX_ID, TEXT_VALIDATORS, CommandReceipt, User, parse_user_id
from .outages import DATABASE_UNREACHABLE, cause
from .permissions import has_write_permission
from .serializers import UserSerializer

MAX_REQUEST_ID_LENGTH = 64

logger = logging.getLogger(__name__)


class CommandError(Exception):
    """A command that was refused: its error frame's code, message and field errors."""

    def __init__(self, code: str, message: str, errors: dict | None = None):
        super().__init__(message)
        self.code, self.message, self.errors = code, message, errors


def in_one_transaction(command: Callable, *args):
    """
    Run ``command(*args)`` in one transaction; return its result.

    A database failure becomes the CommandError that tells the client what
    became of the write: ``unavailable`` before the commit (nothing was
    written), ``outcome_unknown`` at the commit (written or not: a resend
    with the same request id is answered from its receipt if it was).
    """
    committing = False
    try:
        with transaction.atomic():
            result = command(*args)
            committing = True
    except DATABASE_UNREACHABLE as exc:
        logger.warning("A socket command met a database failure: %s", cause(exc))
        if committing:
            raise CommandError(
                "outcome_unknown",
                "The database failed while committing; the change may or may not be stored. "
                "Send the command again with the same request_id.",
            ) from None
        raise CommandError(
            "unavailable", "The database is unavailable; nothing was changed. Send it again."
        ) from None
    return result


def requester_key(account, anonymous_client: str | None) -> str:
    """
    Whose request ids these are: an account's, or one anonymous client's.

    Anonymous writers have no account to scope them: each socket names its
    client (users.sockets.consumers), so that two clients picking the same id never
    get each other's answer.
    """
    if account.is_authenticated:
        return f"user:{account.pk}"
    if anonymous_client is None:
        raise ValueError("An anonymous writer's request ids need a client to scope them.")
    return f"anonymous:{anonymous_client}"


def is_request_id(value) -> bool:
    """Whether ``value`` can be a request id: text of 1 to 64 characters that can be stored."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_REQUEST_ID_LENGTH:
        return False
    try:
        for validate in TEXT_VALIDATORS:
            validate(value)
    except DjangoValidationError:
        return False
    return True


def check_request_id(request_id) -> str | None:
    if request_id is not None and not is_request_id(request_id):
        raise CommandError(
            "invalid",
            f"request_id must be text of 1 to {MAX_REQUEST_ID_LENGTH} characters, "
            "without NUL or unpaired surrogates.",
        )
    return request_id


def idempotent(
    requester: str,
    request_id: str | None,
    action: str,
    target: str,
    fields: dict,
    perform: Callable[[], dict],
) -> tuple[dict, bool]:
    """
    Run ``perform()`` once per ``request_id`` of ``requester``: return its
    result, and whether that is the first run's, replayed.

    The command (``action``, ``target`` and the ``fields`` sent) must be the
    same again for a replay; the id used for another command is refused, as
    Stripe's idempotency keys are, so that a client's bug is not answered with
    a success for a write that never happened. The result (``{"user": ...}``
    or ``{"deleted": ...}``) is stored with the write, in one transaction:
    either both commit or neither.
    """
    if request_id is None:
        return perform(), False
    command = (action, target, fields)
    receipt = _receipt(requester, request_id, command)
    if receipt is not None:
        return receipt, True
    try:
        with transaction.atomic():
            result = perform()
            CommandReceipt.objects.create(
                requester=requester,
                request_id=request_id,
                action=action,
                target=target,
                fields=fields,
                result=result,
            )
    except IntegrityError:
        # The same request on another connection committed first; its write
        # stands and this one was rolled back with the receipt.
        receipt = _receipt(requester, request_id, command)
        if receipt is None:
            raise
        return receipt, True
    return result, False


def _receipt(requester: str, request_id: str, command: tuple) -> dict | None:
    receipt = CommandReceipt.objects.filter(requester=requester, request_id=request_id).first()
    if receipt is None:
        return None
    if (receipt.action, receipt.target, receipt.fields) != command:
        raise CommandError(
            "request_id_reused", "This request_id was already used for a different command."
        )
    return receipt.result


def create_v1(account, data: dict | None) -> dict:
    """Run protocol v1's create (``__addUser__`` when ``data`` is None); CommandError if refused."""
    try:
        return create(account, data)
    except PermissionDenied:
        raise CommandError("forbidden", "Log in as a user allowed to add users.") from None
    except ValidationError as exc:
        raise CommandError("invalid", "The user was not created.", exc.detail) from None


def create(account, data: dict | None) -> dict:
    """Create a user from wire ``data`` (None: a generated one, for ``__addUser__``)."""
    if not has_write_permission(account, "add"):
        raise PermissionDenied
    serializer = UserSerializer(data={"name": services.generated_name()} if data is None else data)
    serializer.is_valid(raise_exception=True)
    return written(serializer.save())


def update(user_id: str, data: dict, if_version: int | None = None) -> dict:
    serializer = UserSerializer(_user(user_id), data=data, partial=True)
    serializer.is_valid(raise_exception=True)
    return written(serializer.save(if_version=if_version))


def delete(user_id: str, if_version: int | None = None) -> dict:
    try:
        version = services.user_delete(_user(user_id), if_version=if_version)
    except User.DoesNotExist:
        raise NotFound from None
    return {"deleted": user_id, "version": version}


def written(user: User) -> dict:
    """An ack's content for a user written: the user, and the list's version that holds it."""
    return {"user": UserSerializer(user).data, "version": user.version}


def _user(user_id: str) -> User:
    try:
        return User.objects.get(pk=user_id)  # as _target spelt it
    except User.DoesNotExist:
        raise NotFound from None


def _target(content: dict) -> str:
    """The user id a command names, as the list spells it ("7", not "007")."""
    user_id = parse_user_id(content.get("id"))
    if user_id is None:
        raise CommandError("invalid", "The user was not changed.", {"id": ["Send a user's id."]})
    return str(user_id)


FIELDS = ("name", "email")
PERMISSION = {"create": "add", "update": "change", "delete": "delete"}


def _if_version(content: dict) -> int | None:
    """The version of the user that an update or delete was written against, if it says."""
    if_version = content.get("if_version")
    if if_version is None or (type(if_version) is int and 0 <= if_version <= MAX_ID):
        return if_version
    errors = {"if_version": ["Send the version of the user you last saw, an integer."]}
    raise CommandError("invalid", "The user was not changed.", errors)


def run(account, anonymous_client: str, content: dict) -> dict:
    """
    Run a v2 command (``create``, ``update`` or ``delete``) for ``account``
    (``anonymous_client`` scopes the request ids of an anonymous one).

    Returns the acknowledgement's content; raises CommandError with the code
    of the error frame to send instead. Runs on the database thread, inside
    ``in_one_transaction``.
    """
    action = content.get("action")
    if not isinstance(action, str) or action not in PERMISSION:
        raise CommandError(
            "unknown_action", 'Send {"action": "create" | "update" | "delete", ...}.'
        )
    # Before any receipt is replayed: an answer is for those who may still write.
    if not has_write_permission(account, PERMISSION[action]):
        raise CommandError("forbidden", f"Log in as a user allowed to {PERMISSION[action]} users.")
    request_id = check_request_id(content.get("request_id"))
    target = "" if action == "create" else _target(content)
    data = {field: content[field] for field in FIELDS if field in content}
    if_version = None if action == "create" else _if_version(content)
    command = data if if_version is None else {**data, "if_version": if_version}

    def perform() -> dict:
        if action == "create":
            return create(account, data)
        if action == "update":
            return update(target, data, if_version)
        return delete(target, if_version)

    requester = requester_key(account, anonymous_client)
    try:
        result, _ = idempotent(requester, request_id, action, target, command, perform)
        return result
    except ValidationError as exc:
        raise CommandError("invalid", "Nothing was changed.", exc.detail) from None
    except NotFound:
        raise CommandError("not_found", f"There is no user {target}.") from None
    except services.UserChangedError as changed:
        raise CommandError(
            "conflict",
            f"User {target} changed since version {if_version} (now {changed.user.version}); "
            "nothing was changed.",
        ) from None
