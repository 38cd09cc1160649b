"""
Protocol v2 against real server processes: every frame, resume, idempotent writes.

Every v2 client here is a ChangesWatcher: it holds the list it rebuilt from
its own frames alone, and fails on a change set that does not start at the
version it holds.
"""

import asyncio
import itertools
import json
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.e2e.clients import (
    V2_SUBPROTOCOL,
    ChangesWatcher,
    ListWatcher,
    admin_create_returning_id,
    admin_delete,
    admin_session,
    admin_update,
    database_list,
    manage,
    manage_shell,
    next_list,
    rest_create,
    unique_name,
)
from tests.e2e.conftest import ADMIN_USERNAME, Launcher, needs_redis

MAX_FRAME_LENGTH = 65536  # the servers' default USERS_MAX_FRAME_LENGTH
UNKNOWN_ID = "999999999999"


def named(users: list, name: str) -> list:
    return [user for user in users if user["name"] == name]


async def first_frames(server, query: str) -> list[dict]:
    """Connect with ``query`` on the URL; return the frames up to the first list (inclusive)."""
    async with connect(server.ws_url + query, subprotocols=[V2_SUBPROTOCOL]) as ws:
        frames = []
        while not frames or frames[-1]["type"] == "error":
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
    return frames


# -- every frame -----------------------------------------------------------------


async def test_every_v2_frame_type_on_a_live_server_beside_unchanged_v1_clients(server):
    # Where a change set would be as long as the list, the server may send the
    # list instead: users enough that each change set here is shorter.
    for _ in range(2):
        await rest_create(server, unique_name("bystander"))
    bare_v1 = await connect(server.ws_url)
    named_v1 = await connect(server.ws_url, subprotocols=["users.v1"])
    assert (bare_v1.subprotocol, named_v1.subprotocol) == (None, "users.v1")
    v1 = [ListWatcher(bare_v1), ListWatcher(named_v1)]
    writer, reader = await ChangesWatcher.open(server), await ChangesWatcher.open(server)

    current = await database_list(server)
    snapshot = await reader.first_frame()
    epoch, version = snapshot["epoch"], snapshot["version"]
    assert snapshot == {"type": "snapshot", "epoch": epoch, "version": version, "users": current}
    assert (type(epoch), type(version)) == (str, int)
    assert epoch
    assert await writer.first_frame() == snapshot
    await ListWatcher.all_end_on(v1, current)

    async def changes_seen_by_all(frames_before: int) -> dict:
        """Wait until every client holds the database's list; return the reader's new frame."""
        # A v1 __addUser__ has no answer: its change set tells that it committed.
        await reader.wait_until(lambda: len(reader.frames) > frames_before, what="a change set")
        now = await database_list(server)
        await ChangesWatcher.all_hold([writer, reader], now)
        for watcher in v1:
            await watcher.wait_for(now)
        (frame,) = reader.frames[frames_before:]  # one change: one change set
        return frame

    # create, with a request id: an ack to the writer alone, a change set to both
    name, seen = unique_name("v2 create"), len(reader.frames)
    request_id = await writer.send("create", name=name, email="")
    ack = await writer.answer(request_id)
    user = {"id": ack["user"]["id"], "name": name, "email": ""}
    assert ack == {"type": "ack", "request_id": request_id, "user": user, "version": version + 1}
    assert await changes_seen_by_all(seen) == {
        "type": "changes", "epoch": epoch, "from": version, "version": version + 1,
        "upserted": [user], "deleted": [],
    }  # fmt: skip
    assert reader.answers == {}

    # update, with and without a request id
    seen, email = len(reader.frames), f"{uuid.uuid4().hex[:8]}@example.org"
    ack = await writer.command("update", id=user["id"], email=email)
    user = {**user, "email": email}
    assert ack["user"] == user
    assert (await changes_seen_by_all(seen))["upserted"] == [user]
    seen, renamed = len(reader.frames), unique_name("v2 update")
    await writer.send("update", request_id=None, id=user["id"], name=renamed)
    user = {**user, "name": renamed}
    answer = await writer.answer(None)
    frame = await changes_seen_by_all(seen)
    assert answer == {"type": "ack", "request_id": None, "user": user, "version": frame["version"]}
    assert frame["upserted"] == [user]

    # every error frame that needs no special server; none of them writes
    seen, held = len(reader.frames), reader.version
    errors = {
        "invalid_json": "{not json",
        "unsupported_frame": b"\x00binary",
        "too_large": " " * (MAX_FRAME_LENGTH + 1),
        "unknown_action (v1's command)": "__addUser__",
        "unknown_action (not an object)": '["create"]',
    }
    for expected, frame in errors.items():
        error = await writer.reply_to(frame)
        assert error["code"] == expected.split()[0], (expected, error)
        assert "request_id" not in error
    commands = {
        "unknown_action": {"action": "rename", "id": user["id"]},
        "invalid": {"action": "create", "name": "  "},
        "not_found": {"action": "update", "id": UNKNOWN_ID, "name": "x"},
        "invalid (id)": {"action": "delete", "id": "one"},
        "request_id_reused": {"action": "delete", "id": user["id"]},
    }
    for expected, command in commands.items():
        reused = expected == "request_id_reused"
        sent_id = await writer.send(**command, request_id=request_id if reused else "new")
        error = await writer.answer(sent_id)
        assert error["type"] == "error", error
        assert (error["code"], error["request_id"]) == (expected.split()[0], sent_id), expected
        assert error["message"]
        if expected.startswith("invalid"):
            assert error["errors"].keys() == {"id" if "(id)" in expected else "name"}, error
    long_id = json.dumps({"action": "create", "name": unique_name("x"), "request_id": "x" * 65})
    error = await writer.reply_to(long_id)
    assert (error["code"], "request_id" in error) == ("invalid", False), error
    assert reader.frames[seen:] == []
    assert await database_list(server) == reader.held()

    # delete; then a v1 client's __addUser__ reaches v2 clients as a change set
    ack = await writer.command("delete", id=user["id"])
    assert ack == {
        "type": "ack", "request_id": ack["request_id"], "deleted": user["id"], "version": held + 1
    }  # fmt: skip
    frame = await changes_seen_by_all(seen)
    assert (frame["from"], frame["version"]) == (held, held + 1)
    assert (frame["upserted"], frame["deleted"]) == ([], [user["id"]])
    seen = len(reader.frames)
    await bare_v1.send("__addUser__")
    assert len((await changes_seen_by_all(seen))["upserted"]) == 1

    # resume: the changes since the version held, none here
    await reader.close()
    resumed = await ChangesWatcher.open(server, resuming=reader)
    assert await resumed.first_frame() == {
        "type": "changes", "epoch": epoch, "from": reader.version, "version": reader.version,
        "upserted": [], "deleted": [],
    }  # fmt: skip
    for client in (writer, resumed):
        await client.close()
    for ws in (bare_v1, named_v1):
        await ws.close()


# -- commands at the edges (each found by the fuzz in test_hostile_frames.py) -------


@pytest.mark.backends
@pytest.mark.parametrize("server", ["uvicorn"], indirect=True)
@pytest.mark.parametrize("edge", ["\ud800", "\x00"], ids=["lone surrogate", "NUL"])
async def test_a_request_id_the_database_cannot_store_gets_an_answer_not_a_dropped_socket(
    server, edge
):
    """JSON carries both; SQLite cannot encode the one, PostgreSQL cannot store the other."""
    client = await ChangesWatcher.open(server)
    await client.first_frame()
    name, request_id = unique_name("edge"), f"{uuid.uuid4().hex}{edge}"
    command = {"action": "create", "name": name, "request_id": request_id}
    answer = await client.reply_to(json.dumps(command))  # a refusal need not echo the id
    assert answer["type"] == "ack" or answer["code"] == "invalid", answer
    written = named(await database_list(server), name)
    assert written == ([answer["user"]] if answer["type"] == "ack" else [])
    assert (await client.command("create", name=unique_name("after")))["type"] == "ack"
    await client.close()


@pytest.mark.parametrize("server", ["uvicorn"], indirect=True)
async def test_an_action_that_is_not_text_gets_unknown_action(server):
    client = await ChangesWatcher.open(server)
    await client.first_frame()
    for action in [[], {}, ["create"], {"create": 1}]:
        frame = json.dumps({"action": action, "name": unique_name("not an action")})
        answer = await client.reply_to(frame)
        assert (answer["type"], answer["code"]) == ("error", "unknown_action"), (action, answer)
    await client.close()


@pytest.mark.parametrize("server", ["uvicorn"], indirect=True)
async def test_a_user_named_by_a_zero_padded_id_is_acked_under_its_id(server):
    """The ack names the user as change sets do: "7", not the "007" that was sent."""
    client = await ChangesWatcher.open(server)
    user = (await client.command("create", name=unique_name("padded")))["user"]
    updated = await client.command("update", id=f"00{user['id']}", name=unique_name("padded"))
    assert updated["user"]["id"] == user["id"]
    deleted = await client.command("delete", id=f"00{user['id']}")
    assert deleted["deleted"] == user["id"]
    await client.wait_until(lambda: user["id"] not in client.users)
    await client.close()


# -- resume ------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["uvicorn"], indirect=True)
async def test_a_client_that_cannot_resume_gets_a_snapshot(server, server_env):
    holder = await ChangesWatcher.open(server)
    epoch, start = (await holder.first_frame())["epoch"], holder.version

    async def resume_answer(query: str) -> list[str]:
        """The types of the first frames; each list in them is the database's."""
        frames = await first_frames(server, query)
        if frames[-1]["type"] == "snapshot":
            assert frames[-1]["users"] == await database_list(server), query
        return [frame["type"] if frame["type"] != "error" else frame["code"] for frame in frames]

    assert await resume_answer(f"?epoch={epoch}&version={start}") == ["changes"]
    assert await resume_answer(f"?epoch=0123456789abcdef&version={start}") == ["snapshot"]
    assert await resume_answer(f"?epoch={epoch}&version={start + 1000}") == ["snapshot"]
    for unparseable in [
        f"?epoch={epoch}&version=ten",
        f"?epoch={epoch}&version=-1",
        f"?epoch={epoch}&version={start}&version={start}",
        f"?version={start}",
        f"?epoch={epoch}",
    ]:
        assert await resume_answer(unparseable) == ["invalid", "snapshot"], unparseable

    # A deletion, then its history forgotten: from before it, only a snapshot will do.
    async with httpx.AsyncClient(base_url=server.url) as http:
        created = (await http.post("/api/v1/users", json={"name": unique_name("gone")})).json()
        await holder.wait_until(lambda: created["id"] in holder.users)
        before_deletion = holder.version
        assert (await http.delete(f"/api/v1/users/{created['id']}")).status_code == 204
    await holder.wait_until(lambda: created["id"] not in holder.users)
    deleted_at = holder.version
    changes = await first_frames(server, f"?epoch={epoch}&version={start}")
    assert changes[0]["type"] == "changes"
    assert created["id"] in changes[0]["deleted"]
    manage_shell(
        server_env, "from users.live.history import forget_expired; forget_expired()",
        USERS_HISTORY_SECONDS="0",
    )  # fmt: skip
    # A process keeps the frames it sent for the newest version (a reconnect
    # storm's resumes cost no read): the next version drops them.
    async with httpx.AsyncClient(base_url=server.url) as http:
        after = (await http.post("/api/v1/users", json={"name": unique_name("after")})).json()
    await holder.wait_until(lambda: after["id"] in holder.users)
    assert await resume_answer(f"?epoch={epoch}&version={start}") == ["snapshot"]
    assert await resume_answer(f"?epoch={epoch}&version={before_deletion}") == ["snapshot"]
    assert await resume_answer(f"?epoch={epoch}&version={deleted_at}") == ["changes"]

    # A new epoch (after a restore): live clients take its snapshot, old versions are void.
    new_epoch = manage(server_env, "newepoch").split()[-1].rstrip(".")
    await holder.wait_until(lambda: holder.epoch == new_epoch, timeout=5, what="the new epoch")
    assert holder.frames[-1]["type"] == "snapshot"
    assert holder.held() == await database_list(server)
    frames = await first_frames(server, f"?epoch={epoch}&version={holder.version}")
    assert [(frame["type"], frame["epoch"]) for frame in frames] == [("snapshot", new_epoch)]
    await holder.close()


async def resume_all(watchers: list[ChangesWatcher], servers) -> list[ChangesWatcher]:
    """Reconnect each watcher to its server, resuming; each must be sent changes."""
    resumed = []
    for watcher, server in zip(watchers, itertools.cycle(servers), strict=False):
        resumed.append(await ChangesWatcher.open(server, resuming=watcher))
        first = await resumed[-1].first_frame()
        assert first["type"] == "changes", first
    return resumed


async def change_everything(server_url: str, users: list) -> None:
    """Create a user, rename ``users[0]`` and delete ``users[1]`` through REST."""
    async with httpx.AsyncClient(base_url=server_url) as http:
        responses = [
            await http.post("/api/v1/users", json={"name": unique_name("while away")}),
            await http.patch(f"/api/v1/users/{users[0]['id']}", json={"name": "renamed"}),
            await http.delete(f"/api/v1/users/{users[1]['id']}"),
        ]
    assert [response.status_code for response in responses] == [201, 200, 204]


@pytest.mark.backends
async def test_after_every_server_process_restarts_clients_resume_with_changes(
    start_server, server_env
):
    servers = [start_server("uvicorn"), start_server("uvicorn")]
    async with httpx.AsyncClient(base_url=servers[0].url) as http:
        for _ in range(3):
            await http.post("/api/v1/users", json={"name": unique_name("before restart")})
    watchers = [await ChangesWatcher.open(server) for server in servers * 2]
    await ChangesWatcher.all_hold(watchers, await database_list(servers[0]))

    for server in servers:
        server.stop()
    for watcher in watchers:
        await watcher.wait_until(lambda watcher=watcher: watcher.task.done(), what="closed")
    # Changes while no server runs: ORM code in a shell.
    ids = [user["id"] for user in watchers[0].held()[-2:]]
    manage_shell(
        server_env,
        f"User.objects.create(name='shell while down'); "
        f"User.objects.filter(pk={ids[0]}).update(name='renamed while down'); "
        f"User.objects.get(pk={ids[1]}).delete()",
    )
    for server in servers:
        server.start()  # on the same port

    resumed = await resume_all(watchers, servers)
    await ChangesWatcher.all_hold(resumed, await database_list(servers[0]))
    await change_everything(servers[1].url, resumed[0].held()[-2:])
    await ChangesWatcher.all_hold(resumed, await database_list(servers[0]))
    for watcher in resumed:
        await watcher.close()


async def test_after_a_redis_restart_clients_catch_up_or_resume_with_changes(
    start_server, own_redis
):
    servers = [start_server("uvicorn", REDIS_URL=own_redis.url) for _ in range(2)]
    async with httpx.AsyncClient(base_url=servers[0].url) as http:
        for _ in range(3):
            await http.post("/api/v1/users", json={"name": unique_name("before outage")})
    live = [await ChangesWatcher.open(server) for server in servers]
    away = await ChangesWatcher.open(servers[1])
    await ChangesWatcher.all_hold([*live, away], await database_list(servers[0]))
    await away.close()

    own_redis.stop()
    await change_everything(servers[0].url, away.held()[-2:])
    own_redis.start()  # empty: every group membership is gone

    current = await database_list(servers[0])
    await ChangesWatcher.all_hold(live, current, timeout=15)
    (resumed,) = await resume_all([away], servers[1:])
    await resumed.wait_for(current)
    await change_everything(servers[1].url, current[-2:])
    await ChangesWatcher.all_hold([*live, resumed], await database_list(servers[0]))
    for watcher in [*live, resumed]:
        await watcher.close()


# -- idempotent writes ----------------------------------------------------------------

SOCKET_BURST = 6  # writes one socket may send at once on the guarded server


@pytest.fixture(scope="module")
def guarded_server(server_env, tmp_path_factory):
    """A server where only accounts write, and a socket gets SOCKET_BURST writes (no refill)."""
    launcher = Launcher(server_env, tmp_path_factory.mktemp("logs"))
    yield launcher(
        "uvicorn",
        USERS_ANONYMOUS_WRITES="false",
        USERS_SOCKET_CREATE_RATE="0.0001",
        USERS_SOCKET_CREATE_BURST=str(SOCKET_BURST),
    )
    launcher.stop_all()


@pytest.fixture(scope="module")
def token(server_env) -> str:
    """The admin's API token (a superuser may write)."""
    return manage(server_env, "apitoken", "create", ADMIN_USERNAME).strip()


@pytest.mark.backends
async def test_a_request_id_sent_twice_on_two_connections_writes_once_with_one_ack(
    guarded_server, token
):
    server = guarded_server
    first = await ChangesWatcher.open(server, token=token)
    second = await ChangesWatcher.open(server, token=token)
    name, request_id = unique_name("once"), uuid.uuid4().hex

    await asyncio.gather(*(c.send("create", request_id, name=name) for c in (first, second)))
    ack = await first.answer(request_id)
    assert ack["type"] == "ack", ack
    assert await second.answer(request_id) == ack
    await first.send("create", request_id, name=name)  # as after a reconnect that lost the ack
    assert await first.answer(request_id) == ack
    current = await database_list(server)
    assert named(current, name) == [ack["user"]]
    await ChangesWatcher.all_hold([first, second], current)

    user_id, renamed = ack["user"]["id"], unique_name("renamed once")
    update_id, delete_id = uuid.uuid4().hex, uuid.uuid4().hex
    # Each sent on both connections at once; the update is answered before the delete goes.
    for client in (first, second):
        await client.send("update", update_id, id=user_id, name=renamed)
    for client in (first, second):
        assert (await client.answer(update_id))["user"] == {**ack["user"], "name": renamed}
    for client in (second, first):
        await client.send("delete", delete_id, id=user_id)
    deletes = [await client.answer(delete_id) for client in (first, second)]
    assert deletes[0] == deletes[1] == {
        "type": "ack", "request_id": delete_id, "deleted": user_id,
        "version": deletes[0]["version"],
    }  # fmt: skip
    reused = await second.answer(await second.send("delete", request_id, id=user_id))
    assert (reused["type"], reused["code"], reused["request_id"]) == (
        "error", "request_id_reused", request_id,
    )  # fmt: skip

    # REST shares the receipts: the same key there gets the socket's first answer.
    async with httpx.AsyncClient(base_url=server.url) as http:
        replay = await http.post(
            "/api/v1/users",
            json={"name": name},
            headers={"Authorization": f"Token {token}", "Idempotency-Key": request_id},
        )
    assert (replay.status_code, replay.json()) == (201, ack["user"])
    current = await database_list(server)
    assert named(current, name) == named(current, renamed) == []
    await ChangesWatcher.all_hold([first, second], current)
    assert first.errors == []
    for client in (first, second):
        await client.close()


async def send_twice(server, token, method, path, *, at_once=False, **kwargs) -> list:
    """Send one request on two connections, one after the other or at once, with one key."""
    headers = {"Authorization": f"Token {token}", "Idempotency-Key": uuid.uuid4().hex}
    async with (
        httpx.AsyncClient(base_url=server.url) as a,
        httpx.AsyncClient(base_url=server.url) as b,
    ):
        if at_once:
            return await asyncio.gather(
                *(http.request(method, path, headers=headers, **kwargs) for http in (a, b))
            )
        return [await http.request(method, path, headers=headers, **kwargs) for http in (a, b)]


async def test_rest_idempotency_key_replays_the_first_answer_on_a_live_server(
    guarded_server, token
):
    server = guarded_server
    watcher = await ChangesWatcher.open(server)

    name = unique_name("rest once")
    created = await send_twice(server, token, "POST", "/api/v1/users", json={"name": name})
    assert [r.status_code for r in created] == [201, 201]
    assert created[0].json() == created[1].json()
    user = created[0].json()
    assert named(await database_list(server), name) == [user]

    path, email, renamed = (
        f"/api/v1/users/{user['id']}",
        f"{uuid.uuid4().hex}@example.org",
        unique_name("put"),
    )
    for method, body in [("PATCH", {"email": email}), ("PUT", {"name": renamed, "email": email})]:
        answers = await send_twice(server, token, method, path, json=body)
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
        assert answers[0].json() == answers[1].json()
        user = answers[0].json()
    assert user == {"id": user["id"], "name": renamed, "email": email}
    deleted = await send_twice(server, token, "DELETE", path)
    assert [r.status_code for r in deleted] == [204, 204]

    authorized = {"Authorization": f"Token {token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=authorized) as http:
        key = deleted[0].request.headers["Idempotency-Key"]
        other = await http.post(
            "/api/v1/users", json={"name": name}, headers={"Idempotency-Key": key}
        )
        assert other.status_code == 422, other.text
        too_long = await http.post(
            "/api/v1/users", json={"name": name}, headers={"Idempotency-Key": "k" * 65}
        )
        assert too_long.status_code == 400, too_long.text
    current = await database_list(server)
    assert named(current, name) == named(current, renamed) == []
    await watcher.wait_for(current)
    await watcher.close()


@pytest.mark.backends
async def test_rest_creates_sent_at_once_with_one_idempotency_key_get_the_one_user_written(
    guarded_server, token
):
    """The request that loses the race is rolled back: it must answer with the winner's user."""
    name = unique_name("rest at once")
    created = await send_twice(
        guarded_server, token, "POST", "/api/v1/users", at_once=True, json={"name": name}
    )
    assert [r.status_code for r in created] == [201, 201]
    written = named(await database_list(guarded_server), name)
    assert len(written) == 1
    assert [r.json() for r in created] == written * 2


async def test_forbidden_and_rate_limited_v2_writes_get_errors_and_write_nothing(
    guarded_server, token
):
    server = guarded_server
    anonymous = await ChangesWatcher.open(server)
    await anonymous.first_frame()
    some_id = (await database_list(server) or [{"id": UNKNOWN_ID}])[0]["id"]
    refused = [
        await anonymous.send("create", name=unique_name("anonymous")),
        await anonymous.send("update", id=some_id, name=unique_name("anonymous")),
        await anonymous.send("delete", id=some_id),
    ]
    for request_id in refused:
        error = await anonymous.answer(request_id)
        assert (error["type"], error["code"]) == ("error", "forbidden"), error
    async with connect(server.ws_url) as v1:
        await next_list(v1)
        await v1.send(json.dumps({"action": "create", "name": unique_name("anonymous v1")}))
        assert json.loads(await asyncio.wait_for(v1.recv(), 5))["code"] == "forbidden"

    writer = await ChangesWatcher.open(server, token=token)
    names = [unique_name(f"burst {k}") for k in range(SOCKET_BURST + 1)]
    sent = [await writer.send("create", name=name) for name in names]
    answers = [await writer.answer(request_id) for request_id in sent]
    assert [answer["type"] for answer in answers] == ["ack"] * SOCKET_BURST + ["error"]
    assert (answers[-1]["code"], answers[-1]["request_id"]) == ("rate_limited", sent[-1])
    current = await database_list(server)
    assert [name for name in names if named(current, name)] == names[:-1]
    await ChangesWatcher.all_hold([anonymous, writer], current)
    for client in (anonymous, writer):
        await client.close()


# -- everything at once, on two processes -----------------------------------------------

V2_CLIENTS = 20
WRITES = 200
SPREAD_SECONDS = 1.0  # the chains of writes start within this time
CREATORS = ["rest", "v2", "v1", "admin"]
EDITORS = ["rest", "v2", "admin"]  # v1 only creates
CHAIN_SHAPES = [
    ["create"],
    ["create", "update"],
    ["create", "update", "delete"],
    ["create", "delete"],
    ["create", "update", "update", "delete"],
]


def write_plan(total: int) -> list[list[tuple[str, str]]]:
    """
    Chains of (action, via) that add up to ``total`` writes: each creates a user
    and may change and delete it, every way there is to write, interleaved.
    """
    creators, editors = itertools.cycle(CREATORS), itertools.cycle(EDITORS)
    chains, count = [], 0
    for shape in itertools.cycle(CHAIN_SHAPES):
        creator = next(creators)
        if creator == "v1":
            shape = ["create"]
        chain = [("create", creator)] + [(action, next(editors)) for action in shape[1:]]
        chains.append(chain[: total - count])
        count += len(chains[-1])
        if count == total:
            return chains


class Writers:
    """Write through REST, a v2 socket, a v1 socket or the admin of one of the servers."""

    def __init__(self, rest, v2, v1, admin):
        self.rest, self.v2, self.v1, self.admin = rest, v2, v1, admin

    async def create(self, via: str, name: str) -> str | None:
        """Create a user; return its id (None through v1, which is not told it)."""
        if via == "rest":
            response = await self.rest.post("/api/v1/users", json={"name": name})
            assert response.status_code == 201, response.text
            return response.json()["id"]
        if via == "v2":
            return (await self.v2.command("create", name=name))["user"]["id"]
        if via == "v1":
            await self.v1.send(json.dumps({"action": "create", "name": name}))
            return None
        return await admin_create_returning_id(self.admin, name)

    async def update(self, via: str, user_id: str, name: str, email: str) -> None:
        if via == "rest":
            response = await self.rest.put(
                f"/api/v1/users/{user_id}", json={"name": name, "email": email}
            )
            assert response.status_code == 200, response.text
        elif via == "v2":
            await self.v2.command("update", id=user_id, name=name, email=email)
        else:
            await admin_update(self.admin, user_id, name, email)

    async def delete(self, via: str, user_id: str) -> None:
        if via == "rest":
            response = await self.rest.delete(f"/api/v1/users/{user_id}")
            assert response.status_code == 204, response.text
        elif via == "v2":
            await self.v2.command("delete", id=user_id)
        else:
            await admin_delete(self.admin, user_id)


async def run_chain(writers: Writers, chain, expected: dict, v1_names: list) -> None:
    """Run one chain of writes in order; record what the list must hold after it."""
    name = unique_name("all")
    user_id = await writers.create(chain[0][1], name)
    if user_id is None:
        v1_names.append(name)
        return
    expected[user_id] = {"id": user_id, "name": name, "email": ""}
    for action, via in chain[1:]:
        if action == "update":
            name, email = unique_name("all updated"), f"{uuid.uuid4().hex[:12]}@example.org"
            await writers.update(via, user_id, name, email)
            expected[user_id] = {"id": user_id, "name": name, "email": email}
        else:
            await writers.delete(via, user_id)
            del expected[user_id]


@needs_redis
@pytest.mark.backends
async def test_200_concurrent_writes_of_every_kind_leave_every_v2_client_on_the_database_list(
    start_server,
):
    servers = [start_server("uvicorn") for _ in range(2)]  # without write limits
    watchers = [await ChangesWatcher.open(servers[k % 2]) for k in range(V2_CLIENTS)]
    v1_sockets = [await connect(server.ws_url, max_size=None) for server in servers]
    v1_watchers = [ListWatcher(ws) for ws in v1_sockets]
    initial = await database_list(servers[0])
    await ChangesWatcher.all_hold(watchers, initial)

    fresh_connections = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    rests = [
        httpx.AsyncClient(base_url=server.url, limits=fresh_connections, timeout=30)
        for server in servers
    ]
    async with admin_session(servers[0]) as admin_a, admin_session(servers[1]) as admin_b:
        writers = [
            Writers(rests[k], watchers[k], v1_sockets[k], admin)
            for k, admin in enumerate([admin_a, admin_b])
        ]
        chains = write_plan(WRITES)
        expected, v1_names = {user["id"]: user for user in initial}, []
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def start(k: int, chain) -> None:
            await asyncio.sleep(started + k * SPREAD_SECONDS / len(chains) - loop.time())
            await run_chain(writers[k % 2], chain, expected, v1_names)

        await asyncio.gather(*(start(k, chain) for k, chain in enumerate(chains)))
    for http in rests:
        await http.aclose()
    print(f"{WRITES} writes in {len(chains)} chains done in {loop.time() - started:.2f} s")

    async with asyncio.timeout(20):
        while len(final := await database_list(servers[1])) < len(expected) + len(v1_names):
            await asyncio.sleep(0.1)
    assert [user for user in final if user["id"] in expected] == sorted(
        expected.values(), key=lambda user: int(user["id"])
    )
    assert sorted(user["name"] for user in final if user["id"] not in expected) == sorted(v1_names)
    await ChangesWatcher.all_hold(watchers, final, timeout=30)
    for watcher in v1_watchers:
        await watcher.wait_for(final, timeout=30)
    print(f"every client held the final list {loop.time() - started:.2f} s after the first write")
    frames = [len(watcher.frames) for watcher in watchers]
    snapshots = sum(frame["type"] == "snapshot" for w in watchers for frame in w.frames)
    print(f"v2 clients got {min(frames)} to {max(frames)} frames, {snapshots} snapshots in all")
    assert [watcher.errors for watcher in watchers] == [[]] * V2_CLIENTS
    for watcher in watchers:
        await watcher.close()
    for ws in v1_sockets:
        await ws.close()
