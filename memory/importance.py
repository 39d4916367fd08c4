"""How much a memory matters, on the Generative Agents scale of 1 (mundane) to 10 (poignant).

By default a documented heuristic rates it, so the memory projection stays a pure function of
the log. When an agent is configured with ``importance: "model"``, its model rates memories with
the paper's prompt and the ratings are recorded as ``ImportanceRated`` events.

The heuristic, in order (the result is clamped to 1..10):

1. start at 2: most chat is mundane;
2. +1 past 80 characters and +1 more past 300 (more said, more to remember);
3. +1 for each kind of lasting or personal statement found (identity, likes and dislikes,
   commitments and plans, health, relationships, explicit "remember"/"important"), at most +4;
4. +1 if it carries numbers, dates or times;
5. +1 if it was addressed to the agent (an @mention or a direct question);
6. a bare greeting or acknowledgement ("hi", "thanks", "ok") is 1.
"""

from __future__ import annotations

import re

LASTING = {
    "identity": r"\b(my name is|i am|i'm|call me|i live|i work|my job|i was born)\b",
    "taste": r"\b(i (really )?(like|love|hate|prefer|enjoy|dislike)|my favou?rite)\b",
    "commitment": r"\b(promise|deadline|decided|decision|plan(ning)? to|going to|will never|"
                  r"always|never|agreed|must)\b",
    "health": r"\b(allergic|allergy|sick|ill|hospital|diagnos\w*|pregnan\w*|died|death)\b",
    "relationship": r"\b(my (wife|husband|partner|son|daughter|mother|father|mum|mom|dad|"
                    r"friend|boss|sister|brother)|married|divorc\w*|broke up|engaged)\b",
    "explicit": r"\b(remember|important|don't forget|do not forget|note that|keep in mind)\b",
}
_LASTING = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in LASTING.items()}
_NUMBERS = re.compile(r"\d")
_SMALL_TALK = re.compile(r"^(\W*\b(hi|hello|hey|thanks|thank you|thx|ok|okay|k|lol|yes|no|"
                         r"sure|bye|good (morning|night|evening)|cool|nice)\b\W*)+$",
                         re.IGNORECASE)

RATING_PROMPT = (
    "On the scale of 1 to 10, where 1 is purely mundane (e.g., brushing teeth, making bed) "
    "and 10 is extremely poignant (e.g., a break up, college acceptance), rate the likely "
    "poignancy of each of the following pieces of memory.\n{memories}\n"
    "Answer with one line per memory, in the form `NUMBER: RATING`, and nothing else.")


def heuristic_importance(text: str, addressed: bool = False) -> int:
    """The documented rule-of-thumb rating (1-10) of ``text``."""
    stripped = text.strip()
    if not stripped or (len(stripped) <= 60 and _SMALL_TALK.match(stripped)):
        return 1
    rating = 2
    rating += (len(stripped) > 80) + (len(stripped) > 300)
    rating += min(sum(1 for pattern in _LASTING.values() if pattern.search(stripped)), 4)
    rating += bool(_NUMBERS.search(stripped))
    rating += addressed or stripped.endswith("?")
    return max(1, min(10, rating))


PERSONAL = ("identity", "taste", "health", "relationship", "explicit")


def personal(text: str) -> bool:
    """Whether ``text`` says something lasting about its author (worth extracting facts)."""
    return any(_LASTING[name].search(text) for name in PERSONAL)


def rating_prompt(memories: list[str]) -> str:
    """The paper's poignancy prompt for a numbered batch of memories."""
    listed = "\n".join(f"{i}. {m}" for i, m in enumerate(memories, start=1))
    return RATING_PROMPT.format(memories=listed)


_RATING_LINE = re.compile(r"^\s*(\d+)\s*[:.)-]\s*(\d+(?:\.\d+)?)")


def parse_ratings(text: str, count: int) -> dict[int, int]:
    """Ratings by 0-based memory index from a model's ``N: R`` lines (bad lines are skipped)."""
    found: dict[int, int] = {}
    numbered = False
    for line in text.splitlines():
        match = _RATING_LINE.match(line)
        if not match:
            continue
        numbered = True
        index, rating = int(match.group(1)) - 1, round(float(match.group(2)))
        if 0 <= index < count and 1 <= rating <= 10:
            found.setdefault(index, rating)
    if not numbered and count == 1:
        single = re.search(r"\b(10|[1-9])\b", text)
        if single:
            found[0] = int(single.group(1))
    return found
