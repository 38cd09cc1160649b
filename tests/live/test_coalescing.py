import asyncio

from users.live.coalescing import CoalescingRunner


async def test_a_request_while_idle_runs_at_once():
    runs = []

    async def job():
        runs.append(1)

    runner = CoalescingRunner(asyncio.get_running_loop(), job)
    runner.request()
    await runner.running
    assert runs == [1]
    assert runner.running is None


async def test_requests_during_a_run_share_one_run_that_starts_after_them():
    started, first_started, release = [], asyncio.Event(), asyncio.Event()

    async def job():
        started.append(len(requests))
        first_started.set()
        await release.wait()

    requests = []
    runner = CoalescingRunner(asyncio.get_running_loop(), job)
    requests.append(1)
    runner.request()
    await first_started.wait()
    for _ in range(5):
        requests.append(1)
        runner.request()
    running = runner.running
    release.set()
    await running
    # Two runs for six requests; the second saw every request made during the first.
    assert started == [1, 6]
