"""Titles and summaries of rooms, made by background jobs and recorded as digest events.

``plan`` looks at the threads view and enqueues a ``title`` job for each room with a few
messages and no title, and a ``summary`` job each time a room has ``summary_every`` more
messages; job ids are derived from the room (and the summary's round), so planning again
enqueues nothing new. ``DigestJobs`` runs them: it reads the room's messages up to the job's
position from the event log, makes the text deterministically (no model yet: the first
sentence for a title, the most telling sentences for a summary) and records it in the room's
``Thread`` stream (``domain.threads``), once per job id. The threads view then shows it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection
from typing import Any

from domain.ids import room_id
from domain.rooms import Room
from domain.threads import Thread, thread_id
from infra.jobs import Job, JobQueue
from infra.store import EventStore
from projections.views import Reader

TITLE_AFTER = 3        # messages before a room gets a title
SUMMARY_EVERY = 50     # messages between summaries
TITLE_WORDS = 60       # characters of a title, at most
SUMMARY_POINTS = 3     # sentences quoted in a summary
_WORD = re.compile(r"[^\W\d_][\w'-]+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_MENTION = re.compile(r"(?<![\w@])@[\w-]+")
STOPWORDS = frozenset("""a about after again all also am an and any are as at be because been
before being but by can could did do does doing done for from get got had has have having he
her here hers him his how i if in into is it its just know like me more most my no not now of
off on once only or other our out over please really said same say says see she should so some
such than that the their them then there these they this those through to too up us very was
we were what when where which while who why will with would yes yet you your hello hi hey
thanks thank ok okay""".split())


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if w.lower() not in STOPWORDS]


def title_of(texts: list[str]) -> str:
    """A title for a conversation: its first sentence, or its main words when that is empty."""
    for text in texts:
        sentence = _SENTENCE.split(_MENTION.sub("", text).strip(), maxsplit=1)[0].strip()
        if len(_words(sentence)) >= 2:
            return _shorten(sentence.rstrip(".!"), TITLE_WORDS)
    common = [w for w, _ in Counter(w for t in texts for w in _words(t)).most_common(4)]
    return _shorten(" ".join(common).capitalize(), TITLE_WORDS) if common else "Untitled"


def summary_of(messages: list[tuple[str, str]]) -> str:
    """A summary: who spoke, the main topics, and the sentences that carry them most."""
    if not messages:
        return "No messages yet."
    counts = Counter(w for _, text in messages for w in _words(text))
    authors = list(dict.fromkeys(author for author, _ in messages))
    topics = [w for w, _ in counts.most_common(5)]
    sentences = [(author, s.strip()) for author, text in messages
                 for s in _SENTENCE.split(_MENTION.sub("", text)) if len(_words(s)) >= 2]
    # Score by the topic words a sentence holds (each once), shorter first on ties; keep the
    # conversation's order for the ones chosen.
    ranked = sorted(range(len(sentences)), key=lambda i: (
        -sum(counts[w] for w in set(_words(sentences[i][1]))), len(sentences[i][1]), i))
    chosen = sorted(ranked[:SUMMARY_POINTS])
    who = ", ".join(authors[:5]) + (f" and {len(authors) - 5} more" if len(authors) > 5 else "")
    lines = [f"{len(messages)} messages from {who}."]
    if topics:
        lines.append("Topics: " + ", ".join(topics) + ".")
    lines.extend(f"- {author}: {_shorten(text, 200)}" for author, text in
                 (sentences[i] for i in chosen))
    return "\n".join(lines)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit - 1].rsplit(" ", 1)[0]
    return (cut or text[:limit - 1]).rstrip(",;:- ") + "…"


def plan(threads: Reader, queue: JobQueue, title_after: int = TITLE_AFTER,
         summary_every: int = SUMMARY_EVERY, rooms: Collection[str] | None = None) -> list[str]:
    """Enqueue the title and summary jobs rooms (all, or ``rooms``) are due; returns the ids
    of jobs asked for."""
    asked = []
    only = list(rooms) if rooms is not None else None
    for row in threads.rows(
            "SELECT name, last_position, message_count, purges FROM {s}.threads "
            "WHERE title IS NULL AND message_count >= %s "
            "AND (%s::text[] IS NULL OR name = ANY(%s))", (title_after, only, only)):
        asked.append(queue.enqueue("title", {"room": row["name"], "up_to": row["last_position"]},
                                   job_id=f"title:{row['name']}{_purged(row)}"))
    for row in threads.rows(
            "SELECT name, last_position, message_count, purges FROM {s}.threads "
            "WHERE message_count >= %s AND coalesce(summary_position, 0) < last_position "
            "AND (%s::text[] IS NULL OR name = ANY(%s))", (summary_every, only, only)):
        round_ = row["message_count"] // summary_every
        asked.append(queue.enqueue("summary",
                                   {"room": row["name"], "up_to": row["last_position"]},
                                   job_id=f"summary:{row['name']}:{round_}{_purged(row)}"))
    return asked


def _purged(row: dict[str, Any]) -> str:
    """A job id's suffix after the thread's digests were purged (redaction, erasure)."""
    return f":p{row['purges']}" if row.get("purges") else ""


class DigestJobs:
    """Handlers of ``title`` and ``summary`` jobs: make the text, record it once per job."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    @property
    def handlers(self) -> dict[str, Any]:
        """Handlers by job kind, for ``infra.jobs.Worker``."""
        return {"title": self.title, "summary": self.summary}

    def title(self, job: Job) -> dict[str, Any]:
        """Record a title for the room of ``job`` from its messages up to ``up_to``."""
        room, up_to = str(job.payload["room"]), int(job.payload["up_to"])
        text = title_of([t for _, t in self._messages(room, up_to)][:10])
        thread = self._thread(room)
        recorded = thread.record_title(text, up_to, job.id)
        self.store.save(thread.collect_events())
        # The result stays in Valkey: it says what was done, never the words.
        return {"room": room, "chars": len(text), "recorded": recorded}

    def summary(self, job: Job) -> dict[str, Any]:
        """Record a summary of the room of ``job``'s messages up to ``up_to``."""
        room, up_to = str(job.payload["room"]), int(job.payload["up_to"])
        text = summary_of(self._messages(room, up_to))
        thread = self._thread(room)
        recorded = thread.record_summary(text, up_to, job.id)
        self.store.save(thread.collect_events())
        return {"room": room, "chars": len(text), "recorded": recorded}

    def _messages(self, room: str, up_to: int) -> list[tuple[str, str]]:
        return [(e.author_id, e.text) for e in self.store.events(room_id(room), up_to=up_to)
                if isinstance(e, Room.MessagePosted)]

    def _thread(self, room: str) -> Thread:
        if self.store.exists(thread_id(room)):
            return self.store.get(Thread, thread_id(room), f"thread of room {room!r}")
        return Thread.open(room)
