import logging

from django.db import OperationalError

from users.outages import Outage

logger = logging.getLogger("users.test_outages")


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(caplog):
    outage = Outage(logger, "The database is down", "The database is back")
    with caplog.at_level(logging.WARNING, logger="users.test_outages"):
        for _ in range(50):
            outage.failed(OperationalError("server closed the connection\nunexpectedly"))
        for _ in range(3):
            outage.worked()
        outage.failed(OperationalError("connection refused"))
    assert [record.getMessage() for record in caplog.records] == [
        "The database is down (OperationalError: server closed the connection unexpectedly)",
        "The database is back",
        "The database is down (OperationalError: connection refused)",
    ]
    assert all(record.exc_info is None for record in caplog.records)  # no traceback
