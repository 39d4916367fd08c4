"""One agent's memory as its turns use it: context, recall, and recording memory decisions.

``AgentMemory`` is bound to one agent and is what its actor calls: it loads the short-term
context its strategy asks for, recalls long-term memories into the system prompt (recording
the retrieval), and after a turn rates importance, extracts user facts, reflects and tidies
up, recording each decision in the agent's ``MemoryStream``. Writes must come from the agent's
actor (the stream's one writer).

Where memory lives, and why: the rules (scoring, importance, reflection, upkeep, facts,
context strategies, the prompt section) and this service are in ``memory/``, pure but for
the ports it is handed (``memory/ports.py``: the event log, the memory tables, the
embedder): nothing in ``memory/`` opens a connection or loads a model itself. The ``MemoryStream``
aggregate and its config are in ``domain/memories.py`` (aggregates live in the domain). The
adapters are in ``infra/``: the pgvector tables (``infra/memories.py``), the embedding models
(``infra/embeddings.py``), consent settings (``infra/consent.py``), upkeep jobs
(``infra/upkeep.py``), and ``infra/recall.py``, which re-exports this service for its callers
and holds what people reach through the gateway and CLI. The memory view that fills the
tables from the log is a projection (``projections/memories.py``); the embedder shared by an
installation is a Ray actor (``actors/embedder.py``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from domain.errors import Conflict, Invalid, NotFound
from domain.ids import room_id
from domain.memories import MemoryConfig, MemoryStream, memory_stream_id
from domain.rooms import Room
from memory import facts as fact_rules
from memory import importance, reflection, upkeep
from memory.consent import consents
from memory.context import (
    ContextInputs,
    ContextMessage,
    RoomSummary,
    choose_context,
    token_budget,
)
from memory.ports import Embedder, EventLog, MemoryTables
from memory.prompt import Recalled, with_memory
from memory.stored import Retrieved
from memory.tokens import PER_MESSAGE, estimate_tokens

T = TypeVar("T")
WINDOW_EVENTS = 500  # newest room events token_window looks through
# After a reflection that produced nothing, wait this long before asking the model again.
REFLECTION_RETRY_SECONDS = 900.0
FACTS_RESERVE = 400  # tokens kept free in a token_window turn for the facts section


@dataclass(frozen=True)
class Prepared:
    """What a turn's model call sees: the context, the system prompt with memory, and the ids
    of the memories recalled into it (for ``ModelCalled.context``)."""

    context: list[ContextMessage]
    system: str
    memory_ids: list[str]
    # With ``prepare(defer=True)``: the retrieval's record, for the caller to save (blocking)
    # off the reply's path; None when there is nothing to record.
    pending: Callable[[], Any] | None = None


# Memories one upkeep pass reads at most (the oldest; near-duplicates found come on top).
UPKEEP_SCAN = 50_000


@dataclass(frozen=True)
class Upkeep:
    """What one upkeep pass recorded: counts, and the decisions themselves."""

    merged: int
    forgotten: int
    past_retention: int
    merges: tuple[upkeep.Merge, ...] = ()
    forgotten_ids: tuple[str, ...] = ()
    retired_ids: tuple[str, ...] = ()
    more: bool = False  # the pass stopped at its limit: more remains for the next one

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {"merged": self.merged, "forgotten": self.forgotten,
                "past_retention": self.past_retention, "more": self.more,
                "merges": [{"kept_id": m.kept_id, "merged_ids": list(m.merged_ids),
                            "similarity": m.similarity} for m in self.merges],
                "forgotten_ids": list(self.forgotten_ids),
                "retired_ids": list(self.retired_ids)}


def _capped(merges: Sequence[upkeep.Merge], decayed: Sequence[str], old: Sequence[str],
            limit: int) -> tuple[list[upkeep.Merge], list[str], list[str], bool]:
    """At most ``limit`` memories merged or forgotten, merges first, then decay, then age."""
    room = limit
    kept: list[upkeep.Merge] = []
    for merge in merges:
        if room <= 0:
            break
        ids = merge.merged_ids[:room]
        kept.append(upkeep.Merge(merge.kept_id, ids, merge.similarity))
        room -= len(ids)
    gone = list(decayed[:max(room, 0)])
    room -= len(gone)
    retired = list(old[:max(room, 0)])
    total = sum(len(m.merged_ids) for m in merges) + len(decayed) + len(old)
    return kept, gone, retired, total > limit


def open_stream(events: EventLog, agent: str) -> MemoryStream:
    """The agent's memory stream, opened (not yet saved) if it has none."""
    try:
        return events.get(MemoryStream, memory_stream_id(agent), f"memory stream of {agent}")
    except NotFound:
        return MemoryStream.open(agent)


def record_decision(events: EventLog, agent: str, decide: Callable[[MemoryStream], T],
           attempts: int = 3) -> T:
    """Apply ``decide`` to the agent's memory stream and save what it recorded.

    The agent's actor is the stream's one writer, but its threads may interleave (a turn's
    retrieval and a person's deletion): on a version conflict the stream is reloaded and the
    decision made again.
    """
    for attempt in range(attempts):
        stream = open_stream(events, agent)
        result = decide(stream)
        try:
            events.save(list(stream.collect_events()))
            return result
        except Conflict:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _messages(found: Sequence[Any]) -> list[ContextMessage]:
    return [ContextMessage(int(e.originator_version), str(e.author_id), str(e.text),
                           str(getattr(e, "author_kind", "human")))
            for e in found if isinstance(e, Room.MessagePosted)]


class AgentMemory:
    """One agent's memory, as its actor uses it during and after turns."""

    def __init__(self, agent: str, events: EventLog, memories: MemoryTables,
                 embedder: Embedder, config: MemoryConfig | None = None) -> None:
        self.agent = agent
        self.events = events
        self.memories = memories
        self.embedder = embedder
        self.config = config or MemoryConfig()
        self._reflect_after = 0.0
        # Memories upkeep decided to merge or forget that the projection may still hold.
        self._decided: set[str] = set()

    # -- during a turn ------------------------------------------------------------------------

    def prepare(self, room: str, up_to: int | None, n: int, system: str,
                prompt: str | None = None, context_window: int | None = None,
                max_output: int | None = None, summary: RoomSummary | None = None,
                now: datetime | None = None, record: bool = True,
                formed_by: datetime | None = None, defer: bool = False) -> Prepared:
        """Everything memory adds to a turn, in one blocking call (run it in a thread).

        Recalls memories for ``prompt`` (an invoke's text) or the room's newest message,
        records the retrieval, appends memories and facts about the people in the context to
        ``system``, and picks the context by the agent's strategy; for ``token_window`` the
        budget is the context window minus the max output (the agent's overrides first) minus
        the system prompt and a reserve for the facts. ``record=False`` (re-runs, what-ifs)
        recalls without recording the retrieval; ``formed_by`` (a fork's branch point) leaves
        out memories formed later. ``defer`` leaves the retrieval's record to the caller
        (``Prepared.pending``): a turn saves it while the model answers.
        """
        recent = self._recent(room, up_to, n)  # read once: recall and the context share it
        newest = sorted(recent, key=lambda m: m.position)[-n:]
        query = prompt or (newest[-1].text if newest else "")
        visible = self.rooms_visible_in(room)  # once: recall and the facts share it
        recalled = self.recall(query, now, record and not defer, room,
                               newest[0].position if newest else None, formed_by, visible)
        pending = None
        if record and defer and recalled:
            ids = [r.memory.memory_id for r in recalled]
            pending = functools.partial(record_decision, self.events, self.agent,
                                        lambda stream: stream.retrieved(ids, query))
        with_memories = self.system_prompt(system, recalled, rooms=visible)
        budget = None
        if self.config.context == "token_window":
            window = self.config.context_window or context_window
            output = self.config.max_output or max_output
            if window is None or output is None:
                raise Invalid("token_window needs the model's context window and max output; "
                              "set memory.context_window and memory.max_output")
            budget = token_budget(window, output, estimate_tokens(with_memories) +
                                  FACTS_RESERVE + estimate_tokens(prompt or "") + PER_MESSAGE)
        context = self.context(room, up_to, n, budget, summary, recent)
        people = sorted({m.author for m in context if m.author_kind == "human"})
        final = self.system_prompt(system, recalled, people, visible)
        if estimate_tokens(final) - estimate_tokens(with_memories) > FACTS_RESERVE:
            final = with_memories  # too many facts for the reserve: leave them out this turn
        return Prepared(context, final, [r.memory.memory_id for r in recalled], pending)

    def _recent(self, room: str, up_to: int | None, n: int) -> list[ContextMessage]:
        """The room's newest messages, as many as this agent's strategy looks through."""
        limit = WINDOW_EVENTS if self.config.context == "token_window" else n * 3
        return _messages(self.events.events(room_id(room), up_to=up_to, newest=True,
                                            limit=limit))

    def context(self, room: str, up_to: int | None, n: int, budget: int | None = None,
                summary: RoomSummary | None = None,
                recent: list[ContextMessage] | None = None) -> list[ContextMessage]:
        """The room messages this agent's strategy picks (blocking: call in a thread).

        ``recent`` is the room's newest messages if the caller has read them already."""
        strategy = self.config.context
        if recent is None:
            recent = self._recent(room, up_to, n)
        inputs = ContextInputs(recent=recent, n=n, budget=budget, summary=summary)
        if strategy == "first_last":
            opening = self.events.events(room_id(room), limit=self.config.first_messages * 4)
            inputs = ContextInputs(recent=recent, n=n, first=_messages(opening))
        elif strategy == "vector" and recent:
            tail = sorted(recent, key=lambda m: m.position)[-n:]
            query = self.embedder.embed([tail[-1].text])[0]
            relevant = self.memories.similar_messages(self.agent, room, query,
                                                      tail[0].position,
                                                      self.config.relevant_messages)
            inputs = ContextInputs(recent=recent, n=n, relevant=relevant)
        return choose_context(strategy, inputs, self.config.first_messages,
                              self.config.relevant_messages)

    def recall(self, query: str, now: datetime | None = None, record: bool = True,
               room: str | None = None, shown_from: int | None = None,
               formed_by: datetime | None = None,
               visible: list[str] | None = None) -> list[Retrieved]:
        """The memories most worth recalling for ``query``; the retrieval is recorded.

        Messages of ``room`` from position ``shown_from`` on are in the turn's context
        already, so they are not recalled. ``visible`` is ``rooms_visible_in(room)`` if the
        caller has it already.
        """
        if self.config.recall <= 0 or not query.strip() or not self.memories.count(self.agent):
            return []
        vector = self.embedder.embed([query])[0]
        rooms = visible if visible is not None else \
            self.rooms_visible_in(room) if room is not None else None
        found = self.memories.retrieve(self.agent, vector, self.config.recall,
                                       self.config.weights, now, skip_room=room,
                                       skip_from=shown_from, formed_by=formed_by, rooms=rooms)
        if record and found:
            ids = [r.memory.memory_id for r in found]
            record_decision(self.events, self.agent, lambda stream: stream.retrieved(ids, query))
        return found

    def rooms_visible_in(self, room: str) -> list[str]:
        """Rooms whose memories may surface in ``room``: every member of ``room`` could see them.

        That is ``room`` itself, public rooms, and private rooms whose members include all of
        ``room``'s members; a private room's words never surface where others would read them.
        """
        others = [name for name in self.memories.rooms(self.agent) if name != room]
        if not others:  # nothing formed elsewhere: no room needs reading (every turn asks)
            return [room]
        try:
            here = self.events.get(Room, room_id(room), room)
        except NotFound:
            return [room]
        readers = set(here.members)
        allowed = [room]
        for name in others:
            try:
                source = self.events.get(Room, room_id(name), name)
            except (NotFound, Invalid):
                continue
            if (source.visibility == "public" and not name.startswith("dm-")) \
                    or readers <= set(source.members):
                allowed.append(name)
        return allowed

    def system_prompt(self, system: str, recalled: Sequence[Retrieved],
                      users: Sequence[str] = (), rooms: Sequence[str] | None = None) -> str:
        """``system`` with the recalled memories and facts about ``users`` appended (only
        facts learned in ``rooms``, when given)."""
        shown = [Recalled(r.memory.memory_id, r.memory.kind, r.memory.content,
                          r.memory.created_at) for r in recalled]
        facts = self.memories.facts_by_user(self.agent, list(users), rooms) \
            if self.config.facts else {}
        return with_memory(system, shown, facts)

    # -- after a turn -------------------------------------------------------------------------

    async def after_turn(self, ask: reflection.Ask, context: Sequence[ContextMessage],
                         model: str, room: str | None = None) -> dict[str, int]:
        """Rate, extract facts and reflect as configured; returns how many of each.

        Facts are asked for only about people whose messages since the agent last spoke say
        something lasting about themselves, so most turns cost no extra model call.
        """
        done = {"rated": 0, "facts": 0, "reflections": 0}
        if self.config.importance == "model":
            done["rated"] = await self.rate(ask, model)
        if self.config.facts:
            conversation = [(m.author, m.text) for m in context]
            for user in self.people_to_ask_about(context):
                # Consent: nothing is asked, let alone written, about someone who said off.
                if await asyncio.to_thread(consents, self.events, user, room):
                    done["facts"] += await self.extract_facts(ask, user, conversation, room)
        if self.config.reflection and time.monotonic() >= self._reflect_after:
            done["reflections"] = await self.reflect(ask)
        return done

    def people_to_ask_about(self, context: Sequence[ContextMessage]) -> list[str]:
        """People whose messages after the agent's last one say something lasting."""
        ordered = sorted(context, key=lambda m: m.position)
        mine = [i for i, m in enumerate(ordered) if m.author == self.agent]
        fresh = ordered[mine[-1] + 1:] if mine else ordered
        return sorted({m.author for m in fresh
                       if m.author_kind == "human" and importance.personal(m.text)})

    async def rate(self, ask: reflection.Ask, model: str, batch: int = 20) -> int:
        """Have the model rate the newest heuristically rated memories; records the ratings."""
        unrated = await asyncio.to_thread(self.memories.unrated, self.agent, batch)
        if not unrated:
            return 0
        answer = await ask(importance.rating_prompt([m.content for m in unrated]))
        ratings = importance.parse_ratings(answer, len(unrated))
        if not ratings:
            return 0
        rated = {unrated[i].memory_id: r for i, r in ratings.items()}
        await asyncio.to_thread(record_decision, self.events, self.agent,
                                lambda stream: stream.rate(rated, model))
        return len(ratings)

    async def extract_facts(self, ask: reflection.Ask, user: str,
                            conversation: Sequence[tuple[str, str]],
                            room: str | None = None) -> int:
        """Ask the model for new facts about ``user`` said in ``room``; records each as
        ``FactRemembered`` tagged with the room (facts surface under the rooms' rule)."""
        if not any(author == user for author, _ in conversation):
            return 0
        # What the view holds: facts forgotten when ``user`` withdrew consent are not known.
        held = await asyncio.to_thread(self.memories.facts, self.agent, user)
        known = [fact_rules.Fact(f["key"], f["value"], f["category"]) for f in held]
        answer = await ask(fact_rules.extraction_prompt(user, list(conversation), known))
        found = fact_rules.parse_facts(answer)
        holds = {(f["key"], f["value"], f["category"]) for f in held}

        def remember(stream: MemoryStream) -> int:
            before = len(stream.pending_events)
            for fact in found:
                stream.remember_fact(user, fact.key, fact.value, fact.category, room,
                                     again=(fact.key.strip().lower(), fact.value.strip(),
                                            fact.category) not in holds)
            return len(stream.pending_events) - before

        if not found:
            return 0
        return await asyncio.to_thread(record_decision, self.events, self.agent, remember)

    async def reflect(self, ask: reflection.Ask, now: datetime | None = None) -> int:
        """Reflect if recent importance passed the threshold; records the cited insights."""
        ratings = await asyncio.to_thread(self.memories.ratings_since_reflection, self.agent,
                                          reflection.WINDOW)
        if not reflection.should_reflect(ratings, self.config.reflection_threshold):
            return 0
        recent = await asyncio.to_thread(self.memories.newest, self.agent, reflection.WINDOW)

        async def evidence(question: str) -> list[reflection.Statement]:
            vector = (await asyncio.to_thread(self.embedder.embed, [question]))[0]
            found = await asyncio.to_thread(self.memories.retrieve, self.agent, vector, 10,
                                            self.config.weights, now)
            return [reflection.Statement(r.memory.memory_id, r.memory.content) for r in found]

        insights = await reflection.reflect(self.agent, recent, ask, evidence)
        if not insights:
            # Only a model that was asked and gave nothing is left alone for a while; below
            # the threshold the next turn checks again.
            self._reflect_after = time.monotonic() + REFLECTION_RETRY_SECONDS
            return 0
        def write(stream: MemoryStream) -> None:
            for insight in insights:
                stream.reflect(insight.question, insight.content,
                               max(importance.heuristic_importance(insight.content), 5),
                               list(insight.cites))

        await asyncio.to_thread(record_decision, self.events, self.agent, write)
        return len(insights)

    def upkeep(self, now: datetime | None = None, limit: int = 1_000,
               scan: int = UPKEEP_SCAN) -> Upkeep:
        """Merge near-duplicates, forget what decayed, apply retention (blocking).

        Bounded: it reads the ``scan`` oldest memories (plus the near-duplicates found among
        the newest) and merges or forgets at most ``limit``; ``Upkeep.more`` says the rest
        waits for the next pass. Memories an earlier pass decided on stay out until the
        projection has removed them, so a pass soon after another records nothing twice.
        """
        moment = now or datetime.now(UTC)
        cfg = self.config
        total = self.memories.count(self.agent)
        pairs = [p for p in self.memories.similar_pairs(self.agent, cfg.consolidate_above)
                 if p[0] not in self._decided and p[1] not in self._decided]
        read = self.memories.states(self.agent, scan if total > scan else None,
                                    include=sorted({i for p in pairs for i in p[:2]}))
        self._decided &= {s.memory_id for s in read}
        states = [s for s in read if s.memory_id not in self._decided]
        merges = upkeep.near_duplicates(states, pairs, cfg.consolidate_above)
        merged = {m for merge in merges for m in merge.merged_ids}
        alive = [s for s in states if s.memory_id not in merged]
        decayed = upkeep.to_forget(alive, moment, cfg.forget_below)
        alive = [s for s in alive if s.memory_id not in set(decayed)]
        # The memories not read are the newest: they count against the limit all the same.
        unread = max(total - len(read), 0)
        old = upkeep.past_retention(alive, moment, max(cfg.max_memories - unread, 0),
                                    cfg.max_age_days)
        merges, decayed, old, more = _capped(merges, decayed, old, limit)
        merged = {m for merge in merges for m in merge.merged_ids}

        def write(stream: MemoryStream) -> None:
            for merge in merges:
                stream.merge(merge.kept_id, list(merge.merged_ids), merge.similarity)
            stream.forget(decayed, f"decayed below {cfg.forget_below}")
            stream.forget(old, "past the retention limit")

        if merges or decayed or old:
            record_decision(self.events, self.agent, write)
            self._decided |= merged | set(decayed) | set(old)
        return Upkeep(len(merged), len(decayed), len(old), tuple(merges), tuple(decayed),
                      tuple(old), more)
