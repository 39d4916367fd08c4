"""The job queue on Valkey streams: redelivery after a crash, retries, dead letters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis

from infra.jobs import Job, JobQueue, Worker
from tests.projections.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
# A worker process whose handler dies (SIGKILL, no cleanup) in the middle of its first attempt.
DOOMED_WORKER = """
import os, signal, sys
from infra.jobs import JobQueue, Worker
queue = JobQueue(sys.argv[1], "work", prefix=sys.argv[2], claim_after=0.2)
def die(job):
    os.kill(os.getpid(), signal.SIGKILL)
Worker(queue, {"count": die}, consumer="doomed").work_once(block=5)
"""


def test_a_job_whose_worker_is_killed_mid_job_is_redelivered_and_completed_once(
        redis_url: str, name: str) -> None:
    prefix = f"test:{name}"
    queue = JobQueue(redis_url, "work", prefix=prefix, claim_after=0.2)
    effects = redis.Redis.from_url(redis_url, decode_responses=True)
    job_id = queue.enqueue("count", {"n": 1})
    assert queue.enqueue("count", {"n": 1}, job_id=job_id) == job_id  # added once

    doomed = subprocess.run([sys.executable, "-c", DOOMED_WORKER, redis_url, prefix], cwd=ROOT,
                            capture_output=True, timeout=120)
    assert doomed.returncode == -9, doomed.stderr.decode()[-2000:]
    assert (queue.get(job_id).status, queue.get(job_id).attempts) == ("processing", 1)

    def count(job: Job) -> int:
        return int(effects.incr(f"{prefix}:effect:{job.id}"))

    worker = Worker(queue, {"count": count}, consumer="survivor")
    wait_until(lambda: worker.work_once(block=0.05) and queue.get(job_id).status == "completed",
               "the abandoned job to be claimed and completed")
    job = queue.get(job_id)
    assert (job.attempts, job.completions, job.result) == (2, 1, 1)
    assert effects.get(f"{prefix}:effect:{job_id}") == "1"

    # A stray redelivery of a finished job is acknowledged without running it again.
    queue.redis.xadd(queue.stream, {"job": job_id})
    assert worker.work_once() == 1
    assert effects.get(f"{prefix}:effect:{job_id}") == "1"
    assert queue.redis.xpending(queue.stream, "workers")["pending"] == 0
    assert queue.counts()["completed"] == 1

    # An entry naming a record that is not a job (no id, kind or payload) is dropped, not
    # raised out of the worker, and the worker goes on with the next entry.
    queue.redis.hset(queue.key("stray"), mapping={"status": "processing"})
    queue.redis.xadd(queue.stream, {"job": "stray"})
    second = queue.enqueue("count", {"n": 2})
    assert worker.work_once() == 2
    assert queue.get(second).status == "completed"
    assert queue.redis.xpending(queue.stream, "workers")["pending"] == 0
    queue.close()


def test_a_job_failing_three_times_lands_in_the_dead_letter_stream_with_its_error(
        redis_url: str, name: str) -> None:
    queue = JobQueue(redis_url, "work", prefix=f"test:{name}", backoff=0.01, max_attempts=3)
    tries: list[int] = []

    def flaky(job: Job) -> None:
        tries.append(job.attempts)
        raise ValueError(f"boom on attempt {job.attempts}")

    job_id = queue.enqueue("flaky", {"room": "garden"})
    worker = Worker(queue, {"flaky": flaky}).start()
    try:
        wait_until(lambda: queue.get(job_id).status == "failed", "the job to fail for good")
    finally:
        worker.stop()
    assert tries == [1, 2, 3]
    [dead] = queue.dead_letters()
    assert (dead["job"], dead["kind"], dead["payload"], dead["attempts"]) == \
        (job_id, "flaky", {"room": "garden"}, 3)
    assert dead["error"] == "ValueError: boom on attempt 3"
    assert queue.get(job_id).error == "ValueError: boom on attempt 3"
    assert queue.counts() == {"pending": 0, "processing": 0, "completed": 0, "failed": 1,
                              "dead_letters": 1}
    assert queue.delay(1) < queue.delay(2) < queue.delay(3)
    queue.close()
