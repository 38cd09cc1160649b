"""A REST request whose database fails under it, on a real PostgreSQL (tests.database_faults)."""

import logging

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.helpers import make_account

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="terminates PostgreSQL backends"),
]


def test_a_write_whose_connection_is_cut_gets_503_to_retry_and_is_not_stored(database, caplog):
    api = APIClient()
    api.force_authenticate(make_account(perms=["add_user"]))
    database.install("cut_on_insert")

    response = api.post("/api/v1/users", {"name": "Lost"}, format="json")

    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["detail"].startswith("The database is unavailable; try again.")
    # One line saying why (Django adds its own line for every 5xx), and no traceback.
    ours = [record for record in caplog.records if record.name == "users.api.errors"]
    assert [record.levelno for record in ours] == [logging.WARNING]
    assert "\n" not in ours[0].getMessage()
    assert not any(record.exc_info for record in caplog.records)
    database.remove_faults()
    connection.close()  # the test's own connection was the one cut
    assert database.names() == []
    assert api.post("/api/v1/users", {"name": "Kept"}, format="json").status_code == 201
