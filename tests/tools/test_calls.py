"""Tool calls written as <tool_call> blocks by models without native tool calling."""

from __future__ import annotations

import json

import pytest

from infra.llm.base import ToolCall, ToolSpec
from tools import ParsedToolCall, default_registry, parse_tool_calls, render_tool_instructions


def test_it_finds_calls_and_keeps_the_prose() -> None:
    text, calls, errors = parse_tool_calls(
        'Let me check.\n<tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}'
        '</tool_call>\nand the time:\n<tool_call>\n{"name": "current_time"}\n</tool_call>')
    assert text == "Let me check.\n\nand the time:"
    assert calls == [ParsedToolCall(id="call-1", name="calculator",
                                    arguments={"expression": "2+2"}),
                     ParsedToolCall(id="call-2", name="current_time", arguments={})]
    assert errors == []
    assert ToolCall.model_validate(calls[0].model_dump()).name == "calculator"


def test_text_without_calls_is_unchanged() -> None:
    assert parse_tool_calls("  just an answer  ") == ("just an answer", [], [])


@pytest.mark.parametrize("block", [
    '```json\n{"name": "calculator", "arguments": {"expression": "1"}}\n```',
    '{"name": "calculator", "arguments": {"expression": "1"},}',
    '{"name": "calculator", "arguments": "{\\"expression\\": \\"1\\"}"}',
    '{"name": "calculator", "parameters": {"expression": "1"}}',
    '[{"name": "calculator", "arguments": {"expression": "1"}}]',
])
def test_it_tolerates_what_models_commonly_write(block: str) -> None:
    _, calls, errors = parse_tool_calls(f"<tool_call>{block}</tool_call>")
    assert errors == []
    assert calls == [ParsedToolCall(id="call-1", name="calculator",
                                    arguments={"expression": "1"})]


def test_several_objects_in_one_block_are_several_calls() -> None:
    _, calls, errors = parse_tool_calls(
        '<tool_call>{"name": "current_time"}\n{"name": "calculator", "arguments": '
        '{"expression": "1"},}</tool_call>')
    assert errors == [] and [c.name for c in calls] == ["current_time", "calculator"]


def test_a_block_cut_by_a_stop_sequence_still_counts() -> None:
    text, calls, errors = parse_tool_calls(
        'Checking.<tool_call>{"name": "current_time", "arguments": {}}')
    assert (text, [c.name for c in calls], errors) == ("Checking.", ["current_time"], [])


def test_each_bad_block_gets_a_clear_error_and_good_ones_still_run() -> None:
    text, calls, errors = parse_tool_calls(
        "<tool_call>{\"name\": \"calculator\", \"arguments\": {\"expression\": }}</tool_call>"
        "<tool_call>{\"arguments\": {}}</tool_call>"
        "<tool_call>{\"name\": \"current_time\"}</tool_call>"
        "<tool_call>{\"name\": \"calculator\", \"arguments\": [1, 2]}</tool_call>"
        "<tool_call></tool_call>"
        "<tool_call>{\"name\": \"x\"")
    assert text == ""
    assert [c.name for c in calls] == ["current_time"]
    assert errors[0].startswith("tool call 1 is not valid JSON (Expecting value at line 1 "
                                "column 52); write one JSON object such as <tool_call>")
    assert errors[1].startswith('tool call 2 has no "name" naming the tool')
    assert errors[2] == ('tool call 4 (calculator): "arguments" must be a JSON object of named '
                         'arguments, not list')
    assert errors[3].startswith("tool call 5 is empty")
    assert errors[4].startswith("tool call 6 is not valid JSON")
    assert errors[4].endswith("; end each call with </tool_call>")


def test_instructions_describe_each_tool_and_how_to_call_it() -> None:
    specs = default_registry().specs(["calculator", "current_time"])
    from_models = render_tool_instructions([ToolSpec.model_validate(s) for s in specs])
    prompt = render_tool_instructions(specs)
    assert prompt == from_models
    assert prompt.startswith("# Tools\n")
    assert '<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 2"}}' \
           '</tool_call>' in prompt
    assert "\n## calculator\nEvaluate an arithmetic expression" in prompt
    assert "\n## current_time\n" in prompt
    schema_line = next(line for line in prompt.splitlines()
                       if line.startswith("Arguments (JSON Schema): ") and "expression" in line)
    assert json.loads(schema_line.removeprefix("Arguments (JSON Schema): ")) == \
        specs[0]["parameters"]
    assert render_tool_instructions([]) == ""


def test_the_example_in_the_instructions_parses() -> None:
    from tools.calls import EXAMPLE

    assert parse_tool_calls(EXAMPLE)[1] == [ParsedToolCall(
        id="call-1", name="calculator", arguments={"expression": "2 + 2"})]
