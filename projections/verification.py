"""Checking the audit log: which rows were modified, deleted or inserted, and where.

Two independent checks, walked together in one pass over the rows in position order:

- the hash chain: each row's ``hash`` must equal SHA-256 of its ``prev_hash`` and content
  (else the row was *modified*), and each ``prev_hash`` must equal the previous row's
  ``hash`` (else a row was removed or added between them, or the previous row's hash was
  recomputed after editing it);
- the log: every event up to the audit's tracking record must have exactly one row at its
  position (a position with no row was *deleted*; a row at a position with no event was
  *inserted*).

A row inserted with a correctly recomputed hash is still caught: the next row chains past it
to the row before it, and no event has its position.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from projections.audit import GENESIS, row_hash
from projections.runner import EVENTS_TABLE
from projections.views import APPLICATION, Reader, Snapshot

LOOKBACK = 64  # rows of inserted runs the chain check can attribute


@dataclass(frozen=True)
class Finding:
    """One tampered place: what was done, the log position, and the row number if it exists."""

    kind: str  # modified | deleted | inserted
    position: int
    row: int | None
    message: str


@dataclass
class Verification:
    """The outcome of a check of the whole audit log."""

    rows: int = 0
    up_to: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing was found."""
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"ok": self.ok, "rows": self.rows, "up_to": self.up_to,
                "findings": [asdict(f) for f in self.findings]}


def verify(reader: Reader) -> Verification:
    """Check every row of the audit log in ``reader``'s schema against its chain and the log.

    Everything is read in one snapshot, so rows the running projection adds meanwhile are
    neither missed nor taken for insertions.
    """
    with reader.snapshot() as snapshot:
        return _verify(snapshot)


def _verify(reader: Snapshot) -> Verification:
    tracked = reader.rows("SELECT notification_id FROM {s}.audit_tracking "
                          "WHERE application_name = %s", (APPLICATION,))
    up_to = int(tracked[0]["notification_id"] or 0) if tracked else 0
    result = Verification(up_to=up_to)
    found: dict[tuple[str, int], Finding] = {}

    def report(kind: str, position: int, row: int | None, message: str) -> None:
        found.setdefault((kind, position), Finding(kind, position, row, message))

    log = _positions(reader, up_to)
    next_event = next(log, None)
    recent: deque[tuple[str, int, int]] = deque(maxlen=LOOKBACK)  # (hash, position, row)
    previous_hash, previous_position = GENESIS, 0
    rows = reader.stream("SELECT * FROM {s}.entries ORDER BY position", name="entries")
    for index, row in enumerate(rows, 1):
        position = int(row["position"])
        missing_before = False
        while next_event is not None and next_event < position:
            report("deleted", next_event, None,
                   f"position {next_event} has no row: the row of that event was deleted "
                   f"(between positions {previous_position} and {position})")
            missing_before = True
            next_event = next(log, None)
        if next_event == position:
            next_event = next(log, None)
        else:
            report("inserted", position, index,
                   f"row {index} at position {position} was inserted: no event of the log "
                   "has that position")
        if row["hash"] != row_hash(row["prev_hash"], row):
            report("modified", position, index,
                   f"row {index} at position {position} was modified: its hash does not "
                   "match its content")
        if row["prev_hash"] != previous_hash:
            skipped = [r for r in list(recent)[:-1] if r[0] == row["prev_hash"]]
            if skipped:
                start = list(recent).index(skipped[-1]) + 1
                for _, pos, number in list(recent)[start:]:
                    found.pop(("modified", pos), None)
                    report("inserted", pos, number,
                           f"row {number} at position {pos} was inserted: the next row "
                           "chains past it to the row before it")
            elif not missing_before and recent:
                _, pos, number = recent[-1]
                if ("inserted", pos) not in found:
                    report("modified", pos, number,
                           f"row {number} at position {pos} was modified and its hash "
                           "recomputed: the next row chains to a different hash")
            elif not missing_before:
                report("deleted", position, None,
                       f"rows before position {position} were deleted: the first row does "
                       "not chain to the start")
        recent.append((row["hash"], position, index))
        previous_hash, previous_position = row["hash"], position
        result.rows = index
    while next_event is not None:
        report("deleted", next_event, None,
               f"position {next_event} has no row: the row of that event was deleted "
               f"(after position {previous_position}, the last row)")
        next_event = next(log, None)
    for kind, position in list(found):
        if kind == "inserted":
            found.pop(("modified", position), None)
    result.findings = sorted(found.values(), key=lambda f: (f.position, f.kind))
    return result


def _positions(reader: Snapshot, up_to: int) -> Iterator[int]:
    rows = reader.stream(f"SELECT notification_id FROM public.{EVENTS_TABLE} "
                         "WHERE notification_id <= %s ORDER BY notification_id", (up_to,),
                         name="log")
    for row in rows:
        yield int(row["notification_id"])
