"""Pure memory rules: scores, importance, reflection, upkeep, facts and the memory stream."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import Invalid, NotFound
from domain.memories import MemoryConfig, MemoryStream, Weights, memory_stream_id
from memory import facts, importance, reflection, scoring, upkeep
from memory.prompt import Recalled, with_memory

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_recency_decays_by_0995_an_hour_and_parts_are_min_max_normalised() -> None:
    assert scoring.recency(NOW, NOW) == 1.0
    assert scoring.recency(NOW - timedelta(hours=10), NOW) == pytest.approx(0.995 ** 10)
    assert scoring.recency(NOW + timedelta(hours=1), NOW) == 1.0
    assert scoring.normalise([2.0, 4.0, 3.0]) == [0.0, 1.0, 0.5]
    assert scoring.normalise([0.3, 0.3]) == [0.5, 0.5]
    assert scoring.rating_to_importance(7) == pytest.approx(0.7)


def test_rank_follows_the_formula_with_weights() -> None:
    candidates = [
        scoring.Candidate("recent-important", 0.9, NOW - timedelta(hours=1), 0.4),
        scoring.Candidate("old-trivial", 0.1, NOW - timedelta(hours=500), 0.4),
        scoring.Candidate("middle", 0.5, NOW - timedelta(hours=50), 0.8),
    ]
    weights = Weights(recency=0.5, importance=2.0, relevance=1.5)
    ranked = scoring.rank(candidates, NOW, weights)
    rec = [0.995 ** 1, 0.995 ** 500, 0.995 ** 50]
    imp, rel = [0.9, 0.1, 0.5], [0.4, 0.4, 0.8]

    def norm(values: list[float], i: int) -> float:
        return (values[i] - min(values)) / (max(values) - min(values))

    for i, c in enumerate(candidates):
        expected = 0.5 * norm(rec, i) + 2.0 * norm(imp, i) + 1.5 * norm(rel, i)
        got = next(s for s in ranked if s.memory_id == c.memory_id)
        assert got.score == pytest.approx(expected, abs=1e-12)
    assert [s.memory_id for s in ranked] == ["middle", "recent-important", "old-trivial"]
    assert [s.memory_id for s in scoring.rank(candidates, NOW, weights, k=1)] == ["middle"]


def test_heuristic_importance_is_documented_and_bounded() -> None:
    assert importance.heuristic_importance("ok thanks!") == 1
    assert importance.heuristic_importance("the weather is grey") == 2
    lasting = importance.heuristic_importance(
        "Remember: my name is Ana, I'm allergic to peanuts and my favourite colour is teal. "
        "I promise to visit on 12 May.", addressed=True)
    assert lasting >= 8
    assert 1 <= importance.heuristic_importance("x" * 10_000 + " remember 1 always") <= 10


def test_model_ratings_are_parsed_leniently() -> None:
    prompt = importance.rating_prompt(["brushed teeth", "got into college"])
    assert "1. brushed teeth" in prompt and "poignancy" in prompt
    assert importance.parse_ratings("1: 2\n2: 9\n3: 7\nnonsense", 2) == {0: 2, 1: 9}
    assert importance.parse_ratings("Rating: 8", 1) == {0: 8}
    assert importance.parse_ratings("1: 11", 1) == {}


def test_reflection_asks_questions_then_cited_insights() -> None:
    assert not reflection.should_reflect([5.0] * 29)
    assert reflection.should_reflect([5.0] * 30)
    assert not reflection.should_reflect([1.0] * 200), "only the newest 100 count"
    recent = [reflection.Statement(f"m{i}", f"statement {i}") for i in range(1, 6)]
    asked: list[str] = []

    async def ask(prompt: str) -> str:
        asked.append(prompt)
        if "salient high-level questions" in prompt:
            return "1. What does Ana care about?\n2. Who is Ana?\n3. Why teal?\n4. extra?"
        return ("Ana loves colour (because of 1, 3)\n"
                "- Ana is careful (because of 2 and 9)\n"
                "uncited musing\n"
                "Ana plans ahead (5)")

    async def recall(question: str) -> list[reflection.Statement]:
        return recent

    insights = asyncio.run(reflection.reflect("ada", recent, ask, recall))
    assert len(asked) == 4 and "statement 5" in asked[0]
    assert "What 5 high-level insights" in asked[1]
    assert len(insights) == 9
    first = insights[0]
    assert first.question == "What does Ana care about?"
    assert first.content == "Ana loves colour" and first.cites == ("m1", "m3")
    assert insights[1].cites == ("m2",), "a citation past the list is dropped"
    assert insights[2].cites == ("m5",)


def test_consolidation_keeps_the_most_important_and_does_not_chain() -> None:
    old = NOW - timedelta(days=1)
    states = [upkeep.MemoryState("a", 0.3, old, old), upkeep.MemoryState("b", 0.8, NOW, NOW),
              upkeep.MemoryState("c", 0.3, NOW, NOW), upkeep.MemoryState("d", 0.2, NOW, NOW)]
    pairs = [("a", "b", 0.97), ("b", "a", 0.97), ("a", "c", 0.96), ("c", "d", 0.99),
             ("a", "d", 0.5)]
    merges = upkeep.near_duplicates(states, pairs, 0.95)
    assert merges == [upkeep.Merge("b", ("a",), 0.97), upkeep.Merge("c", ("d",), 0.99)]


def test_forgetting_and_retention() -> None:
    fresh = upkeep.MemoryState("fresh", 0.5, NOW, NOW)
    stale = upkeep.MemoryState("stale", 0.5, NOW - timedelta(days=90),
                               NOW - timedelta(days=90))
    vital = upkeep.MemoryState("vital", 1.0, NOW - timedelta(days=90), NOW - timedelta(hours=1))
    states = [fresh, stale, vital]
    assert upkeep.to_forget(states, NOW, 0.01) == ["stale"]
    assert upkeep.to_forget(states, NOW, 0.0) == []
    assert upkeep.past_retention(states, NOW, max_count=2) == ["stale"]
    assert sorted(upkeep.past_retention(states, NOW, 10, max_age_days=30)) == ["stale", "vital"]


def test_facts_are_parsed_from_json_lines_and_formatted() -> None:
    prompt = facts.extraction_prompt("ana", [("ana", "I love teal")], [])
    assert "ana: I love teal" in prompt and "preference" in prompt
    found = facts.parse_facts('{"key": "Favourite colour", "value": "teal", '
                              '"category": "preference"}\nNONE\n{"key": "x"}\n'
                              '{"key": "city", "value": "Porto", "category": "weird"}')
    assert found == [facts.Fact("favourite colour", "teal", "preference"),
                     facts.Fact("city", "Porto", "other")]
    text = with_memory("You are ada.",
                       [Recalled("m1", "episodic", "ana likes teal", NOW)],
                       {"ana": found})
    assert text.startswith("You are ada.\n\nThings you remember")
    assert "- (2026-01-01, episodic) ana likes teal" in text
    assert "What you know about ana:\n- favourite colour: teal (preference)" in text
    assert with_memory("You are ada.", [], {}) == "You are ada."


def test_memory_stream_validates_and_tracks_facts() -> None:
    stream = MemoryStream.open("ada")
    assert stream.id == memory_stream_id("ada")
    with pytest.raises(Invalid):
        stream.remember("dream", "x", 5, {})
    with pytest.raises(Invalid):
        stream.remember("semantic", "x", 11, {})
    with pytest.raises(Invalid):
        stream.reflect("q", "insight", 5, cites=[])
    fact = stream.remember_fact("ana", "Colour", "teal", "preference")
    assert stream.remember_fact("ana", "colour", "teal", "preference") == fact
    assert stream.remember_fact("ana", "colour", "navy", "preference") == fact
    assert stream.facts_about("ana") == [{"key": "colour", "fact_id": fact, "value": "navy",
                                          "category": "preference"}]
    with pytest.raises(NotFound):
        stream.forget_fact("bob", fact)
    stream.forget_fact("ana", fact)
    assert stream.facts_about("ana") == []
    names = [type(e).__name__ for e in stream.collect_events()]
    assert names == ["MemoryStreamOpened", "FactRemembered", "FactRemembered", "FactForgotten"]


def test_memory_config_defaults_follow_the_paper() -> None:
    config = MemoryConfig()
    assert config.context == "last_n" and config.weights == Weights()
    assert config.reflection_threshold == 150 and config.importance == "heuristic"
    with pytest.raises(ValueError):
        MemoryConfig.model_validate({"context": "everything"})
