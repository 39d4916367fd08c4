"""Structured output: JSON matching a pydantic model, one retry with the error, then Invalid."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import BaseModel

from domain.agents import AgentDefinition
from domain.errors import Invalid
from infra.llm import ChatMessage, Completion, Delta, ModelRequest
from infra.llm.registry import ProviderOptions, provider_for
from infra.llm.structured import complete_json
from tests.infra.llm.vendors import Reply, Vendors


class Verdict(BaseModel):
    speaker: str
    confidence: float


class Answers:
    """A provider answering from a list and recording the requests."""

    name = "fake"

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.asked: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> Completion:
        self.asked.append(request)
        return Completion(text=self.texts.pop(0), provider="fake", model=request.model)

    async def stream(self, request: ModelRequest) -> AsyncIterator[Delta | Completion]:
        yield await self.complete(request)


def question() -> ModelRequest:
    return ModelRequest(model="m", messages=[ChatMessage(role="user", content="who speaks?")])


async def test_valid_json_is_returned_as_the_model() -> None:
    provider = Answers('```json\n{"speaker": "ada", "confidence": 0.9}\n```')
    result = await complete_json(provider, question(), Verdict)
    assert result.value == Verdict(speaker="ada", confidence=0.9)
    assert len(result.completions) == 1
    assert provider.asked[0].json_schema == Verdict.model_json_schema()


async def test_invalid_json_is_retried_once_with_the_validation_error() -> None:
    provider = Answers('{"speaker": "ada"}', '{"speaker": "ada", "confidence": 0.5}')
    result = await complete_json(provider, question(), Verdict)
    assert result.value.confidence == 0.5 and len(result.completions) == 2
    told = provider.asked[1].messages[-1].content
    assert "not valid" in told and "confidence" in told and "Field required" in told


async def test_a_second_invalid_reply_fails_clearly() -> None:
    provider = Answers("I think ada.", '{"speaker": 3, "confidence": "high"}')
    with pytest.raises(Invalid) as caught:
        await complete_json(provider, question(), Verdict)
    message = caught.value.message
    assert "did not reply with JSON matching Verdict" in message and "confidence" in message


async def test_openai_gets_the_schema_as_response_format_and_an_instruction(
        vendors: Vendors, options: ProviderOptions, keys: dict[str, str]) -> None:
    vendors.queue("oa", Reply(text='{"speaker": "bo", "confidence": 1}'))
    agent = AgentDefinition(name="ann", provider="openai", model="gpt-4o-mini",
                            base_url=vendors.openai_url("oa"), api_key_env="TEST_OPENAI_KEY")
    result = await complete_json(provider_for(agent, options), question(), Verdict)
    assert result.value.speaker == "bo"
    sent = vendors.requests("oa")[0].body
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == Verdict.model_json_schema()
    assert "JSON schema" in sent["messages"][0]["content"]
