"""Tools declared from plain functions: ``@tool`` reads the type hints and the docstring.

```python
@tool(permissions={"network"}, cacheable_for=timedelta(minutes=10))
async def http_get(url: HttpUrl, ctx: ToolContext) -> str:
    \"\"\"Fetch a web page from an allowed host and return its text.

    Args:
        url: the http(s) address to fetch.
    \"\"\"
```

The parameters become a pydantic model (extra arguments forbidden), whose JSON schema the model
sees; a parameter annotated ``ToolContext`` receives the call's context and is not shown.
Synchronous functions run in a worker thread so a timeout still answers on time.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, Field, create_model

from domain.errors import Invalid
from tools.base import (
    DEFAULT_MAX_OUTPUT_CHARS,
    DEFAULT_TIMEOUT,
    Tool,
    ToolContext,
    reflow,
)

Authorizer = Callable[[Any, ToolContext], None]

_SECTION = re.compile(r"^(args|arguments|parameters|params|returns?|raises|yields?|examples?|"
                      r"notes?|see also)\s*:\s*$", re.IGNORECASE)
_PARAMETER = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class FunctionTool(Tool[BaseModel]):
    """A tool made by ``@tool`` from a function; calling it calls the function unchanged."""

    def __init__(self, function: Callable[..., Any], *, name: str | None = None,
                 description: str | None = None, permissions: Iterable[str] = (),
                 cacheable_for: timedelta | None = None, timeout: float = DEFAULT_TIMEOUT,
                 max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
                 authorize: Authorizer | None = None) -> None:
        summary, documented = parse_docstring(function.__doc__)
        self.function = function
        self.name = name or function.__name__
        self.description = description or summary
        self.permissions = frozenset(permissions)
        self.cacheable_for = cacheable_for
        self.timeout = float(timeout)
        self.max_output_chars = int(max_output_chars)
        self._authorize = authorize
        self._context_parameter, self._parameters, self.args_model = _arguments_model(
            function, self.name, documented)
        self.check_declaration()
        self.__doc__ = function.__doc__
        self.__wrapped__ = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly, bypassing validation and limits."""
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<tool {self.name}>"

    def authorize(self, args: BaseModel, ctx: ToolContext) -> None:
        """Run the declared authorizer, if any, before the cache or the function."""
        if self._authorize is not None:
            self._authorize(args, ctx)

    async def run(self, args: BaseModel, ctx: ToolContext) -> Any:
        """Call the function with the validated arguments (and the context, if it asks)."""
        kwargs = {parameter: getattr(args, parameter) for parameter in self._parameters}
        if self._context_parameter is not None:
            kwargs[self._context_parameter] = ctx
        if inspect.iscoroutinefunction(self.function):
            return await self.function(**kwargs)
        return await asyncio.to_thread(self.function, **kwargs)


@overload
def tool(function: Callable[..., Any], /) -> FunctionTool: ...


@overload
def tool(*, name: str | None = None, description: str | None = None,
         permissions: Iterable[str] = (), cacheable_for: timedelta | None = None,
         timeout: float = DEFAULT_TIMEOUT, max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
         authorize: Authorizer | None = None) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def tool(function: Callable[..., Any] | None = None, /, *, name: str | None = None,
         description: str | None = None, permissions: Iterable[str] = (),
         cacheable_for: timedelta | None = None, timeout: float = DEFAULT_TIMEOUT,
         max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
         authorize: Authorizer | None = None,
         ) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Declare a function as a tool, as ``@tool`` or ``@tool(permissions={...}, ...)``."""

    def declare(target: Callable[..., Any]) -> FunctionTool:
        return FunctionTool(target, name=name, description=description, permissions=permissions,
                            cacheable_for=cacheable_for, timeout=timeout,
                            max_output_chars=max_output_chars, authorize=authorize)

    return declare(function) if function is not None else declare


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and ``{parameter: description}``."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    documented: dict[str, str] = {}
    section: str | None = None
    entry_indent: int | None = None
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        header = _SECTION.match(stripped)
        if header and indent == 0:
            section = "args" if header.group(1).lower() in ("args", "arguments", "parameters",
                                                             "params") else "other"
            entry_indent, current = None, None
            continue
        if section is None:
            summary.append(line)
        elif section == "args" and stripped:
            entry = _PARAMETER.match(stripped)
            if entry and (entry_indent is None or indent <= entry_indent):
                entry_indent = indent
                current = entry.group(1)
                documented[current] = entry.group(2).strip()
            elif current is not None:
                documented[current] = (documented[current] + " " + stripped).strip()
    return reflow("\n".join(summary)), documented


def _arguments_model(function: Callable[..., Any], tool_name: str, documented: dict[str, str],
                     ) -> tuple[str | None, list[str], type[BaseModel]]:
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except NameError as error:
        raise Invalid(f"tool {tool_name!r}: cannot resolve a type hint ({error}); import the "
                      "type at module level") from None
    context_parameter: str | None = None
    parameters: list[str] = []
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise Invalid(f"tool {tool_name!r}: *args and **kwargs cannot be described to a "
                          "model; name each parameter")
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise Invalid(f"tool {tool_name!r}: parameter {parameter.name!r} is positional-only; "
                          "tools are called with named arguments")
        hint = hints.get(parameter.name)
        if hint is ToolContext:
            context_parameter = parameter.name
            continue
        if hint is None:
            raise Invalid(f"tool {tool_name!r}: parameter {parameter.name!r} needs a type hint, "
                          "from which its JSON schema is made")
        if parameter.name.startswith("_"):
            raise Invalid(f"tool {tool_name!r}: parameter {parameter.name!r} starts with '_'; "
                          "rename it")
        default = ... if parameter.default is parameter.empty else parameter.default
        description = documented.get(parameter.name)
        fields[parameter.name] = (hint, Field(default, description=description)
                                  if description else default)
        parameters.append(parameter.name)
    model_name = "".join(part.title() for part in re.split(r"[_-]", tool_name)) + "Arguments"
    model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
    return context_parameter, parameters, model
