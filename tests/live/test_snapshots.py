import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import receive_list, wire
from users import services
from users.live import history, snapshots
from users.models import User, UserListVersion, next_version
from users.sockets.routing import SOCKET_PATH

pytestmark = pytest.mark.django_db


def epoch() -> str:
    return UserListVersion.objects.get().epoch


def test_the_whole_list_carries_the_version_of_its_list():
    assert snapshots.read(everyone=True).v1 == snapshots.Frame(0, "[]")
    ann = services.user_create(name="Änn")
    services.user_create(name="Bob")
    reading = snapshots.read(everyone=True)
    assert reading.v1.version == 2
    assert json.loads(reading.v1.text)[0] == wire(ann)
    assert "Änn" in reading.v1.text, "encoded as UTF-8 text, not \\u escapes"
    assert json.loads(reading.snapshot.text) == {
        "type": "snapshot",
        "epoch": epoch(),
        "version": 2,
        "users": json.loads(reading.v1.text),
    }


def test_a_change_takes_the_next_version_with_one_update_and_nothing_else():
    with CaptureQueriesContext(connection) as queries:
        assert next_version()[1] == 1
    assert len(queries) == 1
    assert queries[0]["sql"].startswith("UPDATE")
    assert snapshots.current_version() == (epoch(), 1)


def test_without_the_version_row_a_write_fails_naming_the_fix_and_writes_nothing():
    UserListVersion.objects.all().delete()
    with pytest.raises(ImproperlyConfigured, match="migrate"):
        services.user_create(name="Ann")
    assert not User.objects.exists()


def changes(since: int) -> dict:
    reading = snapshots.read(everyone=False, resumes=[(epoch(), since)])
    return json.loads(reading.frame_for(epoch(), since).text)


def test_the_changes_since_a_version_hold_what_changed_after_it_and_nothing_before():
    ann = services.user_create(name="Ann")  # version 1
    bob = services.user_create(name="Bob")  # 2
    services.user_update(ann, name="Anna")  # 3
    bob_id = str(bob.pk)
    services.user_delete(bob)  # 4
    cy = services.user_create(name="Cy")  # 5
    assert changes(2) == {
        "type": "changes",
        "epoch": epoch(),
        "from": 2,
        "version": 5,
        "upserted": [wire(ann), wire(cy)],
        "deleted": [bob_id],
    }
    assert changes(4)["upserted"] == [wire(cy)]
    assert changes(4)["deleted"] == []
    assert changes(5) | {"epoch": None} == {
        "type": "changes",
        "epoch": None,
        "from": 5,
        "version": 5,
        "upserted": [],
        "deleted": [],
    }


def test_orm_bulk_writes_take_a_version_too():
    User.objects.bulk_create([User(name="A"), User(name="B")])  # version 1
    User.objects.filter(name="A").update(email="a@example.org")  # 2
    assert [user["name"] for user in changes(1)["upserted"]] == ["A"]
    assert changes(0)["version"] == 2


@pytest.mark.parametrize(
    ("resume", "why"),
    [
        (lambda: ("another epoch", 1), "a version of another epoch"),
        (lambda: (epoch(), 99), "a version newer than the list"),
        (lambda: (None, None), "nothing held"),
    ],
)
def test_a_client_that_cannot_resume_gets_the_snapshot(resume, why):
    services.user_create(name="Ann")
    held = resume()
    reading = snapshots.read(everyone=False, resumes=[held])
    assert json.loads(reading.frame_for(*held).text)["type"] == "snapshot", why


def test_a_version_older_than_the_history_gets_the_snapshot(settings):
    ann = services.user_create(name="Ann")  # version 1
    services.user_delete(ann)  # 2
    services.user_create(name="Bob")  # 3
    settings.USERS_HISTORY_SECONDS = -1  # everything has expired
    history.forget_expired()
    assert UserListVersion.objects.get().history_starts == 2
    assert json.loads(snapshots.read(everyone=True).frame_for(epoch(), 1).text)["type"] == (
        "snapshot"
    )
    assert changes(2)["upserted"][0]["name"] == "Bob"


def test_changes_larger_than_the_list_are_sent_as_the_list():
    users = [services.user_create(name=f"U{i}") for i in range(5)]  # versions 1-5
    last_id = str(users[4].pk)
    for user in users[1:]:
        services.user_delete(user)  # 6-9, leaving one user
    reading = snapshots.read(everyone=True, resumes=[(epoch(), 0)])
    assert json.loads(reading.frame_for(epoch(), 5).text)["type"] == "snapshot"
    assert json.loads(reading.frame_for(epoch(), 8).text)["deleted"] == [last_id]


@pytest.mark.django_db(transaction=True)
async def test_five_hundred_sockets_connecting_at_once_share_a_few_list_reads(connect, monkeypatch):
    await database_sync_to_async(services.user_create)(name="Ann")
    reads = []
    read = snapshots.read

    def counted_read(**kwargs):
        reads.append(1)
        return read(**kwargs)

    monkeypatch.setattr(snapshots, "read", counted_read)
    sockets = await asyncio.gather(*(connect() for _ in range(500)))
    for socket in sockets:
        assert len(await receive_list(socket)) == 1
    print(f"500 connects read the list {len(reads)} times")
    assert len(reads) <= 10


@pytest.mark.django_db(transaction=True)
async def test_sockets_resuming_one_after_another_from_one_version_cost_one_read(
    connect, monkeypatch
):
    await database_sync_to_async(services.user_create)(name="Ann")
    held = await database_sync_to_async(snapshots.current_version)()
    await database_sync_to_async(services.user_create)(name="Bob")
    reads = []
    read = snapshots.read

    def counted_read(**kwargs):
        reads.append(kwargs)
        return read(**kwargs)

    monkeypatch.setattr(snapshots, "read", counted_read)
    resume = f"?epoch={held[0]}&version={held[1]}"
    for _ in range(5):  # each after the last has its frame: a refresh each
        socket = await connect(f"{SOCKET_PATH}{resume}", subprotocols=["users.v2"])
        frame = json.loads(await socket.receive_from())
        assert (frame["type"], frame["from"], [u["name"] for u in frame["upserted"]]) == (
            "changes",
            held[1],
            ["Bob"],
        )
    assert len(reads) == 1, reads


def test_a_deleted_id_that_a_user_holds_again_is_only_upserted():
    ann = services.user_create(name="Ann")  # version 1
    services.user_delete(ann)  # 2
    again = User.objects.create(id=ann.pk, name="Ann again")  # 3: ORM code naming the id
    frame = changes(1)
    assert (frame["upserted"], frame["deleted"]) == ([wire(again)], [])


# What v1's clients were sent before the frames were encoded with orjson.
def stdlib_dump(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


TRICKY_NAMES = [
    'Zoë "Q" \\ Ünal',
    "山田 太郎 😀",
    "tab\tnew\nline\r\x08\x0c",
    "\x01\x1f\x7f",
    "\u2028\u2029",
]


def test_v1_lists_are_the_bytes_the_standard_library_encoded():
    for name in TRICKY_NAMES:
        User.objects.create(name=name, email=f"{len(name)}@example.org")
    services.user_create(name="Ann")
    reading = snapshots.read(everyone=True)
    assert reading.v1.text == stdlib_dump([wire(user) for user in User.objects.order_by("id")])
    assert reading.snapshot.text == stdlib_dump(
        {"type": "snapshot", "epoch": epoch(), "version": 6, "users": json.loads(reading.v1.text)}
    )


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.text(st.characters(exclude_categories=["Cs"])),
        lambda inner: (
            st.lists(inner)
            | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"])), inner)
        ),
        max_leaves=20,
    )
)
def test_every_frame_is_encoded_as_the_standard_library_would(value):
    assert snapshots.dump(value) == stdlib_dump(value)
