"""Group commit without servers: batching, and no event built on a failed save ever lands."""

from __future__ import annotations

import asyncio

import pytest

from actors.commits import GroupCommitter


async def test_waiters_are_batched_and_a_failed_save_fails_everything_built_on_it() -> None:
    saved: list[list[int]] = []
    delivered: list[int] = []
    fail_next = [False]
    resetting = asyncio.Event()
    release = asyncio.Event()

    async def save(events: list[int]) -> None:
        await asyncio.sleep(0)
        if fail_next[0]:
            fail_next[0] = False
            raise RuntimeError("disk full")
        saved.append(list(events))

    async def after(events: list[int]) -> None:
        delivered.extend(events)

    async def reset() -> None:
        resetting.set()
        await release.wait()

    committer = GroupCommitter(save, after, reset)
    await asyncio.gather(*(committer.commit([i]) for i in range(10)))
    assert [e for batch in saved for e in batch] == list(range(10))
    await committer.settle()
    assert len(saved) < 10 and delivered == list(range(10))

    fail_next[0] = True
    failing = asyncio.ensure_future(committer.commit([100]))
    await resetting.wait()
    during = asyncio.ensure_future(committer.commit([101]))
    await asyncio.sleep(0)
    release.set()
    for task in (failing, during):
        with pytest.raises(RuntimeError, match="disk full"):
            await task
    assert 101 not in [e for batch in saved for e in batch]
    await committer.commit([102])
    await committer.settle()
    assert saved[-1] == [102]


async def test_deliveries_overlap_the_next_save_but_keep_save_order() -> None:
    log: list[str] = []
    slow = asyncio.Event()

    async def save(events: list[int]) -> None:
        log.append(f"save {events}")
        await asyncio.sleep(0.01)

    async def after(events: list[int]) -> None:
        log.append(f"deliver {events} begins")
        if events == [0]:
            await slow.wait()  # the first delivery is slow: the next save must not wait
        log.append(f"deliver {events} ends")

    committer = GroupCommitter(save, after, lambda: asyncio.sleep(0))
    await committer.commit([0])
    second = asyncio.ensure_future(committer.commit([1]))
    await asyncio.wait_for(second, 5)  # saved while delivery 0 is still running
    assert log[:3] == ["save [0]", "deliver [0] begins", "save [1]"]
    settled = asyncio.ensure_future(committer.settle())
    await asyncio.sleep(0.02)
    assert not settled.done(), "settle waits for every delivery"
    slow.set()
    await asyncio.wait_for(settled, 5)
    assert log[3:] == ["deliver [0] ends", "deliver [1] begins", "deliver [1] ends"]
