"""Background jobs on a Redis stream with a consumer group: nothing is lost, failures retry.

Keys of queue Q (prefix ``salon:jobs``):

- ``salon:jobs:Q`` the stream workers read with the consumer group ``workers``; an entry
  names a job id; it stays pending in the group until a worker acknowledges it;
- ``salon:jobs:Q:job:ID`` a hash per job: kind, payload, status (``pending``,
  ``processing``, ``completed``, ``failed``), attempts, last error, result, times;
- ``salon:jobs:Q:delayed`` a sorted set of jobs waiting to be retried, scored by when;
- ``salon:jobs:Q:dead`` the dead-letter stream: jobs that failed ``max_attempts`` times,
  with their last error;
- ``salon:jobs:Q:index`` a sorted set of recent job ids by creation time, for listings.

Delivery is at least once: a worker that dies mid-job leaves the entry pending, and after
``claim_after`` seconds without a heartbeat another worker claims it (``XAUTOCLAIM``) and runs
it again; handlers make their effect idempotent by the job id. A job whose hash already says
``completed`` or ``failed`` is acknowledged without running, so a redelivery after completion
runs nothing twice. Every change of state and its acknowledgement happen in one script, so a
crash between them cannot lose or duplicate a job.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from domain.errors import Invalid, NotFound, SalonError
from domain.ids import new_id

log = logging.getLogger(__name__)
STATUSES = ("pending", "processing", "completed", "failed")
GROUP = "workers"
RECENT = 10_000        # jobs kept in the listing index
KEEP_SECONDS = 7 * 86_400  # how long a finished job's hash is kept
Handler = Callable[["Job"], Any]

# KEYS: job, stream, index. ARGV: id, kind, payload, now.
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'kind', ARGV[2], 'payload', ARGV[3],
           'status', 'pending', 'attempts', 0, 'created_at', ARGV[4], 'updated_at', ARGV[4])
redis.call('XADD', KEYS[2], '*', 'job', ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(tonumber(ARGV[5]) + 1))
return 1
"""
# KEYS: delayed, stream. ARGV: now, limit. Moves due retries back onto the stream.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('XADD', KEYS[2], '*', 'job', id)
end
return #due
"""
# KEYS: job, stream. ARGV: entry, result, now, keep.
_COMPLETE = """
redis.call('HSET', KEYS[1], 'status', 'completed', 'result', ARGV[2], 'error', '',
           'updated_at', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'completions', 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('XACK', KEYS[2], 'workers', ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
return 1
"""
# KEYS: job, stream, delayed. ARGV: entry, error, now, due, id.
_RETRY = """
redis.call('HSET', KEYS[1], 'status', 'pending', 'error', ARGV[2], 'updated_at', ARGV[3],
           'retry_at', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
redis.call('XACK', KEYS[2], 'workers', ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
return 1
"""
# KEYS: job, stream, dead. ARGV: entry, error, now, id, kind, payload, attempts, keep, maxlen.
_BURY = """
redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[2], 'updated_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], '*', 'job', ARGV[4], 'kind', ARGV[5],
           'payload', ARGV[6], 'attempts', ARGV[7], 'error', ARGV[2], 'failed_at', ARGV[3])
redis.call('XACK', KEYS[2], 'workers', ARGV[1])
redis.call('XDEL', KEYS[2], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Job:
    """One job as its hash records it."""

    id: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    error: str = ""
    result: Any = None
    created_at: float = 0.0
    updated_at: float = 0.0
    completions: int = 0

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> Job:
        """Read a job's hash."""
        return cls(id=fields["id"], kind=fields["kind"], payload=json.loads(fields["payload"]),
                   status=fields["status"], attempts=int(fields.get("attempts", 0)),
                   error=fields.get("error", ""),
                   result=json.loads(fields["result"]) if fields.get("result") else None,
                   created_at=float(fields.get("created_at", 0)),
                   updated_at=float(fields.get("updated_at", 0)),
                   completions=int(fields.get("completions", 0)))

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return dict(vars(self))


class JobQueue:
    """One named queue of jobs in Redis (or Valkey)."""

    def __init__(self, redis_url: str, name: str = "default", *, prefix: str = "salon:jobs",
                 max_attempts: int = 3, backoff: float = 1.0, max_backoff: float = 300.0,
                 claim_after: float = 60.0) -> None:
        if max_attempts < 1:
            raise Invalid("a job needs at least one attempt")
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.name = name
        self.stream = f"{prefix}:{name}"
        self.dead = f"{self.stream}:dead"
        self.delayed = f"{self.stream}:delayed"
        self.index = f"{self.stream}:index"
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.claim_after = claim_after
        self._enqueue = self.redis.register_script(_ENQUEUE)
        self._promote = self.redis.register_script(_PROMOTE)
        self._complete = self.redis.register_script(_COMPLETE)
        self._retry = self.redis.register_script(_RETRY)
        self._bury = self.redis.register_script(_BURY)
        try:
            self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def key(self, job_id: str) -> str:
        """The hash of job ``job_id``."""
        return f"{self.stream}:job:{job_id}"

    def enqueue(self, kind: str, payload: dict[str, Any], job_id: str | None = None) -> str:
        """Add a job; with ``job_id``, a job of that id is added once however often asked."""
        job_id = job_id or new_id()
        self._enqueue(keys=[self.key(job_id), self.stream, self.index],
                      args=[job_id, kind, json.dumps(payload), time.time(), RECENT])
        return job_id

    def get(self, job_id: str) -> Job:
        """A job by id, or NotFound."""
        fields = self.redis.hgetall(self.key(job_id))
        if not fields:
            raise NotFound(f"job {job_id!r} does not exist (or finished over a week ago); "
                           "`salon jobs` lists recent jobs")
        return Job.from_hash(fields)

    def recent(self, limit: int = 50, status: str | None = None) -> list[Job]:
        """Newest jobs first, optionally only those with ``status``."""
        if status is not None and status not in STATUSES:
            raise Invalid(f"job status is one of {', '.join(STATUSES)}, not {status!r}")
        ids = self.redis.zrevrange(self.index, 0, RECENT - 1)
        found: list[Job] = []
        for chunk in range(0, len(ids), 500):
            with self.redis.pipeline(transaction=False) as pipe:
                for job_id in ids[chunk:chunk + 500]:
                    pipe.hgetall(self.key(job_id))
                for fields in pipe.execute():
                    if fields and (status is None or fields.get("status") == status):
                        found.append(Job.from_hash(fields))
                        if len(found) >= limit:
                            return found
        return found

    def counts(self) -> dict[str, int]:
        """How many recent jobs are in each status, and how many dead letters there are."""
        tally = dict.fromkeys(STATUSES, 0)
        for job in self.recent(limit=RECENT):
            tally[job.status] = tally.get(job.status, 0) + 1
        tally["dead_letters"] = int(self.redis.xlen(self.dead))
        return tally

    def dead_letters(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest entries of the dead-letter stream: job, kind, payload, attempts, error."""
        entries = self.redis.xrevrange(self.dead, count=limit)
        return [{"entry": entry, **fields, "payload": json.loads(fields.get("payload", "{}")),
                 "attempts": int(fields.get("attempts", 0))} for entry, fields in entries]

    def delay(self, attempts: int) -> float:
        """Seconds before retrying a job that failed ``attempts`` times (doubling, capped)."""
        return min(self.backoff * 2 ** max(attempts - 1, 0), self.max_backoff)

    def close(self) -> None:
        """Release the connection pool."""
        self.redis.close()


@dataclass
class JobSource:
    """A queue with its handlers and, optionally, a planner that enqueues its jobs: what a
    higher layer hands the job host to work besides its own queues."""

    queue: JobQueue
    handlers: dict[str, Handler]
    plan: Callable[[], Any] | None = None
    plan_every: float = 60.0
    close: Callable[[], None] | None = None


class Worker:
    """Runs handlers for the jobs of one queue, in a thread or in the caller's loop."""

    def __init__(self, queue: JobQueue, handlers: dict[str, Handler],
                 consumer: str | None = None, batch: int = 10) -> None:
        self.queue = queue
        self.handlers = handlers
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"
        self.batch = batch
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Worker:
        """Work in a background thread until ``stop``."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self.run, daemon=True,
                                        name=f"jobs-{self.queue.name}")
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the job in hand, then stop."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run(self) -> None:
        """Work until stopped, surviving Redis hiccups."""
        while not self._stopping.is_set():
            try:
                self.work_once(block=0.5)
            except Exception:  # noqa: BLE001 - a worker outlives Redis hiccups and bugs
                log.exception("job queue %s: working failed; retrying", self.queue.name)
                self._stopping.wait(1.0)

    def work_once(self, block: float = 0.0) -> int:
        """Promote due retries, claim abandoned entries, read new ones, run them; a count."""
        q = self.queue
        q._promote(keys=[q.delayed, q.stream], args=[time.time(), 100])
        entries: list[tuple[str, dict[str, str]]] = []
        claimed = q.redis.xautoclaim(q.stream, GROUP, self.consumer,
                                     min_idle_time=int(q.claim_after * 1000), start_id="0-0",
                                     count=self.batch)
        entries.extend(claimed[1])
        if not entries:
            read = q.redis.xreadgroup(GROUP, self.consumer, {q.stream: ">"}, count=self.batch,
                                      block=int(block * 1000) if block > 0 else None)
            for _, stream_entries in read or []:
                entries.extend(stream_entries)
        done = 0
        for entry, fields in entries:
            if self._stopping.is_set() and done:
                break  # the rest stay pending and are claimed later
            self._handle(entry, fields.get("job", "") if fields else "")
            done += 1
        return done

    def _handle(self, entry: str, job_id: str) -> None:
        q = self.queue
        key = q.key(job_id)
        fields = q.redis.hgetall(key) if job_id else {}
        if not fields or fields.get("status") in ("completed", "failed"):
            q.redis.xack(q.stream, GROUP, entry)  # a redelivery of something finished
            q.redis.xdel(q.stream, entry)
            return
        if not _whole(fields):
            # Not a job this queue enqueued (its record lacks id, kind or a JSON payload):
            # nothing can run it, and a retry would fail the same way.
            log.warning("job entry %s names %r, whose record is not a job (fields %s); "
                        "dropped", entry, job_id, sorted(fields))
            q.redis.xack(q.stream, GROUP, entry)
            q.redis.xdel(q.stream, entry)
            return
        attempts = int(q.redis.hincrby(key, "attempts", 1))
        q.redis.hset(key, mapping={"status": "processing", "consumer": self.consumer,
                                   "updated_at": time.time()})
        job = Job.from_hash({**fields, "attempts": str(attempts), "status": "processing"})
        handler = self.handlers.get(job.kind)
        beat = _Heartbeat(q, entry, self.consumer)
        try:
            if handler is None:
                raise Invalid(f"no handler for jobs of kind {job.kind!r}")
            with beat:
                result = handler(job)
        except Exception as error:  # noqa: BLE001 - every failure is recorded with the job
            message = error.message if isinstance(error, SalonError) else \
                f"{type(error).__name__}: {error}"
            log.warning("job %s (%s) failed, attempt %d: %s\n%s", job.id, job.kind, attempts,
                        message, traceback.format_exc(limit=3))
            now = time.time()
            if attempts >= q.max_attempts:
                q._bury(keys=[key, q.stream, q.dead],
                        args=[entry, message, now, job.id, job.kind, json.dumps(job.payload),
                              attempts, KEEP_SECONDS, RECENT])
            else:
                q._retry(keys=[key, q.stream, q.delayed],
                         args=[entry, message, now, now + q.delay(attempts), job.id])
            return
        q._complete(keys=[key, q.stream], args=[entry, json.dumps(result, default=str),
                                               time.time(),
                                               KEEP_SECONDS])


def _whole(fields: dict[str, str]) -> bool:
    """Whether a job's hash holds what ``Job.from_hash`` needs."""
    if not all(fields.get(name) for name in ("id", "kind", "payload")):
        return False
    try:
        return isinstance(json.loads(fields["payload"]), dict)
    except ValueError:
        return False


class _Heartbeat:
    """Keeps a long job's entry claimed by its worker (resets its idle time) while it runs."""

    def __init__(self, queue: JobQueue, entry: str, consumer: str) -> None:
        self.queue, self.entry, self.consumer = queue, entry, consumer
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _beat(self) -> None:
        q = self.queue
        while not self._done.wait(max(q.claim_after / 3, 0.05)):
            try:
                q.redis.xclaim(q.stream, GROUP, self.consumer, 0, [self.entry], justid=True)
            except redis.RedisError:
                log.warning("job heartbeat failed for entry %s", self.entry)
