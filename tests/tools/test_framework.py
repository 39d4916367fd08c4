"""Declaring tools: schemas from type hints and docstrings, class-based tools, the registry."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from domain.errors import Conflict, Invalid, NotFound
from infra.llm.base import ToolSpec
from tools import FunctionTool, Tool, ToolContext, ToolRegistry, default_registry, tool


@tool(permissions={"network"}, timeout=3, max_output_chars=500)
async def forecast(city: str, ctx: ToolContext, days: int = 3,
                   unit: Literal["C", "F"] = "C",
                   tags: Annotated[list[str] | None, Field(max_length=3)] = None) -> str:
    """Forecast the weather for a city.

    Looks a few days ahead.

    Args:
        city: the city's name, e.g. "Lyon".
        days: how many days ahead,
            counted from today.
        unit (str): C or F.

    Returns:
        the forecast as text.
    """
    return f"{city} {days}{unit} for {ctx.agent}"


@tool
def shout(text: str) -> str:
    """Repeat the text in capitals."""
    return text.upper()


class EchoArguments(BaseModel):
    text: str = Field(description="what to say back")
    times: int = Field(default=1, ge=1, le=3)


class Echo(Tool[EchoArguments]):
    """Say the text back, a number of times."""

    name = "echo"
    args_model = EchoArguments

    async def run(self, args: EchoArguments, ctx: ToolContext) -> str:
        return " ".join([args.text] * args.times)


def test_a_function_tool_takes_its_schema_from_hints_and_docstring() -> None:
    spec = forecast.spec()
    parameters = spec["parameters"]
    assert spec["name"] == "forecast"
    assert spec["description"] == "Forecast the weather for a city.\n\nLooks a few days ahead."
    assert parameters["required"] == ["city"]
    assert set(parameters["properties"]) == {"city", "days", "unit", "tags"}  # no ctx
    assert parameters["properties"]["city"] == {"type": "string",
                                                "description": 'the city\'s name, e.g. "Lyon".'}
    assert parameters["properties"]["days"]["description"] == \
        "how many days ahead, counted from today."
    assert parameters["properties"]["unit"]["enum"] == ["C", "F"]
    assert parameters["additionalProperties"] is False
    assert "title" not in str(parameters)
    assert forecast.permissions == {"network"}
    assert (forecast.timeout, forecast.max_output_chars) == (3.0, 500)


def test_specs_are_what_a_model_request_takes() -> None:
    for spec in default_registry().specs():
        assert ToolSpec.model_validate(spec).model_dump() == spec


def test_a_decorated_function_stays_callable() -> None:
    assert isinstance(shout, FunctionTool) and shout.name == "shout"
    assert shout("hi") == "HI"
    assert shout.spec()["parameters"]["required"] == ["text"]


async def test_a_class_based_tool_has_a_name_description_and_arguments_model(
        ctx: ToolContext) -> None:
    echo = Echo()
    assert echo.spec()["description"] == "Say the text back, a number of times."
    assert echo.spec()["parameters"]["properties"]["text"]["description"] == "what to say back"
    assert await echo.run(echo.parse({"text": "hi", "times": 2}), ctx) == "hi hi"


def test_validation_errors_are_readable() -> None:
    with pytest.raises(Invalid) as missing:
        forecast.parse({"days": "soon", "colour": "red"})
    message = missing.value.message
    assert message.startswith("invalid arguments for forecast: ")
    assert "'city' is required" in message
    assert "'days': Input should be a valid integer" in message and "(got 'soon')" in message
    assert "'colour' is not a parameter of this tool" in message
    assert "city (string, required)" in message and "days (integer, optional)" in message
    with pytest.raises(Invalid) as not_an_object:
        forecast.parse(["Lyon"])
    assert "must be a JSON object, not list" in not_an_object.value.message


def test_declarations_a_model_cannot_use_are_refused() -> None:
    def undocumented(x: int) -> int:
        return x

    def variadic(*values: int) -> int:
        """Add up."""
        return sum(values)

    def untyped(x) -> int:  # type: ignore[no-untyped-def]
        """Untyped."""
        return 1

    with pytest.raises(Invalid, match="needs a description"):
        tool(undocumented)
    with pytest.raises(Invalid, match=r"\*args and \*\*kwargs"):
        tool(variadic)
    with pytest.raises(Invalid, match="needs a type hint"):
        tool(untyped)
    with pytest.raises(Invalid, match="not valid"):
        tool(name="no spaces allowed")(shout.function)


def test_the_registry_finds_tools_by_name_and_offers_an_allow_list() -> None:
    registry = ToolRegistry([shout])
    registry.register(Echo)
    registry.register(forecast)
    assert registry.names() == ["echo", "forecast", "shout"]
    assert registry.get("echo").name == "echo"
    assert [s["name"] for s in registry.specs(["shout", "nope", "forecast"])] == \
        ["shout", "forecast"]
    assert [s["name"] for s in registry.specs(["shout", "forecast"], permissions=[])] == \
        ["shout"]
    with pytest.raises(NotFound, match="registered tools: echo, forecast, shout"):
        registry.get("missing")
    with pytest.raises(Conflict, match="already registered"):
        registry.register(FunctionTool(shout.function))
    with pytest.raises(Invalid, match="decorate the function with @tool"):
        registry.register(shout.function)  # type: ignore[arg-type]


def test_sync_tools_run_in_a_worker_only_when_it_can_import_them() -> None:
    def local(text: str) -> str:
        """Defined inside a function: a worker process could not import it."""
        return text

    assert shout.reference() == (__name__, "shout")
    assert FunctionTool(shout.function).reference() == (__name__, "shout")
    assert tool(local).reference() is None  # runs in-process, on a bounded thread pool


def test_the_builtins_are_registered() -> None:
    assert default_registry().names() == [
        "calculator", "current_time", "http_get", "list_room_members", "run_python",
        "search_knowledge_base", "send_direct_message"]
