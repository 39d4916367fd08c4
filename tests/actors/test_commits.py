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
