"""The real ``openai`` and ``anthropic`` SDKs against a local server speaking their formats."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic  # noqa: F401 - imported here, not inside a timed call
import openai  # noqa: F401
import pytest

from domain.agents import AgentDefinition
from domain.errors import Unavailable
from infra.llm import ChatMessage, Completion, Delta, ModelRequest, ToolCall, ToolSpec
from infra.llm.limits import MemoryLimiter
from infra.llm.registry import ProviderOptions, provider_for
from infra.llm.retries import RetryPolicy
from tests.infra.llm.conftest import Pauses
from tests.infra.llm.vendors import Fail, Raw, Reply, Stall, Vendors

CALC = ToolSpec(name="calculator", description="Evaluate arithmetic",
                parameters={"type": "object", "properties": {"expression": {"type": "string"}},
                            "required": ["expression"]})
CALL = {"id": "call_1", "name": "calculator", "arguments": {"expression": "6*7"}}


def openai_agent(vendors: Vendors, route: str = "oa", **more: Any) -> AgentDefinition:
    return AgentDefinition(name="ann", provider="openai", model="gpt-4o-mini",
                           base_url=vendors.openai_url(route), api_key_env="TEST_OPENAI_KEY",
                           **more)


def anthropic_agent(vendors: Vendors, route: str = "an", **more: Any) -> AgentDefinition:
    return AgentDefinition(name="cla", provider="anthropic", model="claude-haiku-4-5",
                           base_url=vendors.anthropic_url(route),
                           api_key_env="TEST_ANTHROPIC_KEY", **more)


def request(model: str, tools: bool = True) -> ModelRequest:
    return ModelRequest(model=model, system="You are terse.", max_tokens=200,
                        tools=[CALC] if tools else [],
                        messages=[ChatMessage(role="user", name="bea", content="what is 6*7?")])


async def streamed(provider: Any, req: ModelRequest) -> tuple[list[str], Completion]:
    deltas: list[str] = []
    completions: list[Completion] = []
    async for item in provider.stream(req):
        if isinstance(item, Completion):
            completions.append(item)
        else:
            assert isinstance(item, Delta) and not completions, "deltas come before the reply"
            deltas.append(item.text)
    assert len(completions) == 1, "exactly one completion ends a stream"
    return deltas, completions[0]


# -- OpenAI -------------------------------------------------------------------------------

async def test_openai_reply_carries_text_tool_calls_usage_and_cost(
        vendors: Vendors, options: ProviderOptions, keys: dict[str, str]) -> None:
    vendors.queue("oa", Reply(text="Let me compute.", tool_calls=[CALL], input_tokens=120,
                              output_tokens=30))
    completion = await provider_for(openai_agent(vendors), options).complete(
        request("gpt-4o-mini"))
    assert completion.text == "Let me compute."
    assert completion.tool_calls == [ToolCall(id="call_1", name="calculator",
                                              arguments={"expression": "6*7"})]
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (120, 30)
    assert not completion.usage.estimated
    assert completion.cost_usd == pytest.approx((120 * 0.15 + 30 * 0.6) / 1e6)
    assert (completion.provider, completion.model, completion.fallback_from) == \
        ("openai", "gpt-4o-mini", None)
    sent = vendors.requests("oa")[0]
    assert sent.headers["authorization"] == f"Bearer {keys['openai']}"
    assert sent.body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert sent.body["messages"][1]["content"] == "what is 6*7?"
    assert sent.body["messages"][1]["name"] == "bea"
    assert sent.body["tools"][0]["function"]["name"] == "calculator"
    assert "stream" not in sent.body


async def test_openai_stream_delivers_deltas_then_text_tool_calls_and_usage(
        vendors: Vendors, options: ProviderOptions, keys: dict[str, str]) -> None:
    vendors.queue("oa", Reply(text="Six times seven is 42", tool_calls=[CALL],
                              input_tokens=50, output_tokens=12))
    deltas, completion = await streamed(provider_for(openai_agent(vendors), options),
                                        request("gpt-4o-mini"))
    assert deltas == ["Six ", "times ", "seven ", "is ", "42"]
    assert completion.text == "".join(deltas)
    assert completion.tool_calls[0].arguments == {"expression": "6*7"}
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (50, 12)
    assert completion.cost_usd == pytest.approx((50 * 0.15 + 12 * 0.6) / 1e6)
    sent = vendors.requests("oa")[0].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_openai_history_with_tool_results_uses_the_wire_format(
        vendors: Vendors, options: ProviderOptions, keys: dict[str, str]) -> None:
    vendors.queue("oa", Reply(text="42"))
    req = request("gpt-4o-mini")
    req.messages += [ChatMessage(role="assistant", content="",
                                 tool_calls=[ToolCall(**CALL)]),
                     ChatMessage(role="tool", name="calculator", tool_call_id="call_1",
                                 content="42")]
    await provider_for(openai_agent(vendors), options).complete(req)
    messages = vendors.requests("oa")[0].body["messages"]
    assert messages[2]["tool_calls"][0]["function"] == {"name": "calculator",
                                                        "arguments": '{"expression": "6*7"}'}
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "42"}


# -- Anthropic ----------------------------------------------------------------------------

async def test_anthropic_reply_carries_text_tool_use_usage_and_cost(
        vendors: Vendors, options: ProviderOptions, keys: dict[str, str]) -> None:
    vendors.queue("an", Reply(text="Computing.", tool_calls=[CALL], input_tokens=300,
                              output_tokens=40))
    completion = await provider_for(anthropic_agent(vendors), options).complete(
        request("claude-haiku-4-5"))
    assert completion.text == "Computing."
    assert completion.tool_calls == [ToolCall(id="call_1", name="calculator",
                                              arguments={"expression": "6*7"})]
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (300, 40)
    assert completion.cost_usd == pytest.approx((300 * 1.0 + 40 * 5.0) / 1e6)
    assert completion.finish_reason == "tool_use"
    sent = vendors.requests("an")[0]
    # SDK versions differ: x-api-key, or a bearer token.
    sent_key = sent.headers.get("x-api-key") or sent.headers["authorization"].split()[-1]
    assert sent_key == keys["anthropic"]
    assert sent.body["system"] == "You are terse."
    assert sent.body["tools"] == [{"name": "calculator", "description": "Evaluate arithmetic",
                                   "input_schema": CALC.parameters}]
    assert sent.body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "bea: what is 6*7?"}]}]


async def test_anthropic_sse_stream_delivers_deltas_tool_use_and_usage(
        vendors: Vendors, options: ProviderOptions, keys: dict[str, str]) -> None:
    vendors.queue("an", Reply(text="Let me add that up", tool_calls=[CALL], input_tokens=90,
                              output_tokens=21))
    deltas, completion = await streamed(provider_for(anthropic_agent(vendors), options),
                                        request("claude-haiku-4-5"))
    assert deltas == ["Let ", "me ", "add ", "that ", "up"]
    assert completion.text == "Let me add that up"
    assert completion.tool_calls == [ToolCall(id="call_1", name="calculator",
                                              arguments={"expression": "6*7"})]
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (90, 21)
    assert completion.cost_usd == pytest.approx((90 * 1.0 + 21 * 5.0) / 1e6)


async def test_anthropic_history_puts_tool_results_in_the_next_user_turn(
        vendors: Vendors, options: ProviderOptions, keys: dict[str, str]) -> None:
    vendors.queue("an", Reply(text="42"))
    req = request("claude-haiku-4-5")
    req.messages += [ChatMessage(role="assistant", content="Computing.",
                                 tool_calls=[ToolCall(**CALL)]),
                     ChatMessage(role="tool", name="calculator", tool_call_id="call_1",
                                 content="42")]
    await provider_for(anthropic_agent(vendors), options).complete(req)
    messages = vendors.requests("an")[0].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1]["content"][1] == {"type": "tool_use", "id": "call_1",
                                         "name": "calculator", "input": {"expression": "6*7"}}
    assert messages[2]["content"] == [{"type": "tool_result", "tool_use_id": "call_1",
                                       "content": "42"}]


# -- retries, fallbacks, malformed answers ------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
async def test_a_429_with_retry_after_is_retried_after_the_pause_it_asked_for(
        vendors: Vendors, options: ProviderOptions, pauses: Pauses, keys: dict[str, str],
        stream: bool) -> None:
    vendors.queue("oa", Fail(429, headers={"retry-after": "1"}), Reply(text="at last"))
    provider = provider_for(openai_agent(vendors), options)
    if stream:
        _, completion = await streamed(provider, request("gpt-4o-mini"))
    else:
        completion = await provider.complete(request("gpt-4o-mini"))
    assert completion.text == "at last"
    assert len(vendors.requests("oa")) == 2
    assert len(pauses.asked) == 1 and 1.0 <= pauses.asked[0] < 1.2


@pytest.mark.parametrize("stream", [False, True])
async def test_a_500_falls_back_to_the_second_provider_and_says_so(
        vendors: Vendors, options: ProviderOptions, pauses: Pauses, keys: dict[str, str],
        stream: bool) -> None:
    vendors.queue("oa", *[Fail(500)] * 3)
    vendors.queue("an", Reply(text="Claude answers", input_tokens=10, output_tokens=3))
    agent = openai_agent(vendors, fallbacks=[
        f"anthropic:claude-haiku-4-5@{vendors.anthropic_url('an')}"])
    provider = provider_for(agent, options)
    if stream:
        _, completion = await streamed(provider, request("gpt-4o-mini"))
    else:
        completion = await provider.complete(request("gpt-4o-mini"))
    assert completion.text == "Claude answers"
    assert (completion.provider, completion.model) == ("anthropic", "claude-haiku-4-5")
    assert completion.fallback_from == "openai:gpt-4o-mini"
    assert completion.cost_usd == pytest.approx((10 * 1.0 + 3 * 5.0) / 1e6)
    assert len(vendors.requests("oa")) == 3, "the primary was retried before falling back"
    assert len(pauses.asked) == 2


async def test_an_auth_error_falls_back_at_once(vendors: Vendors, options: ProviderOptions,
                                                pauses: Pauses, keys: dict[str, str]) -> None:
    vendors.queue("an", Fail(401, {"type": "error", "error": {
        "type": "authentication_error", "message": "invalid x-api-key"}}))
    vendors.queue("oa", Reply(text="OpenAI answers"))
    agent = anthropic_agent(vendors, fallbacks=[
        f"openai:gpt-4o-mini@{vendors.openai_url('oa')}"])
    completion = await provider_for(agent, options).complete(request("claude-haiku-4-5"))
    assert completion.fallback_from == "anthropic:claude-haiku-4-5"
    assert pauses.asked == [], "an auth error is not retried"


async def test_a_missing_key_says_which_variable_to_set(vendors: Vendors,
                                                        options: ProviderOptions) -> None:
    with pytest.raises(Unavailable, match="set TEST_OPENAI_KEY"):
        await provider_for(openai_agent(vendors), options).complete(request("gpt-4o-mini"))
    assert vendors.seen == []


@pytest.mark.parametrize(("vendor", "body"), [
    ("openai", "this is not json"),
    ("openai", '{"id": "x", "object": "chat.completion", "choices": []}'),
    ("anthropic", "<html>gateway</html>"),
    ("anthropic", '{"id": "msg_1", "type": "message", "content": "not a list"}'),
])
async def test_a_malformed_body_gives_a_clear_error(
        vendors: Vendors, options: ProviderOptions, keys: dict[str, str], vendor: str,
        body: str) -> None:
    agent = openai_agent(vendors) if vendor == "openai" else anthropic_agent(vendors)
    vendors.queue("oa" if vendor == "openai" else "an", Raw(body))
    with pytest.raises(Unavailable) as caught:
        await provider_for(agent, options).complete(request(agent.model))
    message = caught.value.message
    assert f"{vendor}:{agent.model}" in message
    assert "format" in message and "base_url" in message, message


async def test_a_malformed_stream_event_gives_a_clear_error(
        vendors: Vendors, options: ProviderOptions, keys: dict[str, str]) -> None:
    vendors.queue("oa", Raw("data: {not json\n\n", content_type="text/event-stream"))
    with pytest.raises(Unavailable) as caught:
        await streamed(provider_for(openai_agent(vendors), options), request("gpt-4o-mini"))
    assert "openai:gpt-4o-mini" in caught.value.message
    assert "could not be read" in caught.value.message


async def test_a_stalled_stream_times_out_and_falls_back(
        vendors: Vendors, keys: dict[str, str], pauses: Pauses) -> None:
    quick = ProviderOptions(limiter=MemoryLimiter(), retry=RetryPolicy(attempts=1),
                            sleep=pauses, timeout=1.0)
    agent = openai_agent(vendors, fallbacks=[
        f"anthropic:claude-haiku-4-5@{vendors.anthropic_url('an')}"])
    # Build both SDK clients first, so the timeout measures only the stalled server.
    await provider_for(openai_agent(vendors), quick).complete(request("gpt-4o-mini"))
    await provider_for(anthropic_agent(vendors), quick).complete(request("claude-haiku-4-5"))
    vendors.queue("oa", Stall())
    with pytest.raises(Unavailable, match="no answer within 1s"):
        await streamed(provider_for(openai_agent(vendors), quick), request("gpt-4o-mini"))
    vendors.queue("oa", Stall(first=""))
    vendors.queue("an", Reply(text="steady"))
    _, completion = await streamed(provider_for(agent, quick), request("gpt-4o-mini"))
    assert completion.text == "steady" and completion.fallback_from == "openai:gpt-4o-mini"


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
async def test_cancelling_a_stream_in_flight_propagates_and_closes_the_connection(
        vendors: Vendors, options: ProviderOptions, keys: dict[str, str], vendor: str) -> None:
    agent = openai_agent(vendors) if vendor == "openai" else anthropic_agent(vendors)
    vendors.queue("oa" if vendor == "openai" else "an", Stall(first="partial"))
    provider = provider_for(agent, options)
    started = asyncio.Event()

    async def consume() -> None:
        async for item in provider.stream(request(agent.model)):
            if isinstance(item, Delta):
                started.set()

    task = asyncio.get_running_loop().create_task(consume())
    # The Anthropic stall sends only message_start: no text, so wait for the request itself.
    await asyncio.wait_for(started.wait() if vendor == "openai" else vendors.arrived.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(vendors.disconnected.wait(), 10)



async def test_reasoning_models_get_max_completion_tokens_and_no_temperature(
        vendors: Vendors, options: ProviderOptions, keys: dict[str, str]) -> None:
    agent = AgentDefinition(name="ann", provider="openai", model="gpt-5-mini",
                            base_url=vendors.openai_url("oa"))
    await provider_for(agent, options).complete(request("gpt-5-mini", tools=False))
    sent = vendors.requests("oa")[0].body
    assert sent["max_completion_tokens"] == 200
    assert "max_tokens" not in sent and "temperature" not in sent


async def test_a_preset_without_usage_in_its_stream_gets_counted_usage_and_cost(
        vendors: Vendors, options: ProviderOptions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test-0123456789")
    vendors.queue("groq", Reply(text="Fast answer from the preset", usage_in_stream=False))
    agent = AgentDefinition(name="gro", provider="groq", model="llama-3.3-70b-versatile",
                            base_url=vendors.openai_url("groq"))
    _, completion = await streamed(provider_for(agent, options),
                                   request("llama-3.3-70b-versatile", tools=False))
    assert completion.provider == "groq" and completion.usage.estimated
    assert completion.usage.output_tokens == len("Fast answer from the preset") // 4 + 1
    assert completion.usage.input_tokens > 0
    assert completion.cost_usd == pytest.approx(
        (completion.usage.input_tokens * 0.59 + completion.usage.output_tokens * 0.79) / 1e6)
    assert vendors.requests("groq")[0].headers["authorization"] == "Bearer gsk-test-0123456789"
