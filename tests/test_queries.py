"""A live query's parameters and order (users.queries), on the database and in Python."""

import itertools

import pytest

from users.models import User
from users.queries import MAX_LIMIT, InvalidQueryError, Query, sort_name

# Case, accents, an astral character (UTF-16 would order it before "ẞ"), ties.
NAMES = ["b", "B", "a", "A", "É", "é", "Z", "_", "a b", "ab", "Ab", "zz", "ß", "ẞ", " a", "a"]
NAMES.append("\U0001d538")  # MATHEMATICAL DOUBLE-STRUCK CAPITAL A


@pytest.mark.parametrize(
    ("values", "query"),
    [
        ({}, Query()),
        ({"search": "Ada", "order": "-name", "limit": "50"}, Query("Ada", "-name", 50)),
        ({"limit": 1, "offset": 7}, Query(limit=1, offset=7)),
        ({"search": "", "order": "", "limit": ""}, Query()),
    ],
)
def test_parse_reads_url_strings_and_json_values(values, query):
    assert Query.parse(values) == query


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"order": "email"}, "order"),
        ({"limit": 0}, "limit"),
        ({"limit": MAX_LIMIT + 1}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 2.0}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": 5, "offset": -1}, "offset"),
        ({"offset": 5}, "offset"),
        ({"search": "x" * 101}, "search"),
        ({"search": ["a"]}, "search"),
        ({"search": "a\x00"}, "search"),
    ],
)
def test_parse_names_what_is_wrong(values, named):
    with pytest.raises(InvalidQueryError, match=f"^{named}"):
        Query.parse(values)


def test_a_url_names_a_query_by_any_of_its_parameters_once():
    assert Query.from_url({"epoch": ["e"], "version": ["1"]}) is None
    assert Query.from_url({"order": ["name"]}) == Query(order="name")
    with pytest.raises(InvalidQueryError):
        Query.from_url({"limit": ["1", "2"]})


def test_as_parameters_round_trips_and_always_names_the_order():
    query = Query("ada", "-id", 20, 40)
    assert Query.from_url({k: [str(v)] for k, v in query.as_parameters().items()}) == query
    assert Query().as_parameters() == {"order": "id"}


def test_sort_name_lowers_ascii_letters_only():
    assert sort_name("ÉcOle ẞ Z") == "École ẞ z"


@pytest.mark.django_db
@pytest.mark.parametrize("order", ["id", "-id", "name", "-name"])
def test_python_orders_users_as_the_database_does(order):
    """users.live.windows places users in Python: in the database's order, ties included."""
    User.objects.bulk_create([User(name=name) for name in NAMES * 2])
    query = Query(order=order)
    database = list(query.apply(User.objects.all()).values_list("id", flat=True))
    users = list(User.objects.all())
    query.sort(users)
    assert [user.id for user in users] == database
    for first, second in itertools.pairwise(users):
        assert query.precedes(first, second)
        assert not query.precedes(second, first)


@pytest.mark.django_db
def test_the_search_is_case_insensitive_on_the_name_or_the_email():
    User.objects.bulk_create(
        [User(name="Ada"), User(name="Bob", email="ADAM@example.org"), User(name="Cy")]
    )
    found = Query("aD").apply(User.objects.all()).values_list("name", flat=True)
    assert list(found) == ["Ada", "Bob"]
