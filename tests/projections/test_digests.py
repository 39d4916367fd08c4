"""Titles and summaries: planned from the threads view, made by jobs, recorded once."""

from __future__ import annotations

from domain.ids import room_id
from domain.rooms import Room
from domain.threads import thread_id
from infra.jobs import JobQueue, Worker
from infra.store import EventStore
from projections import threads
from projections.digests import DigestJobs, plan, summary_of, title_of
from projections.runner import Runner
from projections.threads import Threads
from projections.views import Reader
from tests.projections.conftest import wait_until


def test_titles_and_summaries_are_made_by_jobs_and_recorded_once(
        platform, database_url: str, redis_url: str, schema: str, name: str) -> None:
    store: EventStore = platform.store
    room = Room.create(name, "alice")
    room.join("bob", "human")
    lines = ["@bob How should we water the balcony tomatoes? They wilt by noon.",
             "Water tomatoes deeply at dawn; mulch keeps the pots cool.",
             "Mulch it is. What about feeding the tomatoes?",
             "Feed tomatoes weekly once the first flowers open."]
    for n, line in enumerate(lines):
        room.post("alice" if n % 2 == 0 else "bob", line)
    store.save(room.collect_events())

    runner = Runner(Threads, database_url, schema).start()
    reader = Reader(database_url, schema)
    queue = JobQueue(redis_url, "digests", prefix=f"test:{name}", backoff=0.01)
    worker = Worker(queue, DigestJobs(store).handlers)
    try:
        runner.wait_for()
        asked = plan(reader, queue, summary_every=4, rooms=[name])
        # The platform's own digest jobs may have titled the room first (its planner sees
        # every room): then only the rest is asked for here; each is still recorded once.
        assert set(asked) <= {f"summary:{name}:1", f"title:{name}"} and asked, asked

        def done() -> bool:
            worker.work_once(block=0.05)
            runner.wait_for()
            row = threads.thread(reader, name)
            return all(queue.get(job).status == "completed" for job in asked) and \
                bool(row["title"]) and bool(row["summary"])

        wait_until(done, "the title and summary jobs")

        runner.wait_for()
        row = threads.thread(reader, name)
        assert row["title"] == "How should we water the balcony tomatoes?"
        assert row["title"] == title_of(lines)
        assert row["summary"] == summary_of([("alice" if n % 2 == 0 else "bob", line)
                                             for n, line in enumerate(lines)])
        assert row["summary"].startswith("4 messages from alice, bob.\nTopics: tomatoes")
        assert row["title_position"] == row["summary_position"] == row["last_position"]

        # Planning again asks for nothing new; a redelivered job records nothing twice.
        assert plan(reader, queue, summary_every=4, rooms=[name]) == []
        # (One this test asked for: the platform may have made the title itself.)
        again = asked[0]
        queue.redis.hset(queue.key(again), "status", "processing")
        queue.redis.xadd(queue.stream, {"job": again})
        wait_until(lambda: worker.work_once(block=0.05) and
                   queue.get(again).status == "completed", "the redelivery")
        recorded = [type(e).__name__ for e in store.events(thread_id(name))]
        assert recorded == ["ThreadOpened", "TitleGenerated", "SummaryGenerated"]
        assert store.exists(room_id(name))
    finally:
        queue.close()
        reader.close()
        runner.close()
