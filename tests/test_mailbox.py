"""mailbox.Flag: asyncio.Event's behaviour without its per-instance deque."""

from __future__ import annotations

import asyncio

import pytest

from elog_stream.mailbox import Flag


async def _waiting(flag: Flag) -> asyncio.Task[bool]:
    """A task suspended in ``flag.wait()`` when this returns."""
    entered = asyncio.Event()

    async def wait() -> bool:
        entered.set()
        return await flag.wait()

    task = asyncio.create_task(wait())
    await entered.wait()
    return task


async def test_set_wakes_every_waiter_and_a_cancelled_one_is_forgotten() -> None:
    flag = Flag()
    first, cancelled, last = [await _waiting(flag) for _ in range(3)]
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not flag.is_set()
    flag.set()
    assert await asyncio.gather(first, last) == [True, True]
    assert flag._waiters is None  # nothing held once no one waits


async def test_wait_returns_at_once_while_set_and_waits_again_once_cleared() -> None:
    flag = Flag()
    flag.set()
    flag.set()  # setting twice changes nothing
    assert flag.is_set() and await flag.wait()
    flag.clear()
    waiter = await _waiting(flag)
    assert not waiter.done()
    flag.set()
    assert await waiter


async def test_cancelling_the_only_waiter_leaves_nothing_behind() -> None:
    flag = Flag()
    waiter = await _waiting(flag)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert flag._waiters is None
