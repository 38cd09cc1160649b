"""``manage.py checkservices``: the database and Redis answer, or the command says why not."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from users.management.commands.checkservices import createdb_command

# Transactional: the check opens a connection of its own, which a test's atomic block refuses.
pytestmark = pytest.mark.django_db(transaction=True)


def test_it_passes_when_everything_answers():
    out = StringIO()
    call_command("checkservices", stdout=out)
    assert out.getvalue().strip() == "The database and Redis answer."


def test_it_fails_naming_an_unreachable_redis(settings, unused_tcp_port):
    settings.REDIS_URL = f"redis://127.0.0.1:{unused_tcp_port}/0"
    with pytest.raises(CommandError, match=f"REDIS_URL: .*127.0.0.1:{unused_tcp_port}"):
        call_command("checkservices")


def test_it_fails_naming_sentinels_that_do_not_answer(settings, unused_tcp_port):
    settings.REDIS_SENTINELS = [("127.0.0.1", unused_tcp_port)]
    settings.REDIS_SENTINEL_MASTER = "users-primary"
    settings.REDIS_URL = "redis://users-primary/0"
    with pytest.raises(CommandError, match="REDIS_SENTINELS: No master found for 'users-primary'"):
        call_command("checkservices")


def test_createdb_command_names_the_server_and_the_role_of_the_settings():
    database = {"NAME": "usersite", "HOST": "db.internal", "PORT": 5432, "USER": "usersite"}
    assert createdb_command(database) == "createdb -h db.internal -p 5432 -U usersite usersite"
    assert createdb_command({"NAME": "usersite", "HOST": "", "USER": ""}) == "createdb usersite"
