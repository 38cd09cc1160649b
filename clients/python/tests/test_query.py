import pytest
from frames import user
from usersite_client import InvalidQueryError, Query

# Ids 1 to 8, named so that every rule of the name order decides some pair:
# ASCII letters compare lowercased, other letters by code point ("É" is
# U+00C9, "é" U+00E9, both after "z": not lowercased, or they would tie),
# ties by integer id (10 after 9).
NAMED = [
    user(1, "bob"),
    user(10, "alice"),
    user(3, "émile"),
    user(4, "Zed"),
    user(5, "zoe"),
    user(6, "Émile"),
    user(7, "ALICE"),
    user(9, "Alice"),
]


def ids(users: list[dict]) -> list[str]:
    return [user["id"] for user in users]


def test_id_order_compares_ids_as_integers():
    users = [user(10), user(9), user(100)]

    assert ids(Query(order="id").sort(users)) == ["9", "10", "100"]
    assert ids(Query(order="-id").sort(users)) == ["100", "10", "9"]


def test_name_order_lowercases_ascii_letters_only_then_compares_code_points_ties_by_id():
    assert ids(Query(order="name").sort(NAMED)) == ["7", "9", "10", "1", "4", "5", "6", "3"]


def test_reversed_name_order_still_breaks_ties_by_id_ascending():
    assert ids(Query(order="-name").sort(NAMED)) == ["3", "6", "5", "4", "1", "7", "9", "10"]


def test_a_query_is_url_parameters_with_its_defaults_left_out():
    assert Query("ada", "name", 20).parameters() == {
        "search": "ada",
        "order": "name",
        "limit": "20",
        "offset": None,
    }
    assert set(Query().parameters().values()) == {None}


def test_a_query_is_a_query_action():
    assert Query("ada", "-id", 20, 40).command() == {
        "action": "query",
        "search": "ada",
        "order": "-id",
        "limit": 20,
        "offset": 40,
    }
    assert Query().command() == {"action": "query", "search": "", "order": "id", "offset": 0}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"order": "age"}, "order: one of id, -id, name, -name"),
        ({"order": "Name"}, "order"),
        ({"limit": 0}, "limit: a whole number from 1 to 500"),
        ({"limit": 501}, "limit"),
        ({"limit": "20"}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 20, "offset": -1}, "offset: a whole number from 0"),
        ({"limit": 20, "offset": 1.5}, "offset"),
        ({"offset": 20}, "offset: only with a limit"),
        ({"search": "a" * 101}, "search: text of at most 100 characters"),
        ({"search": 7}, "search"),
        ({"search": "a\x00"}, "NUL"),
    ],
)
def test_a_query_the_server_would_refuse_raises_saying_which_part(fields, message):
    with pytest.raises(InvalidQueryError, match=message):
        Query(**fields)


def test_the_limits_themselves_are_allowed():
    assert Query("a" * 100, "-name", 500, 10_000).limit == 500
    assert Query(limit=1).limit == 1


def test_an_acked_query_is_read_from_the_frame():
    acked = {"search": "ada", "order": "name", "limit": 2, "offset": 0}

    assert Query.from_frame(acked) == Query("ada", "name", 2)


@pytest.mark.parametrize("acked", [None, ["ada"], {"search": "ada", "page": 2}, {"limit": 0}])
def test_an_acked_query_that_is_not_one_raises(acked):
    with pytest.raises(InvalidQueryError):
        Query.from_frame(acked)
