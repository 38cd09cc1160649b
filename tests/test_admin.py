import pytest
from asgiref.sync import sync_to_async
from rest_framework.authtoken.models import Token

from tests.helpers import make_account, next_frame_brings_a_new_user, receive_list, wire
from users import services
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/users/user/"


def make_staff(username: str, *, perms):
    account = make_account(username, perms=perms)
    account.is_staff = True
    account.save()
    return account


async def test_a_user_added_in_the_admin_reaches_every_socket(admin_client, connect):
    sockets = [await connect(), await connect()]
    for socket in sockets:
        await receive_list(socket)
    response = await sync_to_async(admin_client.post)(
        f"{CHANGELIST}add/", {"name": "Ann", "email": "ann@example.org"}
    )
    assert response.status_code == 302, response.content
    ann = await User.objects.aget()
    for socket in sockets:
        assert await receive_list(socket) == [wire(ann)]


async def test_an_admin_edit_reaches_the_sockets(admin_client, connect):
    ann = await sync_to_async(services.user_create)(name="Ann")
    socket = await connect()
    await receive_list(socket)
    response = await sync_to_async(admin_client.post)(
        f"{CHANGELIST}{ann.pk}/change/", {"name": "Anna", "email": ""}
    )
    assert response.status_code == 302
    assert await receive_list(socket) == [{**wire(ann), "name": "Anna"}]


async def test_a_bulk_delete_in_the_admin_sends_one_list(admin_client, connect):
    users = [await sync_to_async(services.user_create)(name=f"U{i}") for i in range(3)]
    socket = await connect()
    assert len(await receive_list(socket)) == 3
    response = await sync_to_async(admin_client.post)(
        CHANGELIST,
        {"action": "delete_selected", "_selected_action": [u.pk for u in users[:2]], "post": "yes"},
    )
    assert response.status_code == 302
    assert await receive_list(socket) == [wire(users[2])]
    await next_frame_brings_a_new_user(socket)


def test_the_add_form_refuses_a_duplicate_email_ignoring_case(admin_client):
    services.user_create(name="Ann", email="ann@example.org")
    response = admin_client.post(f"{CHANGELIST}add/", {"name": "A2", "email": "ANN@example.org"})
    assert response.status_code == 200
    assert "A user with this email already exists." in response.content.decode()
    assert User.objects.count() == 1


def test_the_changelist_shows_name_email_created_and_searches(admin_client):
    services.user_create(name="Ann", email="ann@example.org")
    services.user_create(name="Bob", email="bob@example.org")
    page = admin_client.get(CHANGELIST, {"q": "ann@"}).content.decode()
    assert "ann@example.org" in page
    assert "bob@example.org" not in page
    assert "column-created_at" in page
    assert admin_client.get(CHANGELIST, {"o": "-1"}).status_code == 200


ADMIN_WRITES = {
    "add_user": lambda ann: (f"{CHANGELIST}add/", {"name": "New", "email": ""}),
    "change_user": lambda ann: (f"{CHANGELIST}{ann.pk}/change/", {"name": "New", "email": ""}),
    "delete_user": lambda ann: (f"{CHANGELIST}{ann.pk}/delete/", {"post": "yes"}),
}


@pytest.mark.parametrize("perm", ADMIN_WRITES)
def test_each_admin_write_needs_its_model_permission(client, perm):
    ann = services.user_create(name="Ann")
    path, form = ADMIN_WRITES[perm](ann)
    others = {"view_user", *ADMIN_WRITES} - {perm}
    client.force_login(make_staff("lacking", perms=others))
    assert client.post(path, form).status_code == 403
    assert list(User.objects.values_list("name", flat=True)) == ["Ann"]
    client.force_login(make_staff("allowed", perms=["view_user", perm]))
    assert client.post(path, form).status_code == 302
    assert list(User.objects.values_list("name", flat=True)) != ["Ann"]


def test_tokens_are_created_and_revoked_in_the_admin(admin_client):
    account = make_account("app")
    response = admin_client.post("/admin/authtoken/tokenproxy/add/", {"user": account.pk})
    assert response.status_code == 302, response.content
    token = Token.objects.get(user=account)
    response = admin_client.post(
        f"/admin/authtoken/tokenproxy/{account.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Token.objects.filter(key=token.key).exists()


@pytest.mark.parametrize("page", ["change", "delete"])
def test_a_user_deleted_while_its_admin_page_was_open_is_reported_not_saved(
    admin_client, monkeypatch, page
):
    from users.admin import UserAdmin

    ann = services.user_create(name="Ann")
    get_object = UserAdmin.get_object

    def load_then_lose(admin, *args, **kwargs):
        loaded = get_object(admin, *args, **kwargs)
        User.objects.filter(pk=loaded.pk).delete()
        return loaded

    monkeypatch.setattr(UserAdmin, "get_object", load_then_lose)
    data = {"name": "Anna", "email": ""} if page == "change" else {"post": "yes"}
    response = admin_client.post(f"{CHANGELIST}{ann.pk}/{page}/", data, follow=True)
    assert response.status_code == 200
    assert "Someone else deleted this user" in response.content.decode()
    # The admin's transaction, the test's delete with it, rolled back: nothing else was written.
    assert [user.name for user in User.objects.all()] == ["Ann"]


def test_an_admin_save_over_a_change_made_since_the_form_opened_is_refused_with_what_changed(
    admin_client,
):
    ann = services.user_create(name="Ann")
    page = admin_client.get(f"{CHANGELIST}{ann.pk}/change/").content.decode()
    assert f'name="seen_version" value="{ann.version}"' in page
    services.user_update(User.objects.get(pk=ann.pk), name="Anna")  # someone else, meanwhile
    response = admin_client.post(
        f"{CHANGELIST}{ann.pk}/change/",
        {"name": "Annie", "email": "", "seen_version": ann.version},
        follow=True,
    )
    text = response.content.decode()
    assert "Someone else changed this user since you opened it" in text
    assert "name is now “Anna”" in text
    assert User.objects.get().name == "Anna"
    saved = admin_client.post(
        f"{CHANGELIST}{ann.pk}/change/",
        {"name": "Annie", "email": "", "seen_version": User.objects.get().version},
    )
    assert saved.status_code == 302
    assert User.objects.get().name == "Annie"
