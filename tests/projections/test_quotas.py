"""Quotas: thread and user size limits, checked with usage from the threads view."""

from __future__ import annotations

import pytest

from domain.errors import Conflict, RateLimited
from domain.rooms import Room
from projections.quotas import Limits, Quotas, QuotaSettings, Usage, check_post
from projections.runner import Runner
from projections.threads import Threads
from projections.views import Reader


def test_check_post_says_which_limit_a_post_would_pass() -> None:
    limits = Limits(thread_messages=3, thread_bytes=100, user_messages=5, user_bytes=50)
    check_post(limits, "garden", Usage(2, 90), "ann", Usage(4, 40), "0123456789")
    with pytest.raises(Conflict, match="room 'garden' is full: it holds 3 messages"):
        check_post(limits, "garden", Usage(3, 10), "ann", Usage(0, 0), "hi")
    with pytest.raises(Conflict, match="take 95 bytes and this one 6"):
        check_post(limits, "garden", Usage(1, 95), "ann", Usage(0, 0), "héllo")
    with pytest.raises(RateLimited, match="ann has posted 5 messages"):
        check_post(limits, "garden", Usage(0, 0), "ann", Usage(5, 5), "hi")
    with pytest.raises(RateLimited, match="past their quota of 50"):
        check_post(limits, "garden", Usage(0, 0), "ann", Usage(1, 45), "123456")
    check_post(Limits(thread_messages=None, thread_bytes=None, user_bytes=None), "garden",
               Usage(10**9, 10**12), "ann", Usage(10**9, 10**12), "hi")


def test_quotas_read_usage_from_the_threads_view(
        platform, database_url: str, schema: str, name: str, monkeypatch) -> None:
    author = f"{name}-ann"
    for room_name in (name, f"{name}-2"):
        room = Room.create(room_name, author)
        room.post(author, "x" * 30)
        platform.store.save(room.collect_events())
    runner = Runner(Threads, database_url, schema).start()
    reader = Reader(database_url, schema)
    try:
        runner.wait_for()
        monkeypatch.setenv("SALON_QUOTA_THREAD_BYTES", "50")
        monkeypatch.setenv("SALON_QUOTA_USER_BYTES", "70")
        quotas = Quotas(reader, QuotaSettings())
        assert quotas.usage(name, author) == (Usage(1, 30), Usage(2, 60))
        quotas.check(name, author, "y" * 10)
        with pytest.raises(RateLimited):
            quotas.check(name, author, "y" * 11)
        with pytest.raises(Conflict):
            quotas.check(name, author, "y" * 10, pending=Usage(1, 11))
    finally:
        reader.close()
        runner.close()
