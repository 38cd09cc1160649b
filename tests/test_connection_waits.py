"""usersite.connection_waits, and what uvicorn's protocol asks of its waits."""

import ast
import asyncio
import inspect

import pytest
from uvicorn.protocols.websockets import websockets_sansio_impl

from usersite.connection_waits import Flag, Inbox


async def test_an_inbox_hands_out_messages_in_the_order_they_came():
    inbox = Inbox()
    inbox.put_nowait("connect")
    inbox.put_nowait("receive")
    assert await inbox.get() == "connect"
    assert not inbox.empty()
    assert await inbox.get() == "receive"
    assert inbox.empty()


async def test_an_inbox_wakes_its_waiting_reader():
    inbox = Inbox()
    reading = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)  # the reader now waits
    inbox.put_nowait("disconnect")
    assert await reading == "disconnect"


async def test_an_inbox_refuses_a_second_reader():
    inbox = Inbox()
    reading = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already waiting"):
        await inbox.get()
    inbox.put_nowait("receive")
    assert await reading == "receive"


async def test_a_cancelled_read_leaves_the_inbox_to_the_next_one():
    inbox = Inbox()
    reading = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    inbox.put_nowait("receive")
    assert await inbox.get() == "receive"


async def test_a_set_flag_lets_waiters_through_at_once():
    flag = Flag(True)
    assert flag.is_set()
    assert await flag.wait() is True


async def test_a_cleared_flag_holds_every_waiter_until_it_is_set():
    flag = Flag(True)
    flag.clear()
    waiting = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in waiting)
    flag.set()
    assert await asyncio.gather(*waiting) == [True, True, True]


async def test_a_cancelled_wait_leaves_the_other_waiters():
    flag = Flag()
    cancelled, kept = asyncio.create_task(flag.wait()), asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    flag.set()
    assert await kept is True


def methods_called_on(attribute: str) -> set[str]:
    """The methods uvicorn's websockets-sansio protocol calls on ``self.<attribute>``."""
    tree = ast.parse(inspect.getsource(websockets_sansio_impl))
    return {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == attribute
        and isinstance(node.func.value.value, ast.Name)
        and node.func.value.value.id == "self"
    }


@pytest.mark.parametrize(("attribute", "wait"), [("queue", Inbox), ("writable", Flag)])
def test_uvicorn_uses_only_what_the_waits_offer(attribute, wait):
    used = methods_called_on(attribute)
    assert used  # the protocol still has this attribute
    assert all(hasattr(wait, method) for method in used), used
