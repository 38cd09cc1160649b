import pytest
from frames import EPOCH, changes, snapshot, user
from usersite_client import OutOfSyncError, Query, UserList


def user_list(version: int, *users: dict) -> UserList:
    users_list = UserList()
    users_list.apply(snapshot(version, *users))
    return users_list


def window(version: int, query: Query, *users: dict, total: int) -> UserList:
    users_list = UserList(query)
    users_list.apply(snapshot(version, *users, total=total))
    return users_list


def test_snapshot_gives_the_list_ordered_by_integer_id():
    update = UserList().apply(snapshot(12, user(10), user(9), user(2)))

    assert list(update.users) == ["2", "9", "10"]
    assert update.users.total == 3, "the whole list: every user matches"
    assert update.users["9"] == user(9)
    assert (update.epoch, update.version, update.snapshot) == (EPOCH, 12, True)


def test_changes_add_and_replace_users_by_id_in_id_order():
    users = user_list(12, user(1), user(3))

    update = users.apply(changes(12, 13, upserted=[user(3, "Grace"), user(2)]))

    assert list(update.users) == ["1", "2", "3"]
    assert update.users["3"]["name"] == "Grace"
    assert update.upserted == (user(3, "Grace"), user(2))
    assert (update.version, update.snapshot) == (13, False)
    assert users.version == 13


def test_changes_delete_users():
    users = user_list(12, user(1), user(2))

    update = users.apply(changes(12, 13, deleted=["1"]))

    assert list(update.users) == ["2"]
    assert update.deleted == ("1",)


def test_a_deleted_id_the_list_does_not_hold_is_ignored():
    users = user_list(12, user(1))

    update = users.apply(changes(12, 14, deleted=["2"]))

    assert list(update.users) == ["1"]
    assert update.deleted == ()
    assert update.version == 14


def test_changes_from_another_version_are_refused_and_change_nothing():
    users = user_list(12, user(1))

    with pytest.raises(OutOfSyncError, match="from version 11"):
        users.apply(changes(11, 13, upserted=[user(2)]))

    assert list(users.users) == ["1"]
    assert users.version == 12


def test_changes_before_any_snapshot_are_refused():
    with pytest.raises(OutOfSyncError, match="before any snapshot"):
        UserList().apply(changes(0, 1, upserted=[user(1)]))


def test_changes_in_another_epoch_are_refused():
    users = user_list(12, user(1))

    with pytest.raises(OutOfSyncError, match="epoch"):
        users.apply(changes(12, 13, upserted=[user(2)], epoch="reset"))

    assert (users.epoch, users.version, list(users.users)) == (EPOCH, 12, ["1"])


@pytest.mark.parametrize("version", [11, 12])
def test_changes_that_do_not_move_the_version_forward_are_refused(version):
    users = user_list(12, user(1))

    with pytest.raises(OutOfSyncError):
        users.apply(changes(12, version, upserted=[user(2)]))


def test_a_resume_that_found_nothing_new_changes_nothing():
    users = user_list(13, user(1))

    assert users.apply(changes(13, 13)) is None
    assert users.version == 13


# manage.py newepoch keeps the version's number: a new epoch may repeat it.
@pytest.mark.parametrize("version", [1, 12, 13])
def test_a_snapshot_of_a_new_epoch_replaces_the_list_whatever_its_version(version):
    users = user_list(12, user(1))

    update = users.apply(snapshot(version, user(5), epoch="restored"))

    assert list(update.users) == ["5"]
    assert (users.epoch, users.version) == ("restored", version)


@pytest.mark.parametrize("version", [11, 12])
def test_a_snapshot_no_newer_than_the_list_is_not_taken(version):
    users = user_list(12, user(1))

    assert users.apply(snapshot(version, user(2))) is None
    assert list(users.users) == ["1"]
    assert users.version == 12


def test_a_newer_snapshot_of_the_same_epoch_replaces_the_list():
    users = user_list(12, user(1))

    update = users.apply(snapshot(20, user(2)))

    assert list(update.users) == ["2"]
    assert update.snapshot


def test_a_list_handed_out_does_not_change_afterwards_and_cannot_be_changed():
    users = user_list(12, user(1))
    first = users.users

    users.apply(changes(12, 13, upserted=[user(1, "Ada"), user(2)]))

    assert dict(first) == {"1": user(1)}
    with pytest.raises(TypeError):
        first["3"] = user(3)


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "users"},
        {**snapshot(1), "version": "1"},
        {**snapshot(1), "version": True},
        {**snapshot(1), "epoch": None},
        snapshot(1, {"id": "a", "name": "A", "email": ""}),
        snapshot(1, {"id": 1, "name": "A", "email": ""}),
        snapshot(1, {"id": "1", "name": "A"}),
        snapshot(1, {"id": "1", "name": "A", "email": None}),
        {**snapshot(1), "users": {}},
        changes(12, 13, deleted=[1]),
        {**changes(12, 13), "upserted": None},
        {key: value for key, value in changes(12, 13).items() if key != "from"},
    ],
)
def test_a_malformed_frame_is_refused_and_changes_nothing(frame):
    users = user_list(12, user(1))

    with pytest.raises(OutOfSyncError):
        users.apply(frame)

    assert (users.epoch, users.version, dict(users.users)) == (EPOCH, 12, {"1": user(1)})


def test_only_the_three_fields_of_a_user_are_kept():
    update = UserList().apply(snapshot(1, {**user(1), "is_staff": True}))

    assert update.users["1"] == user(1)


def test_a_windows_snapshot_is_held_in_the_querys_order_with_its_total():
    update = UserList(Query(order="-name", limit=3)).apply(
        snapshot(30, user(4, "ada"), user(9, "Zoe"), user(2, "Ada"), total=11)
    )

    assert list(update.users) == ["9", "2", "4"]
    assert update.users.total == 11


def test_changes_keep_the_window_in_order_as_users_enter_move_and_leave():
    users = window(
        30, Query("a", "name", 3), user(4, "Ada"), user(9, "Bea"), user(2, "Cal"), total=5
    )

    update = users.apply(
        changes(30, 31, upserted=[user(9, "Abe"), user(12, "Amy")], deleted=["2"], total=6)
    )

    assert list(update.users) == ["9", "4", "12"]
    assert update.users["9"]["name"] == "Abe"
    assert update.users.total == 6
    assert update.deleted == ("2",)


def test_a_change_that_moves_only_the_total_is_a_new_version():
    users = window(30, Query("a", limit=1), user(4, "Ada"), total=5)

    update = users.apply(changes(30, 32, total=4))

    assert list(update.users) == ["4"]
    assert (update.version, update.users.total) == (32, 4)


@pytest.mark.parametrize(
    "frame",
    [
        snapshot(31, user(4, "Ada")),
        changes(30, 31, upserted=[user(5, "Ava")]),
        changes(30, 31, total="5"),
    ],
)
def test_a_windows_frame_without_an_integer_total_is_refused_and_changes_nothing(frame):
    users = window(30, Query(limit=2), user(4, "Ada"), total=5)

    with pytest.raises(OutOfSyncError, match="total"):
        users.apply(frame)

    assert (users.version, dict(users.users), users.users.total) == (30, {"4": user(4, "Ada")}, 5)


def test_the_whole_lists_frames_may_carry_a_total():
    users = user_list(12, user(1))

    update = users.apply(changes(12, 13, upserted=[user(2)], total=2))

    assert update.users.total == 2
