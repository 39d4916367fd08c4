"""Short-term context strategies (pure): what each keeps, and token_window's budget."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import Invalid
from memory.context import (
    ELLIPSIS,
    SUMMARY_AUTHOR,
    ContextInputs,
    ContextMessage,
    RoomSummary,
    choose_context,
    first_last,
    last_n,
    message_cost,
    summarize,
    token_budget,
    token_window,
    vector,
)
from memory.tokens import PER_MESSAGE, estimate_tokens


def room(n: int, start: int = 1) -> list[ContextMessage]:
    return [ContextMessage(p, f"user{p % 3}", f"message number {p}")
            for p in range(start, start + n)]


@st.composite
def histories(draw: st.DrawFn) -> list[ContextMessage]:
    count = draw(st.integers(min_value=1, max_value=40))
    positions = sorted(draw(st.sets(st.integers(1, 100_000), min_size=count, max_size=count)))
    messages = []
    for position in positions:
        author = draw(st.text(alphabet="abcxyz019_-", min_size=1, max_size=64))
        text = draw(st.text(min_size=1, max_size=200)) * draw(st.integers(1, 60))
        messages.append(ContextMessage(position, author, text))
    return draw(st.permutations(messages))


@st.composite
def models(draw: st.DrawFn) -> tuple[int, int, int]:
    """(context window, max output, reserved for the system prompt); >= 64 tokens left."""
    window = draw(st.integers(256, 200_000))
    reserved = draw(st.integers(0, window // 4))
    max_output = draw(st.integers(1, window - reserved - 64))
    return window, max_output, reserved


@settings(max_examples=1_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), model=models())
def test_token_window_never_exceeds_the_budget_and_keeps_the_newest(
        history: list[ContextMessage], model: tuple[int, int, int]) -> None:
    window, max_output, reserved = model
    budget = token_budget(window, max_output, reserved)
    kept = token_window(history, budget)
    newest = max(history, key=lambda m: m.position)
    assert sum(message_cost(m) for m in kept) <= budget
    assert kept and kept[-1].position == newest.position
    if kept[-1].text != newest.text:  # cut only when it alone would not fit
        assert message_cost(newest) > budget and len(kept) == 1
        assert kept[-1].text.endswith(ELLIPSIS)
        assert newest.text.startswith(kept[-1].text[:-1])
    ordered = sorted(history, key=lambda m: m.position)
    assert kept[:-1] == ordered[len(ordered) - len(kept):-1], "an unbroken tail, in order"


def test_token_window_counts_with_the_given_counter() -> None:
    history = room(10)
    words = token_window(history, budget=5 * (PER_MESSAGE + 1 + 3),
                         count=lambda s: len(s.split()))
    assert [m.position for m in words] == [6, 7, 8, 9, 10]


def test_token_window_refuses_a_budget_too_small_for_any_message() -> None:
    with pytest.raises(Invalid, match="context window"):
        token_window(room(2), budget=2)
    assert token_window([], budget=2) == []


def test_estimate_is_four_characters_a_token() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2


def test_last_n_first_last_summarize_and_vector() -> None:
    history = room(30)
    assert [m.position for m in last_n(list(reversed(history)), 3)] == [28, 29, 30]
    assert last_n(history, 0) == []
    assert [m.position for m in first_last(history[:5], history[10:], 2, 3)] == [1, 2, 28, 29,
                                                                                   30]
    assert [m.position for m in first_last(history, history, 2, 29)] == list(range(1, 31))
    summarized = summarize(history, RoomSummary(25, "they talked about ferns"), 3)
    assert summarized[0].author == SUMMARY_AUTHOR and "ferns" in summarized[0].text
    assert [m.position for m in summarized[1:]] == [28, 29, 30]
    assert [m.position for m in summarize(history, RoomSummary(29, "x"), 10)[1:]] == [30]
    assert summarize(history, None, 2) == history[-2:]
    relevant = [history[4], history[27], history[1]]  # most relevant first
    assert [m.position for m in vector(history, relevant, 3, 1)] == [5, 28, 29, 30]
    assert [m.position for m in vector(history, relevant, 3, 5)] == [2, 5, 28, 29, 30]


def test_choose_context_dispatches_by_name() -> None:
    history = room(10)
    inputs = ContextInputs(recent=history, n=2, first=history[:3], budget=40,
                           summary=RoomSummary(8, "s"), relevant=[history[0]])
    assert [m.position for m in choose_context("last_n", inputs)] == [9, 10]
    assert [m.position for m in choose_context("first_last", inputs, n_first=1)] == [1, 9, 10]
    assert choose_context("token_window", inputs)[-1].position == 10
    assert choose_context("summarize", inputs)[0].author == SUMMARY_AUTHOR
    assert [m.position for m in choose_context("vector", inputs)] == [1, 9, 10]
    with pytest.raises(Invalid, match="unknown context strategy"):
        choose_context("everything", inputs)
    with pytest.raises(Invalid, match="budget"):
        choose_context("token_window", ContextInputs(recent=history))
