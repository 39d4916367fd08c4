"""Facts about users: extracted by an agent's model from conversations, one JSON line each.

Facts are kept per (user, agent) and recorded as ``FactRemembered`` events; a user can list
and delete theirs (``FactForgotten``). This module holds the extraction prompt, its tolerant
parser and nothing else: recording and storage live elsewhere.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from domain.memories import FACT_CATEGORIES

EXTRACTION_PROMPT = (
    "Below is a conversation in a chat room. Extract the lasting facts about {user} that "
    "would help you in future conversations with them: who they are, what they like or "
    "dislike, their work, the people in their life, their plans. Skip passing remarks and "
    "facts already known.\n"
    "Known facts:\n{known}\n\nConversation:\n{conversation}\n\n"
    "Answer with one JSON object per line, "
    '{{"key": "a short name", "value": "the fact", "category": "one of {categories}"}}, '
    "and nothing else; answer NONE if there is nothing new.")


@dataclass(frozen=True)
class Fact:
    """One fact about a user: a short key, its value and a category."""

    key: str
    value: str
    category: str


def extraction_prompt(user: str, conversation: list[tuple[str, str]],
                      known: list[Fact]) -> str:
    """The prompt asking a model for new facts about ``user`` in ``(author, text)`` lines."""
    lines = "\n".join(f"{author}: {text}" for author, text in conversation)
    facts = "\n".join(f"- {f.key}: {f.value}" for f in known) or "(none)"
    return EXTRACTION_PROMPT.format(user=user, known=facts, conversation=lines,
                                    categories="|".join(FACT_CATEGORIES))


_OBJECT = re.compile(r"\{.*\}")


def parse_facts(text: str, limit: int = 10) -> list[Fact]:
    """Facts from a model's JSON lines; anything else is ignored, unknown categories -> other."""
    found: dict[str, Fact] = {}
    for line in text.splitlines():
        match = _OBJECT.search(line)
        if not match:
            continue
        try:
            value = json.loads(match.group(0))
        except ValueError:
            continue
        if not isinstance(value, dict):
            continue
        key, fact = value.get("key"), value.get("value")
        if not isinstance(key, str) or not isinstance(fact, str):
            continue
        key, fact = key.strip().lower()[:100], fact.strip()[:500]
        if not key or not fact:
            continue
        category = value.get("category")
        found[key] = Fact(key, fact, category if category in FACT_CATEGORIES else "other")
    return list(found.values())[:limit]
