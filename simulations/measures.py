"""Lexicon measures of a message: how much it agrees (or how positive it is), from -1 to 1.

Deliberately simple and documented, so a researcher can predict a score by reading the
message: words and phrases of a positive and a negative list are counted; a negator ("not",
"never", "don't", …) up to two words before a listed word flips it ("not fair" counts as
negative); the score is ``(positive - negative) / (positive + negative)``, and 0 when the
message holds no listed word. Scenarios choose ``agreement`` or ``sentiment`` and may add
words of their own (``[metrics] positive = [...]``, ``negative = [...]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
NEGATORS = frozenset({"not", "no", "never", "don't", "dont", "doesn't", "isn't", "aren't",
                      "can't", "cannot", "won't", "wouldn't", "shouldn't", "hardly", "nor"})
NEGATION_REACH = 2

LEXICONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "agreement": (
        ("agree", "agreed", "agreement", "yes", "deal", "accept", "accepted", "fair",
         "exactly", "right", "good point", "makes sense", "convinced", "support", "together",
         "compromise", "sounds good", "happy to", "consensus", "you win", "common ground"),
        ("disagree", "reject", "refuse", "wrong", "unacceptable", "doubt", "however",
         "against", "too much", "too expensive", "no deal", "impossible", "nonsense",
         "mistaken", "object", "walk away", "oppose"),
    ),
    "sentiment": (
        ("good", "great", "thanks", "thank", "happy", "love", "excellent", "glad", "wonderful",
         "nice", "helpful", "resolved", "perfect", "enjoy", "lovely", "pleased", "delighted",
         "fine", "welcome", "appreciate"),
        ("bad", "angry", "terrible", "sorry", "problem", "late", "broken", "hate",
         "disappointed", "awful", "worse", "worst", "upset", "annoyed", "sad", "tired",
         "missing", "wrong", "complaint", "frustrated"),
    ),
}


@dataclass(frozen=True)
class Lexicon:
    """Positive and negative words (or phrases) of one measure."""

    name: str
    positive: tuple[tuple[str, ...], ...]
    negative: tuple[tuple[str, ...], ...]

    @classmethod
    def named(cls, measure: str, positive: list[str] | None = None,
              negative: list[str] | None = None) -> Lexicon:
        """The built-in lexicon ``measure`` with the scenario's extra words added."""
        base_positive, base_negative = LEXICONS[measure]
        return cls(measure, _phrases([*base_positive, *(positive or [])]),
                   _phrases([*base_negative, *(negative or [])]))

    def score(self, text: str) -> float:
        """-1 (all negative) .. 1 (all positive); 0 when no listed word occurs."""
        words = _WORD.findall(text.lower())
        positive = negative = 0
        index = 0
        while index < len(words):
            polarity, length = self._match(words, index)
            if polarity == 0:
                index += 1
                continue
            window = words[max(0, index - NEGATION_REACH):index]
            if any(w in NEGATORS for w in window):
                polarity = -polarity
            if polarity > 0:
                positive += 1
            else:
                negative += 1
            index += length
        total = positive + negative
        return 0.0 if total == 0 else (positive - negative) / total

    def _match(self, words: list[str], index: int) -> tuple[int, int]:
        best = (0, 0)
        for polarity, phrases in ((1, self.positive), (-1, self.negative)):
            for phrase in phrases:
                if len(phrase) > best[1] and tuple(words[index:index + len(phrase)]) == phrase:
                    best = (polarity, len(phrase))
        return best


def _phrases(entries: list[str]) -> tuple[tuple[str, ...], ...]:
    seen: dict[tuple[str, ...], None] = {}
    for entry in entries:
        words = tuple(_WORD.findall(entry.lower()))
        if words:
            seen[words] = None
    return tuple(seen)
