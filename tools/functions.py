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

A synchronous function runs where it can be stopped: in a small reusable worker process
(``WorkerPool``) that is killed at the tool's timeout, or when the call is cancelled, and
replaced. A thread cannot be stopped, and one big-integer operation holds the GIL for as long
as it runs, so a runaway call in a thread would freeze the agent for good. The worker imports
the function by its module and name and gets a copy of the context whose ``clock`` is frozen
at the call's start and whose async callables (room access) are ``None``; so a synchronous
tool sees its module freshly imported, not the caller's state, and a tool that must share
state or use room access is written ``async``. A function the worker cannot import (one
defined inside another function, or in ``__main__``) or whose arguments do not pickle runs
in-process on a thread of its own pool instead; such a call cannot be stopped, so at most
``IN_PROCESS_SLOTS`` of them run at once and further calls are refused until one ends.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
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
from tools.executor import Unportable, pool, run_in_process

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
        self._reference: tuple[str, str] | None | bool = False  # False: not looked up yet
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
        if inspect.iscoroutinefunction(self.function):
            if self._context_parameter is not None:
                kwargs[self._context_parameter] = ctx
            return await self.function(**kwargs)
        reference = self.reference()
        if reference is not None:
            portable = _portable_context(ctx) if self._context_parameter is not None else None
            try:
                # The executor's own timeout cancels this first; ours is for direct callers.
                return await pool().call(reference, kwargs, self._context_parameter, portable,
                                         timeout=self.timeout + 1)
            except Unportable as unportable:
                if unportable.lasting:
                    self._reference = None
        if self._context_parameter is not None:
            kwargs[self._context_parameter] = ctx
        return await run_in_process(self.name, self.function, kwargs)

    def reference(self) -> tuple[str, str] | None:
        """``(module, qualified name)`` by which a worker process imports this function."""
        if self._reference is False:
            self._reference = _importable(self.function)
            if self._reference is not None:
                pool().preload(self._reference[0])
        return self._reference  # type: ignore[return-value]

    def prepare(self) -> None:
        """Start a worker process ahead of the first call, if this tool will use one."""
        if not inspect.iscoroutinefunction(self.function) and self.reference() is not None:
            pool().warm()


@dataclasses.dataclass(frozen=True)
class Instant:
    """A clock stopped at one moment: the context's clock as a worker process sees it."""

    at: datetime

    def __call__(self) -> datetime:
        return self.at


def _portable_context(ctx: ToolContext) -> ToolContext:
    """The context without what cannot cross a process: async callables, a live clock."""
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(ctx):
        value = getattr(ctx, field.name)
        if field.name == "clock":
            changes["clock"] = Instant(value())
        elif callable(value):
            changes[field.name] = None
    return dataclasses.replace(ctx, **changes)


def _importable(function: Callable[..., Any]) -> tuple[str, str] | None:
    """The function's module and name, if importing them gives this function (or its tool)."""
    import sys

    module, qualname = function.__module__, function.__qualname__
    if module == "__main__" or "<" in qualname or module not in sys.modules:
        return None
    found: Any = sys.modules[module]
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is function or getattr(found, "function", None) is function:
        return module, qualname
    return None


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
