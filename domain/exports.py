"""The export format: JSONL of recorded events with a schema version and chained checksums.

Line 1 is a header, then one line per event, then a footer. Every line carries ``sha256`` over
its own canonical JSON (without ``sha256``) plus the previous line's checksum, so any altered,
removed, added or reordered byte is detected and named by line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from domain.errors import Invalid

FORMAT = "salon-export"
SCHEMA = 1
KINDS = ("room", "agent")


@dataclass(frozen=True)
class Record:
    """One recorded event: its stream version, event class topic and JSON state."""

    version: int
    topic: str
    state: str


def _canonical(line: dict[str, Any]) -> str:
    return json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _seal(line: dict[str, Any], previous: str) -> dict[str, Any]:
    digest = hashlib.sha256((previous + _canonical(line)).encode()).hexdigest()
    return {**line, "sha256": digest}


def write(kind: str, name: str, records: list[Record]) -> str:
    """The export text for one stream."""
    if kind not in KINDS:
        raise Invalid(f"cannot export a {kind!r}; one of {', '.join(KINDS)}")
    lines = []
    previous = ""
    for line in ([{"format": FORMAT, "schema": SCHEMA, "kind": kind, "name": name,
                   "events": len(records)}]
                 + [{"version": r.version, "topic": r.topic, "state": r.state} for r in records]
                 + [{"end": True, "events": len(records)}]):
        sealed = _seal(line, previous)
        previous = sealed["sha256"]
        lines.append(_canonical(sealed))
    return "\n".join(lines) + "\n"


def read(text: str) -> tuple[str, str, list[Record]]:
    """(kind, name, records) of an export, or Invalid naming the first bad line."""
    raw_lines = text.splitlines()
    if len(raw_lines) < 2:
        raise Invalid("not a Salon export: it needs a header and a footer line")
    previous = ""
    parsed: list[dict[str, Any]] = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = json.loads(raw)
        except ValueError:
            raise Invalid(f"line {number} is not JSON; the file is damaged") from None
        if not isinstance(line, dict) or not isinstance(line.get("sha256"), str):
            raise Invalid(f"line {number} has no checksum; the file is damaged")
        claimed = line.pop("sha256")
        if _seal(line, previous)["sha256"] != claimed:
            raise Invalid(f"line {number} fails its checksum: the file was altered or "
                          "lines were removed, added or reordered")
        previous = claimed
        parsed.append(line)
    header, body, footer = parsed[0], parsed[1:-1], parsed[-1]
    if header.get("format") != FORMAT:
        raise Invalid("not a Salon export (line 1 has no salon-export header)")
    if header.get("schema") != SCHEMA:
        raise Invalid(f"export schema {header.get('schema')!r} is not supported; "
                      f"this Salon reads schema {SCHEMA}")
    if header.get("kind") not in KINDS or not isinstance(header.get("name"), str):
        raise Invalid("line 1 must name the kind (room or agent) and name of what was exported")
    if footer.get("end") is not True or footer.get("events") != len(body) \
            or header.get("events") != len(body):
        raise Invalid("the export is truncated: its event count does not match")
    records = []
    for number, line in enumerate(body, start=2):
        version, topic, state = line.get("version"), line.get("topic"), line.get("state")
        if version != number - 1 or not isinstance(topic, str) or not isinstance(state, str):
            raise Invalid(f"line {number} is not event {number - 1} of the stream")
        records.append(Record(version, topic, state))
    return str(header["kind"]), str(header["name"]), records
