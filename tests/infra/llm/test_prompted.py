"""Tools for models without native tool calling: injected into the prompt, replies parsed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from domain.agents import AgentDefinition
from domain.errors import Unavailable
from infra.llm import ChatMessage, Completion, Delta, ModelRequest, ToolCall, ToolSpec
from infra.llm.guard import GuardedProvider
from infra.llm.models import model_info
from infra.llm.prompted import BlockFilter, inject, parse
from infra.llm.registry import ProviderOptions, provider_for
from tests.infra.llm.vendors import Reply, Vendors

CALC = ToolSpec(name="calculator", description="Evaluate arithmetic",
                parameters={"type": "object", "properties": {"expression": {"type": "string"}}})
TOOLS = [CALC]


@pytest.mark.parametrize("reply", [
    '<tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}</tool_call>',
    '<tool_call>\n```json\n{"name": "calculator", "arguments": {"expression": "2+2"}}\n```\n'
    "</tool_call>",
    '<tool_call>{"name": "calculator", "arguments": {"expression": "2+2"},}</tool_call>',
    '<TOOL_CALL >{"name": "calculator", "parameters": {"expression": "2+2"}}</TOOL_CALL>',
    '<tool_call>{"name": "calculator", "arguments": "{\\"expression\\": \\"2+2\\"}"}</tool_call>',
    '<tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}',   # never closed
])
def test_tool_calls_are_read_as_the_tool_framework_reads_them(reply: str) -> None:
    parsed = parse("Sure. " + reply, TOOLS)
    assert parsed.errors == []
    assert parsed.calls == [ToolCall(id="call-0", name="calculator",
                                     arguments={"expression": "2+2"})]
    assert parsed.text == "Sure. "


@pytest.mark.parametrize(("reply", "complaint"), [
    ("<tool_call>calculator(2+2)</tool_call>", "not valid JSON"),
    ('<tool_call>{"arguments": {}}</tool_call>', 'has no "name"'),
    ('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', "no tool named 'rm_rf'"),
    ('<tool_call>{"name": "calculator", "arguments": [1]}</tool_call>', "must be a JSON object"),
])
def test_unreadable_tool_calls_become_errors_written_for_the_model(reply: str,
                                                                   complaint: str) -> None:
    parsed = parse(reply, TOOLS)
    assert parsed.calls == [] and complaint in parsed.errors[0]


def test_a_reply_without_blocks_is_plain_text() -> None:
    assert parse("just text, no <b>tags</b>", TOOLS).text == "just text, no <b>tags</b>"


def test_injection_puts_tools_in_the_system_prompt_and_history_in_block_form() -> None:
    request = ModelRequest(model="m", system="Be kind.", tools=TOOLS, messages=[
        ChatMessage(role="user", name="bea", content="2+2?"),
        ChatMessage(role="assistant", content="",
                    tool_calls=[ToolCall(id="c1", name="calculator",
                                         arguments={"expression": "2+2"})]),
        ChatMessage(role="tool", name="calculator", tool_call_id="c1", content="4")])
    sent = inject(request)
    assert sent.tools == []
    assert sent.system.startswith("Be kind.")
    assert "## calculator" in sent.system and "Evaluate arithmetic" in sent.system
    assert sent.messages[1].content == ('<tool_call>{"name": "calculator", "arguments": '
                                        '{"expression": "2+2"}}</tool_call>')
    assert sent.messages[2].role == "user"
    assert sent.messages[2].content == '<tool_result name="calculator">4</tool_result>'


def test_the_stream_filter_holds_back_a_tag_split_across_pieces() -> None:
    blocks = BlockFilter()
    shown = [blocks.feed(p) for p in ["Let me ", "check <to", "ol_call", " >{\"name\"", ": 1}"]]
    assert "".join(shown) + blocks.flush() == "Let me check "
    assert shown[1] == "check ", "a possible tag is held back, not shown"
    plain = BlockFilter()
    shown = [plain.feed(p) for p in ["a <", "b> c <t", "able> <tool_calls>"]]
    assert "".join(shown) + plain.flush() == "a <b> c <table> <tool_calls>"


class Scripted:
    """A bare adapter that answers from a list, recording what it was asked."""

    name = "ollama"

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.asked: list[ModelRequest] = []

    async def complete(self, request: ModelRequest) -> Completion:
        self.asked.append(request)
        return Completion(text=self.replies.pop(0), provider=self.name, model=request.model)

    async def stream(self, request: ModelRequest) -> AsyncIterator[Delta | Completion]:
        completion = await self.complete(request)
        for index in range(0, len(completion.text), 5):
            yield Delta(text=completion.text[index:index + 5])
        yield completion


def guarded(adapter: Scripted) -> GuardedProvider:
    info = model_info("ollama", "gemma3")
    assert not info.tools
    return GuardedProvider(adapter, info)


def ask() -> ModelRequest:
    return ModelRequest(model="gemma3", tools=TOOLS,
                        messages=[ChatMessage(role="user", name="bea", content="2+2?")])


async def test_a_model_without_native_tools_streams_text_but_never_the_tool_call() -> None:
    adapter = Scripted('Checking. <tool_call>{"name": "calculator", "arguments": '
                       '{"expression": "2+2"}}</tool_call>')
    deltas: list[str] = []
    completion: Completion | None = None
    async for item in guarded(adapter).stream(ask()):
        if isinstance(item, Completion):
            completion = item
        else:
            deltas.append(item.text)
    assert completion is not None
    assert "".join(deltas) == completion.text == "Checking. "
    assert completion.tool_calls[0].arguments == {"expression": "2+2"}
    assert completion.finish_reason == "tool_calls"
    assert adapter.asked[0].tools == [] and "<tool_call>" in adapter.asked[0].system


async def test_a_malformed_tool_call_is_answered_with_the_error_and_then_read() -> None:
    adapter = Scripted("<tool_call>{name: calculator}</tool_call>",
                       '<tool_call>{"name": "calculator", "arguments": {"expression": "1"}}'
                       "</tool_call>")
    completion = await guarded(adapter).complete(ask())
    assert completion.tool_calls[0].arguments == {"expression": "1"}
    told = adapter.asked[1].messages[-1]
    assert told.role == "user" and "not understood" in told.content
    assert "not valid JSON" in told.content
    assert "Evaluate arithmetic" in adapter.asked[0].system, "the tools were described"


async def test_a_repair_that_answers_in_plain_text_is_streamed_as_the_reply() -> None:
    adapter = Scripted("<tool_call>oops</tool_call>", "It is 4.")
    deltas: list[str] = []
    completion: Completion | None = None
    async for item in guarded(adapter).stream(ask()):
        if isinstance(item, Completion):
            completion = item
        else:
            deltas.append(item.text)
    assert completion is not None and completion.tool_calls == []
    assert "".join(deltas) == completion.text == "It is 4."


async def test_tool_calls_still_unreadable_after_the_repair_fail_clearly() -> None:
    adapter = Scripted("<tool_call>oops</tool_call>", "<tool_call>still oops</tool_call>")
    with pytest.raises(Unavailable, match="could not be read, even after it was told"):
        await guarded(adapter).complete(ask())


async def test_an_ollama_model_without_tools_gets_them_in_the_prompt_over_the_wire(
        vendors: Vendors, options: ProviderOptions) -> None:
    vendors.queue("ol", Reply(text='<tool_call>{"name": "calculator", "arguments": '
                                   '{"expression": "3*3"}}</tool_call>'))
    agent = AgentDefinition(name="gem", provider="ollama", model="gemma3:1b",
                            base_url=vendors.openai_url("ol"))
    completion = await provider_for(agent, options).complete(ask())
    assert completion.tool_calls[0].arguments == {"expression": "3*3"}
    sent = vendors.requests("ol")[0].body
    assert "tools" not in sent and "<tool_call>" in sent["messages"][0]["content"]
