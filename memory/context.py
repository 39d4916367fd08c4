"""Short-term context: which room messages an agent sees when it takes a turn.

Five strategies, chosen per agent (``MemoryConfig.context``):

- ``last_n``: the newest ``n`` messages;
- ``first_last``: the room's first messages (its opening) and the newest ``n``;
- ``token_window``: the newest messages that fit the model's context window minus its max
  output (and the system prompt), by token counts; the newest message is always kept,
  shortened if it alone does not fit;
- ``summarize``: the room's latest summary, then the ``n`` newest messages after it;
- ``vector``: older messages relevant to the conversation (found by embedding) and the newest.

Every function is pure: the turn hands in what it loaded and gets back what the model sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from domain.errors import Invalid
from memory.tokens import PER_MESSAGE, TokenCounter, estimate_tokens

ELLIPSIS = "\u2026"
SUMMARY_AUTHOR = "summary"


@dataclass(frozen=True)
class ContextMessage:
    """One room message as context: where it sits, who wrote it, what it says."""

    position: int
    author: str
    text: str
    author_kind: str = "human"


@dataclass(frozen=True)
class RoomSummary:
    """A summary of a room's messages up to ``up_to_position``."""

    up_to_position: int
    text: str


@dataclass(frozen=True)
class ContextInputs:
    """What a strategy may draw on; the turn loads only what its strategy needs."""

    recent: list[ContextMessage]                               # newest messages, any order
    n: int = 20                                                # how many recent ones to keep
    first: list[ContextMessage] = field(default_factory=list)  # the room's opening messages
    summary: RoomSummary | None = None
    relevant: list[ContextMessage] = field(default_factory=list)  # older, found by embedding
    budget: int | None = None                                  # tokens, for token_window
    count: TokenCounter = estimate_tokens


def _ordered(messages: list[ContextMessage]) -> list[ContextMessage]:
    unique = {m.position: m for m in messages}
    return [unique[p] for p in sorted(unique)]


def last_n(messages: list[ContextMessage], n: int) -> list[ContextMessage]:
    """The newest ``n`` messages, oldest first."""
    if n <= 0:
        return []
    ordered = sorted(messages, key=lambda m: m.position)
    return ordered[-n:]


def first_last(first: list[ContextMessage], recent: list[ContextMessage], n_first: int,
               n_last: int) -> list[ContextMessage]:
    """The room's ``n_first`` opening messages and its ``n_last`` newest, oldest first."""
    opening = sorted(first, key=lambda m: m.position)[:max(n_first, 0)]
    return _ordered(opening + last_n(recent, n_last))


def message_cost(message: ContextMessage, count: TokenCounter = estimate_tokens) -> int:
    """Tokens one message takes in a request: author, text and the per-message overhead."""
    return PER_MESSAGE + count(message.author) + count(message.text)


def token_budget(context_window: int, max_output: int, reserved: int = 0) -> int:
    """Tokens left for messages: the window minus the max output and ``reserved`` (system)."""
    return context_window - max_output - reserved


def token_window(messages: list[ContextMessage], budget: int,
                 count: TokenCounter = estimate_tokens) -> list[ContextMessage]:
    """The newest messages whose summed cost fits ``budget``, oldest first.

    The newest message is always kept; if it alone is too long, its text is cut to fit and
    ends with an ellipsis. Older messages are taken newest first while they fit, without
    gaps, so the model sees an unbroken tail of the conversation.
    """
    if not messages:
        return []
    ordered = sorted(messages, key=lambda m: m.position)
    newest = ordered[-1]
    if message_cost(newest, count) > budget:
        return [_shortened(newest, budget, count)]
    kept = [newest]
    used = message_cost(newest, count)
    for message in reversed(ordered[:-1]):
        cost = message_cost(message, count)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    return kept


def _shortened(message: ContextMessage, budget: int, count: TokenCounter) -> ContextMessage:
    """``message`` with its text cut (keeping its beginning) so its cost fits ``budget``."""
    if message_cost(replace(message, text=ELLIPSIS), count) > budget:
        raise Invalid(f"a context budget of {budget} tokens cannot hold even one message; "
                      "give the model a larger context window or a smaller max output")
    low, high = 0, len(message.text)  # the longest prefix that fits is in [low, high)
    while low < high:
        middle = (low + high + 1) // 2
        candidate = replace(message, text=message.text[:middle] + ELLIPSIS)
        if message_cost(candidate, count) <= budget:
            low = middle
        else:
            high = middle - 1
    return replace(message, text=message.text[:low] + ELLIPSIS)


def summarize(recent: list[ContextMessage], summary: RoomSummary | None,
              n: int) -> list[ContextMessage]:
    """The latest room summary (as one message) and the ``n`` newest messages after it."""
    if summary is None:
        return last_n(recent, n)
    after = [m for m in recent if m.position > summary.up_to_position]
    head = ContextMessage(summary.up_to_position, SUMMARY_AUTHOR,
                          f"Summary of the conversation so far: {summary.text}", "summary")
    return [head, *last_n(after, n)]


def vector(recent: list[ContextMessage], relevant: list[ContextMessage], n: int,
           n_relevant: int) -> list[ContextMessage]:
    """The ``n`` newest messages plus up to ``n_relevant`` older relevant ones, in order.

    ``relevant`` comes most relevant first (from an embedding search); only messages older
    than the newest ``n`` are added, so nothing appears twice.
    """
    tail = last_n(recent, n)
    oldest = tail[0].position if tail else None
    older = [m for m in relevant if oldest is None or m.position < oldest]
    return _ordered(older[:max(n_relevant, 0)] + tail)


def choose_context(strategy: str, inputs: ContextInputs, n_first: int = 2,
                   n_relevant: int = 5) -> list[ContextMessage]:
    """The context ``strategy`` picks from ``inputs``, oldest first."""
    if strategy == "last_n":
        return last_n(inputs.recent, inputs.n)
    if strategy == "first_last":
        return first_last(inputs.first, inputs.recent, n_first, inputs.n)
    if strategy == "token_window":
        if inputs.budget is None:
            raise Invalid("token_window needs a token budget (the model's context window)")
        return token_window(inputs.recent, inputs.budget, inputs.count)
    if strategy == "summarize":
        return summarize(inputs.recent, inputs.summary, inputs.n)
    if strategy == "vector":
        return vector(inputs.recent, inputs.relevant, inputs.n, n_relevant)
    raise Invalid(f"unknown context strategy {strategy!r}; one of last_n, first_last, "
                  "token_window, summarize, vector")
