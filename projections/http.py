"""HTTP pages of the read models, for the gateway to serve next to its WebSocket.

``AdminPages.respond(path, query)`` answers ``(status, content_type, body)`` for the paths
below, and None for any other path (the gateway then answers as before). It blocks on the
database: call it in a thread (``asyncio.to_thread``).

- ``/metrics``: Prometheus text, no token (bind the gateway to a private interface);
- ``/admin/audit``: the audit page (it reads the data below with the token in its URL);
- ``/admin/audit.json?token=T&agent=&room=&user=&action=&since=&until=&after=&limit=``;
- ``/admin/audit.jsonl`` and ``/admin/audit.csv`` with the same filters: exports;
- ``/admin/audit/verify?token=T``: the tamper check;
- ``/admin/projections?token=T`` and ``/admin/projections/rebuild?token=T&name=N``;
- ``/admin/jobs?token=T&queue=digests|memory&status=&limit=``: job counts, recent jobs and
  dead letters of a queue (digests by default; memory: upkeep);
- ``/admin/threads?token=T&archived=0|1|all&limit=``, ``/admin/threads/show?room=R``,
  ``/admin/threads/search?q=Q&room=R``, ``/admin/threads/archive?room=R&archived=1|0``.

Every ``/admin`` data path needs an admin's token; errors are JSON ``{"error", "message"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import psycopg

from domain import errors, policy
from domain.ids import user_id
from domain.policy import Principal
from domain.users import User, token_user
from infra import upkeep
from infra.jobs import JobQueue
from infra.settings import Settings
from infra.store import EventStore
from projections import audit, exposition, threads
from projections.archive import set_archived
from projections.pages import AUDIT_PAGE
from projections.registry import PROJECTIONS
from projections.service import DIGESTS, Projections, ProjectionSettings
from projections.verification import verify
from projections.views import Reader

Response = tuple[int, str, bytes]
JSON = "application/json; charset=utf-8"
STATUS = {errors.Invalid: 400, errors.Unauthenticated: 401, errors.Forbidden: 403,
          errors.NotFound: 404, errors.Conflict: 409, errors.RateLimited: 429,
          errors.Unavailable: 503}


def _json(data: Any, status: int = 200) -> Response:
    return status, JSON, json.dumps(data, ensure_ascii=False, default=str).encode()


def error_response(error: errors.SalonError) -> Response:
    """A Salon error as an HTTP answer with the matching status."""
    status = next((s for cls, s in STATUS.items() if isinstance(error, cls)), 500)
    return _json({"error": error.code, "message": error.message}, status)


class AdminPages:
    """Metrics, audit, projection and job pages of one installation."""

    def __init__(self, settings: Settings, store: EventStore,
                 config: ProjectionSettings | None = None) -> None:
        assert settings.database_url and settings.redis_url, "needs resolved server URLs"
        self.settings = settings
        self.store = store
        self.config = config or ProjectionSettings()
        self.projections = Projections(settings, self.config)
        self._readers: dict[str, Reader] = {}
        self._queues: dict[str, JobQueue] = {}
        self._tally: upkeep.UpkeepTally | None = None
        self.routes: dict[str, Callable[[dict[str, str]], Response]] = {
            "/admin/audit.json": self._audit_json,
            "/admin/audit.jsonl": lambda q: self._audit_export(q, "jsonl"),
            "/admin/audit.csv": lambda q: self._audit_export(q, "csv"),
            "/admin/audit/verify": self._verify,
            "/admin/projections": self._projections,
            "/admin/projections/rebuild": self._rebuild,
            "/admin/jobs": self._jobs,
            "/admin/threads": self._threads,
            "/admin/threads/show": self._thread,
            "/admin/threads/search": self._search,
            "/admin/threads/archive": self._archive,
        }

    def respond(self, path: str, query: str, bearer: str = "") -> Response | None:
        """The answer to ``GET path?query``, or None when the path is not one of these.

        Everything but the static audit page needs an admin's token, as ``?token=`` or as
        ``Authorization: Bearer`` (``bearer``); ``/metrics`` is open only when the operator
        sets ``SALON_PUBLIC_METRICS`` (for a listener only a private network reaches).
        """
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=False).items()}
        if path == "/metrics":
            def metrics(q: dict[str, str]) -> Response:
                if not self.settings.public_metrics:
                    self.check_admin(q.pop("token", "") or bearer)
                return self._metrics(q)

            return self._guarded(metrics, params)
        if path in ("/admin/audit", "/admin/audit/"):
            return 200, "text/html; charset=utf-8", AUDIT_PAGE.encode()
        route = self.routes.get(path)
        if route is None:
            return None

        def admin_only(q: dict[str, str]) -> Response:
            q["by"] = self.check_admin(q.pop("token", "") or bearer)
            return route(q)

        return self._guarded(admin_only, params)

    def check_admin(self, token: str) -> str:
        """The admin's name a token belongs to, or Unauthenticated / Forbidden."""
        if not token:
            raise errors.Unauthenticated("add ?token=… (an admin's token; `salon token create "
                                         "NAME --admin` issues one)")
        try:
            name = token_user(token)
            user = self.store.get(User, user_id(name), name)
        except (errors.Invalid, errors.NotFound):
            raise errors.Unauthenticated("that token is not valid") from None
        if not user.accepts(token, time.time()):
            raise errors.Unauthenticated("that token is not valid (revoked, expired, or never "
                                         "issued)")
        policy.require_admin(Principal(user.name, user.role), "see these pages")
        return name

    def reader(self, name: str) -> Reader:
        """A reader of projection ``name``'s view (kept open)."""
        if name not in self._readers:
            assert self.settings.database_url
            self._readers[name] = Reader(self.settings.database_url, self.config.schema(name))
        return self._readers[name]

    @property
    def queue(self) -> JobQueue:
        """The digest job queue."""
        return self.queue_of(DIGESTS)

    def queue_of(self, name: str) -> JobQueue:
        """Job queue ``name``: ``digests`` or ``memory`` (upkeep), kept open."""
        if name not in (DIGESTS, upkeep.QUEUE):
            raise errors.Invalid(f"job queues are {DIGESTS} and {upkeep.QUEUE}, not {name!r}")
        if name not in self._queues:
            assert self.settings.redis_url
            prefix = self.config.jobs_prefix if name == DIGESTS else upkeep.PREFIX
            self._queues[name] = JobQueue(self.settings.redis_url, name, prefix=prefix)
        return self._queues[name]

    def close(self) -> None:
        """Release connections."""
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        for queue in self._queues.values():
            queue.close()
        self._queues.clear()
        if self._tally is not None:
            self._tally.close()
            self._tally = None

    @staticmethod
    def _guarded(route: Callable[[dict[str, str]], Response], params: dict[str, str]
                 ) -> Response:
        try:
            return route(params)
        except errors.SalonError as error:
            return error_response(error)
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
            return error_response(errors.Unavailable(
                "that view is being built; try again in a moment"))

    # -- routes ------------------------------------------------------------------------------

    def _metrics(self, _: dict[str, str]) -> Response:
        from projections.runner import progress

        assert self.settings.database_url
        lag = exposition.Family("salon_projection_pending_events", "gauge",
                                "Events of the log a projection has still to apply.")
        position = exposition.Family("salon_projection_position", "gauge",
                                     "Log position of the last event a projection applied.")
        # One snapshot: the totals are exactly those of the events up to the metrics position.
        with self.reader("metrics").snapshot() as snapshot:
            families = exposition.agent_families(snapshot)
            for name, cls in PROJECTIONS.items():
                row = progress(self.settings.database_url, cls, self.config.schema(name),
                               conn=snapshot.conn)
                lag.add({"projection": name}, row.pending)
                position.add({"projection": name}, row.position)
        jobs = exposition.Family("salon_jobs", "gauge", "Recent background jobs by status.")
        for queue_name, queue in ((DIGESTS, self.queue), (upkeep.QUEUE, self.queue_of(
                upkeep.QUEUE))):
            for status, count in queue.counts().items():
                jobs.add({"queue": queue_name, "status": status}, count)
        text = exposition.render([*families, lag, position, jobs, *self._upkeep_families()])
        return 200, exposition.CONTENT_TYPE, text.encode()

    def _upkeep_families(self) -> list[exposition.Family]:
        """Memory upkeep passes: how many, how long, how many failed, what they removed."""
        if self._tally is None:
            assert self.settings.redis_url
            self._tally = upkeep.UpkeepTally(self.settings.redis_url)
        tally = self._tally.read()
        runs = exposition.Family("salon_memory_upkeep_runs_total", "counter",
                                 "Memory upkeep passes completed, by what started them.")
        failures = exposition.Family("salon_memory_upkeep_failures_total", "counter",
                                     "Memory upkeep passes that failed, by what started them.")
        # Total seconds, so rate(seconds) / rate(runs + failures) is the mean duration.
        seconds = exposition.Family("salon_memory_upkeep_seconds_total", "counter",
                                    "Time memory upkeep passes took, by what started them.")
        removed = exposition.Family("salon_memory_upkeep_memories_total", "counter",
                                    "Memories upkeep merged into others or forgot, by action.")
        for trigger in upkeep.TRIGGERS:
            runs.add({"trigger": trigger}, tally[f"runs:{trigger}"])
            failures.add({"trigger": trigger}, tally[f"failures:{trigger}"])
            seconds.add({"trigger": trigger}, tally[f"seconds:{trigger}"])
        for action in ("merged", "forgotten", "past_retention"):
            removed.add({"action": action}, tally[f"memories:{action}"])
        return [runs, failures, seconds, removed]

    def _audit_filters(self, q: dict[str, str]) -> dict[str, str]:
        return {k: q[k] for k in audit.FILTERS if q.get(k)}

    def _audit_json(self, q: dict[str, str]) -> Response:
        limit = _int(q.get("limit"), 100, 1, 5_000)
        after = _int(q.get("after"), 0, 0, 2**62)
        rows = audit.entries(self.reader("audit"), after=after, limit=limit,
                             opener=audit.store_opener(self.store), **self._audit_filters(q))
        return _json({"entries": rows, "next_after": rows[-1]["position"] if rows else after})

    def _audit_export(self, q: dict[str, str], fmt: str) -> Response:
        body = "".join(audit.export(self.reader("audit"), fmt, audit.store_opener(self.store),
                                    **self._audit_filters(q)))
        kind = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
        return 200, f"{kind}; charset=utf-8", body.encode()

    def _verify(self, _: dict[str, str]) -> Response:
        return _json(verify(self.reader("audit")).as_dict())

    def _projections(self, _: dict[str, str]) -> Response:
        return _json({"projections": self.projections.status()})

    def _rebuild(self, q: dict[str, str]) -> Response:
        name = q.get("name", "")
        if not name:
            raise errors.Invalid("name the projection to rebuild: ?name=threads")
        return _json({"projection": self.projections.rebuild(name)})

    def _jobs(self, q: dict[str, str]) -> Response:
        limit = _int(q.get("limit"), 50, 1, 1_000)
        name = q.get("queue") or DIGESTS
        queue = self.queue_of(name)
        jobs = queue.recent(limit=limit, status=q.get("status") or None)
        return _json({"queue": name, "counts": queue.counts(),
                      "jobs": [j.as_dict() for j in jobs],
                      "dead_letters": queue.dead_letters(limit)})

    def _threads(self, q: dict[str, str]) -> Response:
        shown = q.get("archived", "0")
        if shown not in ("0", "1", "all"):
            raise errors.Invalid("archived is 0 (open threads), 1 (archived) or all")
        rows = threads.listing(self.reader("threads"),
                               archived=None if shown == "all" else shown == "1",
                               limit=_int(q.get("limit"), 100, 1, 10_000))
        return _json({"threads": rows})

    def _thread(self, q: dict[str, str]) -> Response:
        room = _required(q, "room")
        return _json({"thread": threads.thread(self.reader("threads"), room)})

    def _search(self, q: dict[str, str]) -> Response:
        found = threads.search(self.reader("threads"), q.get("q", ""), room=q.get("room") or None,
                               limit=_int(q.get("limit"), 20, 1, 500))
        return _json({"messages": found})

    def _archive(self, q: dict[str, str]) -> Response:
        flag = q.get("archived", "1")
        if flag not in ("0", "1"):
            raise errors.Invalid("archived is 1 (archive) or 0 (unarchive)")
        return _json(set_archived(self.store, _required(q, "room"), flag == "1", by=q["by"],
                                  is_admin=True))


def _required(q: dict[str, str], key: str) -> str:
    value = q.get(key, "")
    if not value:
        raise errors.Invalid(f"add ?{key}=…")
    return value


def _int(value: str | None, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise errors.Invalid(f"{value!r} is not a whole number") from None
    if not low <= number <= high:
        raise errors.Invalid(f"{number} is outside {low}..{high}")
    return number


def status_line(status: int) -> str:
    """The reason phrase of an HTTP status."""
    return HTTPStatus(status).phrase
