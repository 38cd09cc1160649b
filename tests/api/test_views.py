from base64 import b64encode

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.helpers import make_account, receive_list, wire
from users import commands, services
from users.models import User, UserListVersion
from users.queries import ORDERS, Query, sort_name

pytestmark = pytest.mark.django_db

LIST_PATHS = ["/api/v1/users", "/api/v1/users/"]


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def reader(api):
    """A client logged in to an account without permissions: its reads are not throttled."""
    api.force_authenticate(make_account("reader"))
    return api


@pytest.fixture
def editor(api):
    """A client logged in to an account that may add, change and delete users."""
    api.force_authenticate(make_account(perms=["add_user", "change_user", "delete_user"]))
    return api


def detail(user_or_id, slash="") -> str:
    return f"/api/v1/users/{getattr(user_or_id, 'pk', user_or_id)}{slash}"


@pytest.mark.parametrize("path", LIST_PATHS)
def test_list_wraps_the_users_ordered_by_id_in_an_object(api, path):
    bob = services.user_create(name="Bob")
    ann = services.user_create(name="Ann", email="ann@example.org")
    response = api.get(path)
    assert response.status_code == 200
    assert response.json() == {"users": [wire(bob), wire(ann)]}


@pytest.mark.parametrize("query", ["", "?format=json", "?other=1"])
def test_without_a_query_the_list_is_byte_for_byte_the_plain_answer(api, query):
    zoe = services.user_create(name="Zoë", email="z@example.org")
    emile = services.user_create(name='Émile "q"')
    response = api.get(f"/api/v1/users{query}")
    assert (
        response.content
        == (
            f'{{"users":[{{"id":"{zoe.pk}","name":"Zoë","email":"z@example.org"}},'
            f'{{"id":"{emile.pk}","name":"Émile \\"q\\"","email":""}}]}}'
        ).encode()
    )


@pytest.mark.parametrize("path", LIST_PATHS)
def test_create_answers_201_with_the_user(api, path):
    response = api.post(path, {"name": " Ann ", "email": "ann@example.org"}, format="json")
    assert response.status_code == 201
    assert response.json() == wire(User.objects.get(name="Ann"))


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"name"}),
        ({"name": "  ", "email": "nope"}, {"name", "email"}),
        ({"name": "x" * 151}, {"name"}),
        ({"name": "Ann", "email": None}, {"email"}),
    ],
)
def test_invalid_create_answers_400_per_field_and_writes_nothing(api, body, fields):
    response = api.post("/api/v1/users", body, format="json")
    assert response.status_code == 400
    assert set(response.json()) == fields
    assert not User.objects.exists()


def test_an_email_differing_only_in_case_is_a_duplicate(api):
    services.user_create(name="Ann", email="ann@example.org")
    response = api.post("/api/v1/users", {"name": "A", "email": "ANN@example.ORG"}, format="json")
    assert (response.status_code, response.json()) == (
        400,
        {"email": ["A user with this email already exists."]},
    )


@pytest.mark.parametrize("slash", ["", "/"])
def test_retrieve_answers_the_bare_user(api, slash):
    ann = services.user_create(name="Ann")
    response = api.get(detail(ann, slash))
    assert (response.status_code, response.json()) == (200, wire(ann))


@pytest.mark.parametrize("user_id", ["999", "abc", "1.5"])
def test_an_unknown_id_answers_404_json(api, user_id):
    response = api.get(detail(user_id))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()


def test_put_replaces_and_patch_changes_fields(api):
    ann = services.user_create(name="Ann", email="ann@example.org")
    put = api.put(detail(ann), {"name": "Anna", "email": "anna@example.org"}, format="json")
    assert (put.status_code, put.json()) == (
        200,
        {**wire(ann), "name": "Anna", "email": "anna@example.org"},
    )
    patch = api.patch(detail(ann, "/"), {"email": ""}, format="json")
    assert (patch.status_code, patch.json()) == (200, {**wire(ann), "name": "Anna", "email": ""})


def test_invalid_update_answers_400_and_changes_nothing(api):
    ann = services.user_create(name="Ann")
    assert api.patch(detail(ann), {"email": "nope"}, format="json").status_code == 400
    assert User.objects.get(pk=ann.pk).email == ""


def test_delete_answers_204(api):
    ann = services.user_create(name="Ann")
    assert api.delete(detail(ann)).status_code == 204
    assert not User.objects.exists()


def test_the_list_refuses_other_methods_with_405(api):
    assert api.delete("/api/v1/users").status_code == 405


WRITES = [
    ("post", "add_user", lambda ann: "/api/v1/users", {"name": "New"}),
    ("put", "change_user", detail, {"name": "New", "email": ""}),
    ("patch", "change_user", detail, {"name": "New"}),
    ("delete", "delete_user", detail, None),
]


@pytest.mark.parametrize(("method", "perm", "path", "body"), WRITES)
def test_without_anonymous_writes_anonymous_writes_are_refused(
    api, settings, method, perm, path, body
):
    settings.USERS_ANONYMOUS_WRITES = False
    ann = services.user_create(name="Ann")
    response = getattr(api, method)(path(ann), body, format="json")
    assert response.status_code in (401, 403)
    assert list(User.objects.values_list("name", flat=True)) == ["Ann"]
    assert api.get("/api/v1/users").status_code == 200


@pytest.mark.parametrize(("method", "perm", "path", "body"), WRITES)
def test_without_anonymous_writes_each_write_needs_its_permission(
    api, settings, method, perm, path, body
):
    settings.USERS_ANONYMOUS_WRITES = False
    ann = services.user_create(name="Ann")
    others = {"add_user", "change_user", "delete_user"} - {perm}
    api.force_login(make_account("lacking", perms=others))
    assert getattr(api, method)(path(ann), body, format="json").status_code == 403
    api.force_login(make_account("allowed", perms=[perm]))
    assert getattr(api, method)(path(ann), body, format="json").status_code in (200, 201, 204)


@pytest.mark.parametrize("method", ["get", "head", "options"])
@pytest.mark.parametrize("login", [False, True], ids=["anonymous", "without-permissions"])
def test_without_anonymous_writes_reads_stay_open_to_anyone(api, settings, method, login):
    settings.USERS_ANONYMOUS_WRITES = False
    ann = services.user_create(name="Ann")
    if login:
        api.force_login(make_account("reader"))
    for path in ("/api/v1/users", detail(ann)):
        assert getattr(api, method)(path).status_code == 200


READS = ["get", "head", "options"]


@pytest.mark.parametrize("method", READS)
def test_without_anonymous_reads_an_anonymous_read_gets_401_naming_the_token_scheme(
    api, settings, method
):
    settings.USERS_ANONYMOUS_READS = False
    ann = services.user_create(name="Ann")
    for path in ("/api/v1/users", detail(ann)):
        response = getattr(api, method)(path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("method", READS)
@pytest.mark.parametrize("credentials", ["session", "token"])
def test_without_anonymous_reads_a_login_or_token_without_permissions_reads(
    api, settings, method, credentials
):
    settings.USERS_ANONYMOUS_READS = False
    ann = services.user_create(name="Ann")
    account = make_account("reader")
    if credentials == "session":
        api.force_login(account)
    else:
        api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=account).key}")
    for path in ("/api/v1/users", detail(ann)):
        assert getattr(api, method)(path).status_code == 200


def test_without_anonymous_reads_anonymous_writes_keep_their_own_rule(api, settings):
    settings.USERS_ANONYMOUS_READS = False
    settings.USERS_ANONYMOUS_WRITES = True
    assert api.post("/api/v1/users", {"name": "Ann"}, format="json").status_code == 201
    settings.USERS_ANONYMOUS_WRITES = False
    assert api.post("/api/v1/users", {"name": "Bob"}, format="json").status_code == 401
    assert list(User.objects.values_list("name", flat=True)) == ["Ann"]


@pytest.mark.parametrize(
    ("anonymous_writes", "perms", "offered"),
    [(True, [], {"POST"}), (False, [], set()), (False, ["add_user"], {"POST"})],
)
def test_options_offers_the_create_form_only_to_those_who_may_add(
    api, settings, anonymous_writes, perms, offered
):
    settings.USERS_ANONYMOUS_WRITES = anonymous_writes
    if perms:
        api.force_login(make_account("writer", perms=perms))
    assert set(api.options("/api/v1/users").json().get("actions", {})) == offered


def test_an_app_writes_with_its_token_until_it_is_revoked(api, settings):
    settings.USERS_ANONYMOUS_WRITES = False
    token = Token.objects.create(user=make_account("app", perms=["add_user"]))
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.post("/api/v1/users", {"name": "By app"}, format="json").status_code == 201
    token.delete()
    response = api.post("/api/v1/users", {"name": "Too late"}, format="json")
    assert (response.status_code, response["WWW-Authenticate"]) == (401, "Token")
    assert list(User.objects.values_list("name", flat=True)) == ["By app"]


@pytest.mark.django_db(transaction=True)
async def test_a_rest_write_reaches_the_sockets(connect):
    socket = await connect()
    await receive_list(socket)
    response = await sync_to_async(APIClient().post)(
        "/api/v1/users", {"name": "Ann"}, format="json"
    )
    assert response.status_code == 201
    assert await receive_list(socket) == [response.json()]


def test_writes_over_the_rate_get_429_and_reads_are_not_counted(api, settings):
    settings.USERS_REST_WRITE_RATE = "3/min"
    statuses = [api.post("/api/v1/users", {"name": f"U{i}"}).status_code for i in range(4)]
    assert statuses == [201, 201, 201, 429]
    assert api.get("/api/v1/users").status_code == 200
    assert User.objects.count() == 3


# Transactional: the check opens a connection of its own, which a test's atomic block refuses.
@pytest.mark.django_db(transaction=True)
def test_health_reports_the_database_and_the_channel_layer_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "channel_layer": "ok"}


@pytest.mark.django_db(transaction=True)
def test_health_answers_503_naming_only_an_unreachable_channel_layer(
    client, settings, unused_tcp_port, caplog
):
    settings.REDIS_URL = f"redis://127.0.0.1:{unused_tcp_port}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "channel_layer": "failing"}
    # Where it failed and why is for the operator's log, not for whoever asks.
    assert str(unused_tcp_port) not in response.content.decode()
    assert "channel_layer failing: ConnectionError: " in caplog.text
    assert str(unused_tcp_port) in caplog.text


def test_while_the_cache_is_down_writes_and_reads_go_through_unthrottled(
    api, settings, unused_tcp_port, caplog
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{unused_tcp_port}/0",
        }
    }
    settings.USERS_REST_WRITE_RATE = settings.USERS_REST_ANONYMOUS_READ_RATE = "1/min"
    statuses = [api.post("/api/v1/users", {"name": f"U{i}"}).status_code for i in range(2)]
    statuses += [api.get("/api/v1/users").status_code for _ in range(2)]
    assert statuses == [201, 201, 200, 200]
    assert "Write throttle unavailable, letting the write through" in caplog.text
    assert "Read throttle unavailable, letting the read through" in caplog.text


def test_an_idempotency_key_makes_a_retried_create_answer_the_first_user(editor):
    first = editor.post("/api/v1/users", {"name": "Ann"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    again = editor.post("/api/v1/users", {"name": "Ann"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert User.objects.count() == 1


def test_an_idempotency_key_makes_update_and_delete_answer_as_the_first_time(editor):
    ann = services.user_create(name="Ann")
    for _ in range(2):
        response = editor.patch(
            detail(ann), {"name": "Anna"}, format="json", HTTP_IDEMPOTENCY_KEY="u"
        )
        assert (response.status_code, response.json()["name"]) == (200, "Anna")
    for _ in range(2):
        assert editor.delete(detail(ann), HTTP_IDEMPOTENCY_KEY="d").status_code == 204
    assert not User.objects.exists()


def test_a_key_shared_by_rest_and_the_socket_is_one_command(editor):
    response = editor.post(
        "/api/v1/users", {"name": "Ann"}, format="json", HTTP_IDEMPOTENCY_KEY="s"
    )
    account = response.wsgi_request.user
    ack = commands.run(
        account, "test-client", {"action": "create", "name": "Ann", "request_id": "s"}
    )
    assert ack == {"user": response.json(), "version": int(response["Users-Version"])}
    assert User.objects.count() == 1


@pytest.mark.parametrize(("key", "status"), [("", 400), ("k" * 65, 400)])
def test_a_bad_idempotency_key_answers_400_and_writes_nothing(editor, key, status):
    response = editor.post("/api/v1/users", {"name": "A"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == status
    assert set(response.json()) == {"Idempotency-Key"}
    assert not User.objects.exists()


def test_a_key_reused_for_another_request_answers_422_and_writes_nothing(editor):
    ann = services.user_create(name="Ann")
    editor.post("/api/v1/users", {"name": "Bob"}, format="json", HTTP_IDEMPOTENCY_KEY="r")
    response = editor.delete(detail(ann), HTTP_IDEMPOTENCY_KEY="r")
    assert response.status_code == 422
    assert User.objects.filter(pk=ann.pk).exists()


def test_a_key_reused_with_another_body_answers_422_and_writes_nothing(editor):
    ann = services.user_create(name="Ann")
    first = editor.patch(detail(ann), {"name": "Anna"}, format="json", HTTP_IDEMPOTENCY_KEY="r")
    again = editor.patch(detail(ann), {"name": "Annie"}, format="json", HTTP_IDEMPOTENCY_KEY="r")
    assert (first.status_code, again.status_code) == (200, 422)
    assert User.objects.get(pk=ann.pk).name == "Anna"


def test_a_failed_write_leaves_its_key_free(editor):
    bad = editor.post("/api/v1/users", {"name": ""}, format="json", HTTP_IDEMPOTENCY_KEY="f")
    good = editor.post("/api/v1/users", {"name": "Ann"}, format="json", HTTP_IDEMPOTENCY_KEY="f")
    assert (bad.status_code, good.status_code) == (400, 201)


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_a_write_to_an_id_of_thousands_of_digits_answers_404(editor, method):
    response = getattr(editor, method)(
        detail("9" * 5000), {"name": "X"}, format="json", HTTP_IDEMPOTENCY_KEY="long"
    )
    assert response.status_code == 404


@pytest.fixture
def deleted_after_loading(monkeypatch):
    """Make the detail view load its user, then have another writer delete it."""
    from users.api.views import UserDetail

    get_object = UserDetail.get_object

    def load_then_lose(view):
        user = get_object(view)
        User.objects.filter(pk=user.pk).delete()
        return user

    monkeypatch.setattr(UserDetail, "get_object", load_then_lose)


@pytest.mark.parametrize("method", ["patch", "put", "delete"])
def test_a_write_to_a_user_deleted_meanwhile_answers_404_and_writes_nothing(
    api, deleted_after_loading, method
):
    ann = services.user_create(name="Ann")
    response = getattr(api, method)(detail(ann), {"name": "Anna"}, format="json")
    assert response.status_code == 404, response.content
    assert not User.objects.exists()


def test_a_patch_that_changes_nothing_takes_no_version(api):
    ann = services.user_create(name="Ann", email="ann@example.org")
    response = api.patch(detail(ann), {"name": "Ann"}, format="json")
    assert response.status_code == 200
    assert User.objects.get(pk=ann.pk).version == ann.version


def test_a_user_answer_carries_its_etag_and_a_write_the_version_it_committed_at(editor):
    created = editor.post("/api/v1/users", {"name": "Ann"}, format="json")
    ann = User.objects.get()
    epoch = UserListVersion.objects.get().epoch
    assert created["ETag"] == f'"{epoch}.{ann.version}"'
    assert created["Users-Version"] == str(ann.version)
    assert editor.get(detail(ann))["ETag"] == created["ETag"]
    deleted = editor.delete(detail(ann))
    assert deleted["Users-Version"] == str(ann.version + 1)


def test_if_match_with_the_current_etag_writes_and_with_an_older_one_answers_412(editor):
    ann = services.user_create(name="Ann")
    seen = editor.get(detail(ann))["ETag"]
    renamed = editor.patch(detail(ann), {"name": "Anna"}, format="json", HTTP_IF_MATCH=seen)
    assert renamed.status_code == 200
    for method in ("patch", "put", "delete"):
        response = getattr(editor, method)(
            detail(ann), {"name": "Annie"}, format="json", HTTP_IF_MATCH=seen
        )
        assert response.status_code == 412, (method, response.content)
    assert User.objects.get().name == "Anna"
    anything = editor.patch(detail(ann), {"name": "Annie"}, format="json", HTTP_IF_MATCH="*")
    assert anything.status_code == 200
    current = editor.delete(detail(ann), HTTP_IF_MATCH=anything["ETag"])
    assert current.status_code == 204


def test_an_anonymous_idempotency_key_answers_400_and_writes_nothing(api):
    response = api.post("/api/v1/users", {"name": "A"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 400
    assert set(response.json()) == {"Idempotency-Key"}
    assert not User.objects.exists()


# Live queries in REST (docs/protocol.md, "Live queries"): the users of a query, paged.

# Names that order differently by code point, by a locale and by ASCII-lowercased
# code point (the protocol's order), with ties in every sense.
NAMES = ["b", "B", "a", "É", "é", "Z", "_", "b", "a", "Ann", "ann", "ANN", "z", "é", "Bob", "a"]


def create_users(names=NAMES) -> list[User]:
    return [services.user_create(name=name) for name in names]


def in_order(users: list[User], order: str) -> list[dict]:
    """``users`` on the wire as the protocol orders them, computed here, not by the database."""
    by_id = sorted(users, key=lambda user: user.id)
    if order in ("id", "-id"):
        return [wire(user) for user in (by_id if order == "id" else by_id[::-1])]
    # sorted() is stable, also in reverse: ties stay in id order.
    ordered = sorted(by_id, key=lambda user: sort_name(user.name), reverse=order == "-name")
    return [wire(user) for user in ordered]


def walk(client, url: str, parameters: dict, pages: int = 50) -> tuple[list, set]:
    """Follow ``next`` from the first page; return the pages' users, in order, and their totals."""
    answer = client.get(url, parameters).json()
    users, totals = answer["users"], {answer["total"]}
    for _ in range(pages):
        if answer["next"] is None:
            return users, totals
        answer = client.get(answer["next"]).json()
        users += answer["users"]
        totals.add(answer["total"])
    pytest.fail(f"next still led on after {pages} pages")


def test_the_name_order_is_ascii_lowercased_code_point_order_with_ties_by_id(reader):
    create_users()
    response = reader.get("/api/v1/users", {"order": "name", "limit": 500})
    names = [user["name"] for user in response.json()["users"]]
    assert names == [
        *("_", "a", "a", "a", "Ann", "ann", "ANN", "b", "B", "b", "Bob"),
        *("Z", "z", "É", "é", "é"),
    ]
    ids = [int(user["id"]) for user in response.json()["users"]]
    assert ids[1:4] == sorted(ids[1:4]), "equal names by id, ascending"


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("search", ["", "b"])
@pytest.mark.parametrize("limit", [1, 3, 500])
def test_following_next_walks_the_whole_query_in_order(reader, order, search, limit):
    users = create_users()
    matching = [user for user in users if search in user.name.lower()]
    walked, totals = walk(
        reader, "/api/v1/users", {"search": search, "order": order, "limit": limit}
    )
    assert walked == in_order(matching, order)
    assert totals == {len(matching)}


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("search", ["", "AN"])
def test_a_page_holds_the_socket_window_of_its_query(reader, order, search):
    create_users()
    answer = reader.get("/api/v1/users", {"search": search, "order": order, "limit": 4}).json()
    window = Query(search, order, 4).apply(User.objects.all())[:4]
    assert answer["users"] == [wire(user) for user in window]


@pytest.mark.parametrize("order", ORDERS)
def test_a_next_link_goes_on_after_its_page_whatever_was_written_meanwhile(reader, order):
    users = create_users(["Bob", "Cy", "Dee", "Eve", "Fay", "Gil"])
    first = reader.get("/api/v1/users", {"order": order, "limit": 2}).json()
    last = next(user for user in users if wire(user) == first["users"][-1])
    User.objects.filter(pk__in=[user["id"] for user in first["users"]]).delete()
    services.user_create(name="Al")  # first by name, last by id
    later = [user for user in User.objects.all() if Query(order=order).precedes(last, user)]
    assert reader.get(first["next"]).json()["users"] == in_order(later, order)[:2]


@pytest.mark.parametrize("order", ["name", "-name"])
def test_more_equal_names_than_drfs_offset_cutoff_are_walked_to_the_end(reader, order):
    User.objects.bulk_create(User(name="Same") for _ in range(1600))
    walked, _ = walk(reader, "/api/v1/users", {"order": order, "limit": 500}, pages=5)
    assert [user["id"] for user in walked] == [
        str(pk) for pk in User.objects.values_list("pk", flat=True)
    ]


def test_search_matches_the_name_or_the_email_in_any_case(reader):
    ann = services.user_create(name="Ann")
    joanne = services.user_create(name="joANNe")
    bob = services.user_create(name="Bob", email="ANNA@example.org")
    services.user_create(name="Cy", email="cy@example.org")
    answer = reader.get("/api/v1/users", {"search": "aNn"}).json()
    assert answer == {"users": [wire(ann), wire(joanne), wire(bob)], "total": 3, "next": None}


def test_a_search_without_a_limit_gets_pages_of_100(reader):
    User.objects.bulk_create(User(name=f"U{n}") for n in range(101))
    first = reader.get("/api/v1/users", {"search": ""}).json()
    assert (len(first["users"]), first["total"]) == (100, 101)
    last = reader.get(first["next"]).json()
    assert (len(last["users"]), last["total"], last["next"]) == (1, 101, None)


def test_without_a_query_the_list_holds_every_user_beyond_a_page(reader):
    User.objects.bulk_create(User(name=f"U{n}") for n in range(101))
    assert len(reader.get("/api/v1/users").json()["users"]) == 101


def test_a_search_that_matches_nobody_answers_an_empty_page(reader):
    services.user_create(name="Ann")
    answer = reader.get("/api/v1/users", {"search": "zz", "limit": 5}).json()
    assert answer == {"users": [], "total": 0, "next": None}


def cursor(position: str) -> str:
    """A cursor as DRF encodes one, at ``position``."""
    return b64encode(f"p={position}".encode()).decode()


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"order": "age"}, "order"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"search": "x" * 101}, "search"),
        ({"search": "a\x00"}, "search"),
        ({"limit": "5", "offset": "5"}, "offset"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": cursor("ann")}, "cursor"),  # a name where the id order has an id
        ({"cursor": cursor("9" * 5000)}, "cursor"),
        ({"cursor": cursor("a%00"), "order": "name"}, "cursor"),
    ],
)
def test_an_invalid_query_answers_400_naming_the_parameter(reader, parameters, named):
    services.user_create(name="Ann")
    response = reader.get("/api/v1/users", parameters)
    assert response.status_code == 400
    assert list(response.json()) == ["detail"]
    assert response.json()["detail"].startswith(f"{named}: ")


def test_a_parameter_given_twice_answers_400(reader):
    response = reader.get("/api/v1/users?order=id&order=name")
    assert response.status_code == 400
    assert "at most once" in response.json()["detail"]


# ETags: the list's version, or a user's, within the epoch; 304 for the current one.

LIST_QUERIES = [{}, {"search": "a", "order": "-name", "limit": 2}]


@pytest.mark.parametrize("parameters", LIST_QUERIES)
def test_a_list_carries_the_lists_epoch_and_version_as_its_etag(api, parameters):
    services.user_create(name="Ann")
    head = UserListVersion.objects.get()
    assert api.get("/api/v1/users", parameters)["ETag"] == f'"{head.epoch}.{head.number}"'


@pytest.mark.parametrize("parameters", LIST_QUERIES)
def test_a_current_list_etag_answers_304_reading_only_the_version_row(api, parameters):
    services.user_create(name="Ann")
    tag = api.get("/api/v1/users", parameters)["ETag"]
    with CaptureQueriesContext(connection) as queries:
        response = api.get("/api/v1/users", parameters, HTTP_IF_NONE_MATCH=tag)
    assert (response.status_code, response.content, response["ETag"]) == (304, b"", tag)
    assert len(queries) == 1
    assert "users_userlistversion" in queries[0]["sql"]


@pytest.mark.parametrize("offered", ["{tag}", "W/{tag}", '"other", {tag}', "*"])
def test_if_none_match_takes_weak_tags_lists_and_a_star(api, offered):
    ann = services.user_create(name="Ann")
    for path in ("/api/v1/users", detail(ann)):
        tag = api.get(path)["ETag"]
        response = api.get(path, HTTP_IF_NONE_MATCH=offered.format(tag=tag))
        assert response.status_code == 304, path


def test_a_list_etag_from_before_a_write_gets_the_new_list(api):
    services.user_create(name="Ann")
    tag = api.get("/api/v1/users")["ETag"]
    bob = services.user_create(name="Bob")
    response = api.get("/api/v1/users", HTTP_IF_NONE_MATCH=tag)
    assert response.status_code == 200
    assert response["ETag"] != tag
    assert response.json()["users"][-1] == wire(bob)


def test_a_user_answer_costs_one_query_and_a_current_etag_answers_304(api):
    ann = services.user_create(name="Ann")
    with CaptureQueriesContext(connection) as queries:
        tag = api.get(detail(ann))["ETag"]
    assert len(queries) == 1
    assert api.get(detail(ann), HTTP_IF_NONE_MATCH=tag).status_code == 304
    services.user_update(ann, name="Anna")
    renamed = api.get(detail(ann), HTTP_IF_NONE_MATCH=tag)
    assert (renamed.status_code, renamed.json()["name"]) == (200, "Anna")


def test_anonymous_list_reads_over_their_rate_get_429_and_logged_in_ones_do_not(api, settings):
    settings.USERS_REST_ANONYMOUS_READ_RATE = "2/min"
    statuses = [api.get("/api/v1/users", {"limit": 1}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert api.post("/api/v1/users", {"name": "Ann"}).status_code == 201
    api.force_authenticate(make_account("reader"))
    assert [api.get("/api/v1/users").status_code for _ in range(3)] == [200] * 3
