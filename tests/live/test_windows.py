"""Live queries on the socket (users.live.windows), through channels' WebsocketCommunicator."""

import json
import random
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from django.test import AsyncClient

from tests.helpers import HeldWindow, amake_account, wire
from users import services
from users.live.windows import IdSet
from users.models import User
from users.queries import Query
from users.sockets.routing import SOCKET_PATH

pytestmark = pytest.mark.django_db(transaction=True)

V2 = ["users.v2"]


async def receive_frame(socket, timeout: float = 5) -> dict:
    return json.loads(await socket.receive_from(timeout=timeout))


@pytest.fixture
def follow(connect):
    async def open_window(**parameters):
        query = urlencode(parameters)
        return await connect(f"{SOCKET_PATH}?{query}", subprotocols=V2)

    return open_window


create = database_sync_to_async(services.user_create)


@database_sync_to_async
def rename(user_id: int, name: str):
    return services.user_update(User.objects.get(pk=user_id), name=name, if_version=None)


@database_sync_to_async
def delete(user_id: int):
    return services.user_delete(User.objects.get(pk=user_id), if_version=None)


@pytest.fixture
async def reader():
    """A logged-in REST client: anonymous reads are throttled, and these are many."""
    client = AsyncClient()
    await client.aforce_login(await amake_account("reader"))
    return client


async def rest_page(reader: AsyncClient, query: Query) -> tuple[list, int]:
    """REST's page of ``query``: what a socket following it must hold."""
    if query.offset:  # REST pages by cursor, not by place: the database's window then
        return await database_window(query)
    answer = await reader.get(
        "/api/v1/users", query.as_parameters() | {"limit": query.limit or 500}
    )
    assert answer.status_code == 200, answer.content
    return answer.json()["users"], answer.json()["total"]


@database_sync_to_async
def database_window(query: Query) -> tuple[list, int]:
    matching = query.apply(User.objects.all())
    users = list(matching)[query.offset : query.offset + query.limit]
    return [wire(user) for user in users], matching.count()


async def settle(socket, held: HeldWindow, reader: AsyncClient) -> None:
    """
    Apply frames until the client holds the database's window of its query.

    A change that moves no window of a query sends its sockets nothing, so
    there is no version to wait for; a frame that comes later must still apply
    (``Held.apply`` checks its ``from``), and the next comparison sees it.
    """
    want = await rest_page(reader, held.query)
    while (held.window(), held.total) != want:
        held.apply(await receive_frame(socket))


async def test_the_first_frame_is_the_window_with_the_total(follow):
    for name in ["bob", "Ada", "ada", "Cy", "adam"]:
        await create(name=name)
    socket = await follow(search="AD", order="name", limit=2)
    frame = await receive_frame(socket)
    assert frame["type"] == "snapshot"
    assert [user["name"] for user in frame["users"]] == ["Ada", "ada"]
    assert frame["total"] == 3


async def test_a_window_follows_creates_renames_and_deletes(follow, reader):
    ann = await create(name="Ann")
    await create(name="Bea")
    query = Query(search="", order="-name", limit=2)
    socket = await follow(order="-name", limit=2)
    held = HeldWindow(query)
    held.apply(await receive_frame(socket))
    assert [user["name"] for user in held.window()] == ["Bea", "Ann"]
    zed = await create(name="Zed")  # enters at the top, pushes Ann out
    frame = await receive_frame(socket)
    assert frame["upserted"] == [wire(zed)]
    assert frame["deleted"] == [str(ann.pk)]
    held.apply(frame)
    await delete(zed.pk)  # Ann comes back in
    held.apply(await receive_frame(socket))
    assert held.window() == (await rest_page(reader, query))[0]
    assert held.total == 2


async def test_a_change_outside_the_window_sends_nothing(follow):
    for name in ["a1", "a2", "a3"]:
        await create(name=name)
    socket = await follow(search="a", limit=2)
    held = HeldWindow(Query(search="a", limit=2))
    held.apply(await receive_frame(socket))
    await create(name="xyz")  # no window, same total: nothing
    await create(name="b4")
    last = await create(name="a5")  # outside the window, but the total moves
    frame = await receive_frame(socket)
    # The first frame after the snapshot is the one for the last write.
    assert (frame["from"], frame["version"]) == (held.version, last.version)
    assert frame["upserted"] == []
    assert frame["deleted"] == []
    assert frame["total"] == 4


async def test_the_query_action_answers_an_ack_then_the_new_window(follow):
    await create(name="Ann")
    bob = await create(name="Bob")
    socket = await follow()  # the whole list, as before: no total
    assert "total" not in await receive_frame(socket)
    await socket.send_json_to({"action": "query", "search": "bo", "request_id": "q1"})
    ack = await receive_frame(socket)
    assert ack == {
        "type": "ack",
        "request_id": "q1",
        "query": {"search": "bo", "order": "id", "limit": None, "offset": 0},
    }
    snapshot = await receive_frame(socket)
    assert snapshot["type"] == "snapshot"
    assert snapshot["users"] == [wire(bob)]


@pytest.mark.parametrize(
    "parameters",
    [{"order": "email"}, {"limit": "0"}, {"limit": "501"}, {"limit": "x"}, {"offset": "3"}],
)
async def test_an_invalid_query_gets_an_error_and_no_list(follow, parameters):
    await create(name="Ann")
    socket = await follow(**parameters)
    frame = await receive_frame(socket)
    assert (frame["type"], frame["code"]) == ("error", "invalid_query"), frame
    # Nothing else until a valid query: its ack is the very next frame.
    await socket.send_json_to({"action": "query", "limit": 1, "request_id": "ok"})
    assert (await receive_frame(socket))["type"] == "ack"
    assert (await receive_frame(socket))["users"][0]["name"] == "Ann"


async def test_an_invalid_query_action_keeps_the_window(follow):
    ann = await create(name="Ann")
    socket = await follow(limit=5)
    await receive_frame(socket)
    await socket.send_json_to({"action": "query", "order": "age", "request_id": "bad"})
    error = await receive_frame(socket)
    assert (error["code"], error["request_id"]) == ("invalid_query", "bad")
    await rename(ann.pk, "Anne")
    frame = await receive_frame(socket)
    assert frame["type"] == "changes"
    assert frame["upserted"][0]["name"] == "Anne"


async def test_a_resume_sends_only_what_changed_in_the_window(follow, reader):
    users = [await create(name=f"user {number:02}") for number in range(6)]
    socket = await follow(order="name", limit=3)
    held = HeldWindow(Query(order="name", limit=3))
    held.apply(await receive_frame(socket))
    await socket.disconnect()
    await rename(users[4].pk, "user 00b")  # enters at place 2, pushes user 02 out
    parameters = {"order": "name", "limit": 3, "epoch": held.epoch, "version": held.version}
    socket = await follow(**parameters)
    frame = await receive_frame(socket)
    assert frame["type"] == "changes"
    assert frame["from"] == held.version
    assert str(users[2].pk) in frame["deleted"]
    held.apply(frame)
    assert held.window() == (await rest_page(reader, held.query))[0]


QUERIES = [
    Query(order=order, search=search, limit=limit, offset=offset)
    for order in ["id", "-id", "name", "-name"]
    for search, limit, offset in [("", 4, 0), ("a", 3, 0), ("", None, 0), ("b", 3, 2)]
]


NAMES = ["ann", "Bob", "bea", "Abe", "cab", "Dan", "ada", "bAb", "é", "É", "a", "B"]


async def random_change(generator: random.Random, alive: list) -> None:
    """Create, rename or delete a user at random; ``alive`` holds the ids of those that exist."""
    choice = generator.random()
    if choice < 0.4 or not alive:
        alive.append((await create(name=generator.choice(NAMES))).pk)
    elif choice < 0.75:
        await rename(generator.choice(alive), generator.choice(NAMES))
    else:
        user_id = generator.choice(alive)
        alive.remove(user_id)
        await delete(user_id)


async def follow_every_query(follow) -> list[list]:
    """A client on each of QUERIES, holding its first frame: [socket, HeldWindow] each."""
    clients = []
    for query in QUERIES:
        held = HeldWindow(query)
        socket = await follow(**query.as_parameters())
        held.apply(await receive_frame(socket))
        clients.append([socket, held])
    return clients


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_changes_keep_every_window_exact(follow, reader, seed):
    """After every change settles, each window equals the database's page of its query."""
    generator = random.Random(seed)
    alive = [(await create(name=generator.choice(NAMES))).pk for _ in range(8)]
    sockets = await follow_every_query(follow)
    resumed = None
    for step in range(30):
        await random_change(generator, alive)
        if step == 10:  # one client leaves; it resumes after more changes
            resumed = sockets.pop(generator.randrange(len(sockets)))
            await resumed[0].disconnect()
        for socket, held in sockets:
            await settle(socket, held, reader)
    socket, held = resumed
    parameters = {**held.query.as_parameters(), "epoch": held.epoch, "version": held.version}
    socket = await follow(**parameters)
    frame = await receive_frame(socket)
    held.apply(frame)
    assert (held.window(), held.total) == await rest_page(reader, held.query), frame


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_resumes_after_random_changes_give_every_window_exact(follow, reader, seed):
    """
    Clients resume from a version another process could have sent them: the
    server knows nothing of their windows but the query and the version.
    """
    generator = random.Random(seed)
    alive = [(await create(name=generator.choice(NAMES))).pk for _ in range(10)]
    clients = await follow_every_query(follow)
    for _ in range(4):
        for client in clients:
            await client[0].disconnect()
        for _ in range(generator.randint(1, 4)):
            await random_change(generator, alive)
        for client in clients:
            held = client[1]
            resume = {"epoch": held.epoch, "version": held.version}
            client[0] = await follow(**held.query.as_parameters(), **resume)
            frame = await receive_frame(client[0])
            held.apply(frame)
            assert (held.window(), held.total) == await rest_page(reader, held.query), (
                held.query,
                frame,
            )


def test_an_id_set_answers_as_a_python_set_does():
    generator = random.Random(7)
    ids, expected = IdSet([]), set()
    for _ in range(2000):
        user_id = generator.randrange(200)
        if generator.random() < 0.5:
            ids.add(user_id)
            expected.add(user_id)
        else:
            ids.discard(user_id)
            expected.discard(user_id)
        assert len(ids) == len(expected)
    assert [user_id in ids for user_id in range(-1, 201)] == [
        user_id in expected for user_id in range(-1, 201)
    ]
    assert list(ids.ids) == sorted(expected)
