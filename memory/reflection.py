"""Reflection, as in the Generative Agents paper: higher-level insights that cite their sources.

When the importance (1-10) of the memories recorded since the last reflection sums past a
threshold (150, over at most the 100 newest), the agent's model is asked for the 3 most salient
high-level questions about its 100 newest memories; for each question, the memories relevant to
it are retrieved and numbered, and the model is asked for 5 insights in the form
``insight (because of 1, 5, 3)``. Each insight that cites at least one numbered memory becomes
a semantic memory citing those memories; insights citing nothing are dropped.

The model and the retrieval are handed in as async functions: this module does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

THRESHOLD = 150.0
WINDOW = 100
QUESTIONS = 3
INSIGHTS = 5

QUESTIONS_PROMPT = (
    "{statements}\n\nGiven only the information above, what are {n} most salient high-level "
    "questions we can answer about the subjects in the statements? "
    "Answer with one question per line and nothing else.")
INSIGHTS_PROMPT = (
    "Statements about {agent}\n{statements}\n\nWhat {n} high-level insights can you infer from "
    "the above statements? (example format: insight (because of 1, 5, 3)) "
    "Answer with one insight per line.")


@dataclass(frozen=True)
class Statement:
    """A memory as the model sees it in a reflection prompt."""

    memory_id: str
    content: str


@dataclass(frozen=True)
class Insight:
    """A reflection: the question it answers, what it says, and the memories it cites."""

    question: str
    content: str
    cites: tuple[str, ...]


Ask = Callable[[str], Awaitable[str]]
Recall = Callable[[str], Awaitable[list[Statement]]]


def should_reflect(ratings_since_last: Sequence[float], threshold: float = THRESHOLD,
                   window: int = WINDOW) -> bool:
    """Whether the newest ``window`` ratings since the last reflection sum to ``threshold``."""
    return sum(list(ratings_since_last)[-window:]) >= threshold


def _numbered(statements: Sequence[Statement]) -> str:
    return "\n".join(f"{i}. {s.content}" for i, s in enumerate(statements, start=1))


def questions_prompt(statements: Sequence[Statement], n: int = QUESTIONS) -> str:
    """The paper's prompt for the salient questions about recent memories."""
    return QUESTIONS_PROMPT.format(statements=_numbered(statements), n=n)


def insights_prompt(agent: str, statements: Sequence[Statement], n: int = INSIGHTS) -> str:
    """The paper's prompt for cited insights about numbered memories."""
    return INSIGHTS_PROMPT.format(agent=agent, statements=_numbered(statements), n=n)


_LEADER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|Q\d*[:.)])?\s*")


def parse_questions(text: str, limit: int = QUESTIONS) -> list[str]:
    """Up to ``limit`` questions, one per non-empty line, without list markers."""
    found: list[str] = []
    for line in text.splitlines():
        question = _LEADER.sub("", line).strip()
        if question and question not in found:
            found.append(question[:500])
    return found[:limit]


_CITED = re.compile(r"^(?P<insight>.+?)\s*\(\s*(?:because of|because|from|see)?\s*"
                    r"(?P<cites>\d+(?:\s*(?:,|and|&)\s*\d+)*)\s*\)\s*\.?\s*$", re.IGNORECASE)


def parse_insights(text: str, statements: Sequence[Statement],
                   limit: int = INSIGHTS) -> list[tuple[str, tuple[str, ...]]]:
    """Insights and the memory ids they cite; lines citing no numbered memory are dropped."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for line in text.splitlines():
        match = _CITED.match(_LEADER.sub("", line).strip())
        if not match:
            continue
        numbers = [int(n) for n in re.findall(r"\d+", match.group("cites"))]
        cites = tuple(dict.fromkeys(statements[n - 1].memory_id for n in numbers
                                    if 1 <= n <= len(statements)))
        insight = match.group("insight").strip().rstrip(",;:")
        if cites and insight:
            found.append((insight[:2_000], cites))
    return found[:limit]


async def reflect(agent: str, recent: Sequence[Statement], ask: Ask, recall: Recall,
                  questions: int = QUESTIONS, insights: int = INSIGHTS) -> list[Insight]:
    """Ask for questions about ``recent``, then cited insights for each; returns the insights."""
    if not recent:
        return []
    asked = parse_questions(await ask(questions_prompt(recent, questions)), questions)
    found: list[Insight] = []
    for question in asked:
        evidence = await recall(question)
        if not evidence:
            continue
        answer = await ask(insights_prompt(agent, evidence, insights))
        found.extend(Insight(question, content, cites)
                     for content, cites in parse_insights(answer, evidence, insights))
    return found
