"""Callers taking turns (`app.fairness.OneAtATime`): the parts no endpoint test reaches."""

import asyncio

import pytest

from app.errors import Busy
from app.fairness import OneAtATime


async def test_a_waiter_gives_up_after_its_patience_and_the_next_one_still_gets_its_turn():
    gate = OneAtATime("job", patience_seconds=0.05)
    running, done = asyncio.Event(), asyncio.Event()

    async def hold(caller: str) -> None:
        async with gate.turn(caller):
            running.set()
            await done.wait()

    first = asyncio.create_task(hold("a"))
    await running.wait()
    with pytest.raises(Busy, match=r"no turn for this job within 0\.05 s"):
        async with gate.turn("b"):
            pass
    assert gate.waiting == 0 and not gate.has("b")
    third = asyncio.create_task(hold("c"))
    await asyncio.sleep(0)
    done.set()
    await asyncio.wait_for(asyncio.gather(first, third), 5)
    assert not gate.busy


async def test_the_patient_sweeper_waits_past_the_bound_and_the_patience():
    gate = OneAtATime("verify", max_waiting=0, patience_seconds=0.01)
    async with gate.turn("a"):
        with pytest.raises(Busy):
            async with gate.turn("b"):
                pass
        sweeper = asyncio.create_task(gate.turn("sweeper", is_patient=True).__aenter__())
        await asyncio.sleep(0.05)
        assert not sweeper.done() and gate.has("sweeper")
    await asyncio.wait_for(sweeper, 5)
