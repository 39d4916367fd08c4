"""The export format: JSONL of recorded events with a schema version and chained checksums.

Line 1 is a header, then one line per event, then a footer. Every line carries ``sha256`` over
its own canonical JSON (without ``sha256``) plus the previous line's checksum, so any altered,
removed, added or reordered byte is detected and named by line.

Schema 2 lets an export carry more than one stream: an agent's export holds its own stream
and then its memory stream (lines with ``"stream": "memory"``), each numbered from 1.
Schema 1 files (one stream) are still read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from domain.errors import Invalid
from domain.ids import agent_id, room_id
from domain.memories import memory_stream_id

FORMAT = "salon-export"
SCHEMA = 2
READABLE = (1, 2)
KINDS = ("room", "agent")
STREAMS = ("main", "memory")


@dataclass(frozen=True)
class Record:
    """One recorded event: its stream version, event class topic and JSON state."""

    version: int
    topic: str
    state: str
    stream: str = "main"  # which of the exported streams: "main", or an agent's "memory"


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
                 + [{"version": r.version, "topic": r.topic, "state": r.state,
                     **({"stream": r.stream} if r.stream != "main" else {})} for r in records]
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
    if header.get("schema") not in READABLE:
        raise Invalid(f"export schema {header.get('schema')!r} is not supported; "
                      f"this Salon reads schemas {', '.join(map(str, READABLE))}")
    if header.get("kind") not in KINDS or not isinstance(header.get("name"), str):
        raise Invalid("line 1 must name the kind (room or agent) and name of what was exported")
    if footer.get("end") is not True or footer.get("events") != len(body) \
            or header.get("events") != len(body):
        raise Invalid("the export is truncated: its event count does not match")
    records = []
    expected = {stream: 1 for stream in STREAMS}
    for number, line in enumerate(body, start=2):
        version, topic, state = line.get("version"), line.get("topic"), line.get("state")
        stream = line.get("stream", "main")
        if stream not in STREAMS or (stream != "main" and header.get("kind") != "agent"):
            raise Invalid(f"line {number} names an unknown stream {stream!r}")
        if version != expected[stream] or not isinstance(topic, str) \
                or not isinstance(state, str):
            raise Invalid(f"line {number} is not event {expected[stream]} of the {stream} "
                          "stream")
        expected[stream] += 1
        records.append(Record(version, topic, state, stream))
    if not records or records[0].stream != "main":
        raise Invalid("the export holds no events of what it names")
    return str(header["kind"]), str(header["name"]), records


def streams_of(kind: str, name: str, records: list[Record],
               ) -> tuple[UUID, list[Record], dict[UUID, list[Record]]]:
    """Where an export's records go: (main stream id, its records, the other streams)."""
    main = room_id(name) if kind == "room" else agent_id(name)
    own = [r for r in records if r.stream == "main"]
    memory = [r for r in records if r.stream == "memory"]
    return main, own, ({memory_stream_id(name): memory} if memory else {})
