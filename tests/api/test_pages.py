import re

import pytest

from tests.helpers import make_account

pytestmark = pytest.mark.django_db


def test_the_page_has_the_list_a_labelled_form_and_the_api_docs_link(client):
    page = client.get("/").content.decode()
    assert 'id="users"' in page
    assert '<label for="name">' in page and '<label for="email">' in page  # noqa: PT018
    assert 'type="module"' in page and "users/live-list.js" in page  # noqa: PT018
    assert 'href="/api/docs/"' in page
    assert "https://" not in page, "the page must load nothing from another site"


def test_without_permission_the_page_says_so_instead_of_offering_the_form(client, settings):
    settings.USERS_ANONYMOUS_WRITES = False
    page = client.get("/").content.decode()
    assert 'id="add-user-refused"' in page
    assert 'id="add-user"' not in page


def test_without_anonymous_reads_a_visitor_is_sent_to_the_login(client, settings):
    settings.USERS_ANONYMOUS_READS = False
    response = client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/admin/login/?next=/")


def test_without_anonymous_reads_a_logged_in_user_gets_the_page(client, settings):
    settings.USERS_ANONYMOUS_READS = False
    client.force_login(make_account())
    assert 'id="users"' in client.get("/").content.decode()


def test_an_admin_gets_edit_links_and_a_visitor_none(client, admin_client):
    assert 'data-edit-url="/admin/users/user/0/change/"' in admin_client.get("/").content.decode()
    assert "data-edit-url" not in client.get("/").content.decode()


def test_a_user_without_staff_access_gets_no_edit_links(client):
    client.force_login(make_account(perms=["change_user"]))
    assert "data-edit-url" not in client.get("/").content.decode()


def test_the_count_not_the_list_announces_changes(client):
    """The list renders rows as it scrolls: announcing those would read it aloud."""
    page = client.get("/").content.decode()
    assert re.search(r'<span id="count"[^>]*aria-live="polite"', page)
    assert not re.search(r'id="users(-view)?"[^>]*aria-live', page)


@pytest.mark.parametrize(
    "path",
    [
        "users/live-list.js",
        "users/add-user-form.js",
        "users/list-controls.js",
        "users/virtual-list.js",
        # The JavaScript client, from clients/js/src (STATICFILES_DIRS): live-list.js imports it.
        "usersite-client/usersite-client.js",
    ],
)
def test_the_page_scripts_are_served(client, path):
    response = client.get(f"/static/{path}")
    assert response.status_code == 200


def test_the_page_has_a_search_box_and_sort_buttons_for_the_id_and_name_columns(client):
    page = client.get("/").content.decode()
    assert '<label for="search">' in page
    assert re.search(r'<button type="button"[^>]*data-column="id"[^>]*aria-pressed="true"', page)
    assert re.search(r'<button type="button"[^>]*data-column="name"[^>]*aria-pressed="false"', page)
