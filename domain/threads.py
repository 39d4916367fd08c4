"""What Salon adds to a room's conversation without taking room positions: generated titles
and summaries, and whether the thread is archived (hidden from listings).

One ``Thread`` stream per room, its id derived from the room's name, so none of this needs the
room actor or moves the room's positions. Titles and summaries are written by the job worker,
archiving by an owner's or admin's command; optimistic concurrency guards the stream between
them. Each job's output is recorded once: a job id seen before records nothing, so a job
redelivered after a crash does not record twice.
"""

from __future__ import annotations

import uuid
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import Invalid
from domain.ids import check_name, room_id

MAX_TITLE = 120
MAX_SUMMARY = 4_000
JOB_MEMORY = 1_000  # job ids remembered per room; older ones fall out first


def thread_id(room: str) -> UUID:
    """The id of the thread stream of the room called ``room``."""
    return uuid.uuid5(room_id(room), "thread")


class Thread(Aggregate):
    """Titles, summaries and archive state of one room's thread."""

    @staticmethod
    def create_id(room: str, **_: object) -> UUID:
        """Threads are found by their room's name."""
        return thread_id(room)

    @event("ThreadOpened")
    def __init__(self, room: str) -> None:
        self.room = room
        self.title: str | None = None
        self.title_position = 0
        self.summary: str | None = None
        self.summary_position = 0
        self.archived = False
        self.jobs: list[str] = []

    @classmethod
    def open(cls, room: str) -> Thread:
        """Start the thread stream of room ``room``."""
        return cls(room=check_name(room, "room"))

    def record_title(self, title: str, up_to_position: int, job_id: str) -> bool:
        """Record a title made from messages up to a position; False if the job recorded one."""
        if job_id in self.jobs:
            return False
        title = " ".join(title.split())
        if not title:
            raise Invalid("a title needs some text")
        if len(title) > MAX_TITLE:
            raise Invalid(f"a title has at most {MAX_TITLE} characters, got {len(title)}")
        self._title_generated(room=self.room, title=title, up_to_position=up_to_position,
                              job_id=job_id)
        return True

    @event("TitleGenerated")
    def _title_generated(self, room: str, title: str, up_to_position: int, job_id: str) -> None:
        self.title = title
        self.title_position = up_to_position
        self._remember(job_id)

    def record_summary(self, text: str, up_to_position: int, job_id: str) -> bool:
        """Record a summary of messages up to a position; False if the job recorded one."""
        if job_id in self.jobs:
            return False
        if not text.strip():
            raise Invalid("a summary needs some text")
        if len(text) > MAX_SUMMARY:
            raise Invalid(f"a summary has at most {MAX_SUMMARY} characters, got {len(text)}")
        self._summary_generated(room=self.room, text=text, up_to_position=up_to_position,
                                job_id=job_id)
        return True

    @event("SummaryGenerated")
    def _summary_generated(self, room: str, text: str, up_to_position: int,
                           job_id: str) -> None:
        self.summary = text
        self.summary_position = up_to_position
        self._remember(job_id)

    def archive(self, by: str) -> bool:
        """Hide the thread from listings; False if it already was."""
        if self.archived:
            return False
        self._archived(room=self.room, by=by)
        return True

    @event("ThreadArchived")
    def _archived(self, room: str, by: str) -> None:
        self.archived = True

    def unarchive(self, by: str) -> bool:
        """List the thread again; False if it was not archived."""
        if not self.archived:
            return False
        self._unarchived(room=self.room, by=by)
        return True

    @event("ThreadUnarchived")
    def _unarchived(self, room: str, by: str) -> None:
        self.archived = False

    def _remember(self, job_id: str) -> None:
        self.jobs.append(job_id)
        del self.jobs[:-JOB_MEMORY]
