"""
Fixtures shared by the whole suite, and the check of external services.

When REDIS_URL or DATABASE_URL name a server, that server must answer: with
USERSITE_REQUIRE_SERVICES=1 (CI) a silent one stops the run, otherwise every
test is skipped with the reason.
"""

import importlib
import os
import socket
from urllib.parse import urlsplit, urlunsplit

import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import channel_layers, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connections

from users.live import snapshots
from users.live.snapshots import VERSION_ROW
from users.models import UserListVersion
from users.sockets.routing import SOCKET_PATH
from usersite.asgi import application

# The ``database`` fixture: real database failures, for the tests of each way through.
pytest_plugins = ["tests.database_faults"]

DEFAULT_PORTS = {"redis": 6379, "postgres": 5432, "postgresql": 5432}


def _unreachable_services() -> list[str]:
    problems = []
    for variable in ("REDIS_URL", "DATABASE_URL"):
        url = urlsplit(os.environ.get(variable, ""))
        if url.scheme not in DEFAULT_PORTS:
            continue
        address = (url.hostname or "127.0.0.1", url.port or DEFAULT_PORTS[url.scheme])
        try:
            socket.create_connection(address, timeout=3).close()
        except OSError as exc:
            problems.append(
                f"{variable} names {address[0]}:{address[1]}, which is not reachable ({exc})"
            )
    return problems


def pytest_configure(config):
    # PBKDF2's million rounds protect real passwords; the test accounts need
    # none, and hashing theirs was seconds of every run (Django's own advice).
    django_settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    _own_redis_database_per_worker()


def _own_redis_database_per_worker() -> None:
    """Under pytest-xdist (``dev.py test``), give each worker a Redis database of its own.

    Every test empties the channel layer and the cache, and the end-to-end
    servers meet in a group: workers sharing a database would empty and join
    each other's. Worker gwN takes REDIS_URL's database + 1 + N, for the
    settings and for the servers it starts, which inherit REDIS_URL.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    url = urlsplit(os.environ.get("REDIS_URL", ""))
    if not worker or not url.scheme.startswith("redis"):
        return
    database = int(url.path.strip("/") or 0) + 1 + int(worker.removeprefix("gw"))
    os.environ["REDIS_URL"] = urlunsplit(url._replace(path=f"/{database}"))
    # Settings were read at startup; read them again for what depends on REDIS_URL.
    reread = importlib.reload(importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"]))
    for name in ("REDIS_URL", "CHANNEL_LAYERS", "CACHES"):
        setattr(django_settings, name, getattr(reread, name))


def pytest_collection_modifyitems(config, items):
    problems = _unreachable_services()
    if not problems:
        return
    reason = "; ".join(problems)
    if os.environ.get("USERSITE_REQUIRE_SERVICES") == "1":
        raise pytest.UsageError(f"USERSITE_REQUIRE_SERVICES=1 but {reason}")
    for item in items:
        item.add_marker(pytest.mark.skip(reason=f"{reason}; start it or unset the variable"))


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """Test on SQLite in a file, in WAL mode, as runserver does.

    Django's default test database is a shared-cache memory database, whose
    table locks fail at once ("database table is locked") where a file waits
    or lets a reader run beside the writer, so tests that write on one thread
    while the relay reads on another failed there and nowhere else.
    """
    database = django_settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database["TEST"]["NAME"] = str(tmp_path_factory.mktemp("database") / "test.sqlite3")


@pytest.fixture(autouse=True)
def no_connection_left_in_the_async_tests_thread():
    """
    Close the database connection that async tests' ORM calls leave open.

    They run in asgiref's one thread for sync code (no async_to_sync around a
    test), and the async ORM (``aget``, ``asave``) does not close what it
    opened: left open, it kept PostgreSQL from dropping the test database.
    """
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture(autouse=True)
def empty_channel_layer():
    """
    Start every test on a channel layer of its own, without groups or messages
    left by another (Redis keeps them).

    A server process has one event loop, every test one of its own: channels-redis
    keeps per-channel locks across loops, and one that a closed loop left held
    failed the next test's receive ("bound to a different event loop").
    """
    channel_layers.backends.clear()
    async_to_sync(get_channel_layer().flush)()


@pytest.fixture(autouse=True)
def list_version_row(request):
    """
    Give every database test the version row that migration 0003 creates.

    A transactional test ends by emptying every table, that row included.
    """
    if request.node.get_closest_marker("django_db"):
        request.getfixturevalue("db")
        UserListVersion.objects.get_or_create(pk=VERSION_ROW)


@pytest.fixture(autouse=True)
def no_frames_of_another_test():
    """
    Forget the list frames that a test encoded: the next test's database starts
    again at the same epoch and version with other users, which a deployment's never does.
    """
    snapshots.newest_frames.clear()


@pytest.fixture(autouse=True)
def no_throttle_counts():
    """Start every test with no REST writes counted against its client's rate."""
    cache.clear()


@pytest.fixture
async def connect():
    """Open sockets on the real ASGI application (origin check, sessions, routing)."""
    communicators = []

    async def open_socket(path=SOCKET_PATH, headers=(), subprotocols=None):
        communicator = WebsocketCommunicator(
            application, path, headers=list(headers), subprotocols=subprotocols
        )
        # Longer than channels' one second: hundreds of sockets may connect at once.
        connected, _ = await communicator.connect(timeout=5)
        assert connected, "the socket was refused"
        communicators.append(communicator)
        return communicator

    yield open_socket
    for communicator in communicators:
        await communicator.disconnect()
