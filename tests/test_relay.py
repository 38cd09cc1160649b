import pytest
from channels.db import database_sync_to_async
from django.db import connection, transaction
from django.db.models import F

from tests.helpers import receive_list, wire
from users import services
from users.models import User, UserListVersion

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def change_without_broadcast(name: str) -> User:
    """Commit a change and its version bump, as a writer whose publish then failed."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO users_user (name, email, created_at, updated_at) "
                "VALUES (%s, '', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                [name],
            )
        UserListVersion.objects.filter(pk=1).update(number=F("number") + 1)
    return User.objects.get(name=name)


async def test_a_list_whose_broadcast_went_missing_still_reaches_the_sockets(connect):
    await database_sync_to_async(services.user_create)(name="Ann")  # the version row exists
    socket = await connect()
    await receive_list(socket)
    lost = await change_without_broadcast("Lost")
    # The relay checks the version every second and resends after a whole check behind.
    received = await receive_list(socket, timeout=5)
    assert wire(lost) in received


async def test_sockets_share_one_relay_and_each_gets_every_list(connect):
    sockets = [await connect() for _ in range(3)]
    for socket in sockets:
        await receive_list(socket)
    ann = await database_sync_to_async(services.user_create)(name="Ann")
    for socket in sockets:
        assert await receive_list(socket) == [wire(ann)]
