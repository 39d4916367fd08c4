"""The lexicon measures: agreement and sentiment, with negation and phrases."""

from __future__ import annotations

from simulations.measures import Lexicon


def test_agreement_counts_words_and_phrases() -> None:
    agreement = Lexicon.named("agreement")
    assert agreement.score("I agree, that is fair.") == 1.0
    assert agreement.score("I disagree; that is wrong.") == -1.0
    assert agreement.score("The bike is blue.") == 0.0
    assert agreement.score("That is too expensive. I walk away: no deal.") == -1.0
    assert agreement.score("Yes, but I doubt it.") == 0.0


def test_a_negator_flips_the_word_after_it() -> None:
    agreement = Lexicon.named("agreement")
    assert agreement.score("I do not agree.") == -1.0
    assert agreement.score("That is not fair at all.") == -1.0
    assert agreement.score("I have no doubt.") == 1.0


def test_scenarios_add_their_own_words() -> None:
    sentiment = Lexicon.named("sentiment", positive=["refund"], negative=["depot"])
    assert sentiment.score("Your refund is on its way.") == 1.0
    assert sentiment.score("It is stuck at the depot.") == -1.0
    assert Lexicon.named("sentiment").score("Your refund is on its way.") == 0.0
