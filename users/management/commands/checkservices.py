"""``manage.py checkservices``: fail at once, with the cause, when the database or Redis is down."""

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from users.redis_clients import RedisServers

CONNECT_TIMEOUT = 5  # seconds: an address that drops packets fails too, not only a refusal


class Command(BaseCommand):
    help = (
        "Check that the database (DATABASE_URL) and Redis (REDIS_URL, or the primary "
        "REDIS_SENTINELS name) answer. Run it before "
        "starting servers: theirs wait for the database's pool and report only a timeout."
    )

    def handle(self, *args, **options):
        problems = [problem for problem in (database_problem(), redis_problem()) if problem]
        if problems:
            raise CommandError("\n".join(problems))
        self.stdout.write("The database and Redis answer.")


def database_problem() -> str | None:
    """Connect once, outside the pool, and return why that failed (None if it did not)."""
    default = connections[DEFAULT_DB_ALIAS]
    # The pool retries a failing connection for 30 s, then says only that it
    # timed out; a connection of its own fails at once with the server's reason.
    options = dict(default.settings_dict["OPTIONS"])
    options.pop("pool", None)
    postgres = default.vendor == "postgresql"
    if postgres:
        options["connect_timeout"] = CONNECT_TIMEOUT
    probe = type(default)({**default.settings_dict, "OPTIONS": options}, DEFAULT_DB_ALIAS)
    try:
        with probe.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        problem = f"DATABASE_URL: {exc}".strip()
        if postgres and "does not exist" in str(exc):
            problem += f"\nCreate it: {createdb_command(default.settings_dict)}"
        return problem
    finally:
        probe.close()
    return None


def createdb_command(database: dict) -> str:
    """Return the shell command that creates the PostgreSQL database of these settings."""
    command = ["createdb"]
    for option, key in (("-h", "HOST"), ("-p", "PORT"), ("-U", "USER")):
        if database.get(key):
            command += [option, str(database[key])]
    return " ".join([*command, database["NAME"]])


def redis_problem() -> str | None:
    """
    Ping Redis, if set: REDIS_URL, or the primary that REDIS_SENTINELS name.
    Return why that failed (None if it did not).
    """
    if not settings.REDIS_URL:
        return None  # the in-memory channel layer needs no server
    variable = "REDIS_SENTINELS" if settings.REDIS_SENTINELS else "REDIS_URL"
    client = RedisServers.from_settings(settings).sync_client(
        socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"{variable}: {exc}"
    finally:
        client.close()
    return None
