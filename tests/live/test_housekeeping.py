"""The cluster's duties run in every server process, with or without sockets."""

import asyncio
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from channels.testing import ApplicationCommunicator
from django.core.management import call_command
from django.db import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from users import services
from users.live import history, housekeeping, lifespan, relay
from users.models import CommandReceipt, UserTombstone
from usersite.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def expired_history(settings) -> None:
    """A tombstone and a command receipt, both older than the history kept."""
    services.user_delete(services.user_create(name="Ann"))
    CommandReceipt.objects.create(
        requester="anonymous", request_id="r1", action="create", result={}
    )
    settings.USERS_HISTORY_SECONDS = 0


def history_left() -> tuple[int, int]:
    return UserTombstone.objects.count(), CommandReceipt.objects.count()


ahistory_left = sync_to_async(history_left)


class Sweeps(list):
    """The results of the housekeeper's sweeps, as they end."""

    def __init__(self):
        super().__init__()
        self.ended = asyncio.Event()

    async def until(self, count: int, timeout: float = 3) -> None:
        async with asyncio.timeout(timeout):
            while len(self) < count:
                self.ended.clear()
                await self.ended.wait()


def count_sweeps(monkeypatch) -> Sweeps:
    """Have the housekeeper sweep every 0.05 s, and record each sweep's result."""
    monkeypatch.setattr(housekeeping, "FORGET_INTERVAL", 0.05)
    sweeps, sweep = Sweeps(), housekeeping.asweep

    async def counted_sweep(period):
        try:
            sweeps.append(await sweep(period))
        except Exception as exc:
            sweeps.append(exc)
            raise
        finally:
            sweeps.ended.set()
        return sweeps[-1]

    monkeypatch.setattr(housekeeping, "asweep", counted_sweep)
    return sweeps


async def started(app=application) -> ApplicationCommunicator:
    """Run the server's ASGI lifespan startup, as uvicorn does: no request, no socket."""
    lifespan = ApplicationCommunicator(app, {"type": "lifespan", "asgi": {"version": "3.0"}})
    await lifespan.send_input({"type": "lifespan.startup"})
    assert await lifespan.receive_output(3) == {"type": "lifespan.startup.complete"}
    return lifespan


async def stopped(lifespan: ApplicationCommunicator) -> None:
    await lifespan.send_input({"type": "lifespan.shutdown"})
    assert await lifespan.receive_output(3) == {"type": "lifespan.shutdown.complete"}


async def test_a_process_that_serves_no_socket_forgets_the_expired_history(settings, monkeypatch):
    await sync_to_async(expired_history)(settings)
    monkeypatch.setattr(relay, "_relay", None)
    sweeps = count_sweeps(monkeypatch)
    lifespan = await started()
    await sweeps.until(1)
    await stopped(lifespan)
    assert sweeps[0] == (1, 1)
    assert await ahistory_left() == (0, 0)
    assert relay._relay is None  # no socket started a relay


async def test_a_database_outage_is_logged_and_the_next_period_forgets(
    settings, monkeypatch, caplog
):
    await sync_to_async(expired_history)(settings)
    sweeps = count_sweeps(monkeypatch)
    monkeypatch.setattr(housekeeping, "claim_period", lambda period: True)
    forget = history.try_forget_expired
    outages = iter([OperationalError("connection refused")] * 2)

    def forget_after_an_outage():
        error = next(outages, None)
        if error is not None:
            raise error
        return forget()

    monkeypatch.setattr(history, "try_forget_expired", forget_after_an_outage)
    lifespan = await started()
    await sweeps.until(3)
    await stopped(lifespan)
    assert sweeps[2] == (1, 1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "users.live.housekeeping"]
    assert (
        warnings[:2]
        == ["Could not forget the expired history; trying again later: connection refused"] * 2
    )


async def test_of_two_sweeps_at_once_in_the_cluster_one_forgets(settings):
    await sync_to_async(expired_history)(settings)
    results = await asyncio.gather(housekeeping.asweep(60), housekeeping.asweep(60))
    assert sorted(results, key=str) == [(1, 1), None]
    # The period is claimed: a sweep later in it does nothing.
    assert await housekeeping.asweep(60) is None


def test_a_sweep_goes_ahead_when_the_cache_that_claims_periods_fails(settings, monkeypatch):
    expired_history(settings)

    def failing_add(*args, **kwargs):
        raise RedisConnectionError("Connection refused.")

    monkeypatch.setattr(housekeeping.cache, "add", failing_add)
    assert housekeeping.sweep(60) == (1, 1)


def test_forgetexpired_forgets_now_and_says_what(settings):
    expired_history(settings)
    out = StringIO()
    call_command("forgetexpired", stdout=out)
    assert out.getvalue() == "Forgot 1 tombstones and 1 command receipts.\n"
    assert history_left() == (0, 0)


async def test_a_server_without_lifespan_events_starts_the_housekeeper_at_its_first_connection():
    async def app(scope, receive, send):
        pass

    await lifespan.StartHousekeeping(app)({"type": "http"}, None, None)
    keeper = housekeeping.housekeeper()
    assert not keeper.task.done()
    await keeper.stop()
