"""The tools a Salon offers, by name."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from domain.errors import Conflict, Invalid, NotFound
from tools.base import Tool


class ToolRegistry:
    """Tools by name; hands out their specs for a model and the tools themselves to run."""

    def __init__(self, tools: Iterable[Tool[Any]] = ()) -> None:
        self._tools: dict[str, Tool[Any]] = {}
        for item in tools:
            self.register(item)

    def register(self, item: Tool[Any] | type[Tool[Any]], *, replace: bool = False) -> Tool[Any]:
        """Add a tool (an instance, a ``Tool`` subclass without arguments, or an ``@tool``)."""
        if isinstance(item, type):
            if not issubclass(item, Tool):
                raise Invalid(f"{item.__name__} is not a Tool; subclass tools.Tool or use @tool")
            item = item()
        if not isinstance(item, Tool):
            raise Invalid(f"{item!r} is not a tool; decorate the function with @tool first")
        item.check_declaration()
        if item.name in self._tools and not replace and self._tools[item.name] is not item:
            raise Conflict(f"a tool named {item.name!r} is already registered; pick another name "
                           "or register with replace=True")
        self._tools[item.name] = item
        return item

    def get(self, name: str) -> Tool[Any]:
        """The tool called ``name``, or ``NotFound`` naming the tools there are."""
        try:
            return self._tools[name]
        except KeyError:
            raise NotFound(f"there is no tool named {name!r}; registered tools: "
                           f"{', '.join(self.names()) or 'none'}") from None

    def names(self) -> list[str]:
        """Registered tool names, sorted."""
        return sorted(self._tools)

    def specs(self, names: Iterable[str] | None = None,
              permissions: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """``{"name", "description", "parameters"}`` for each tool a model may be offered.

        ``names`` restricts to an allow list (unknown names are skipped); ``permissions``, when
        given, leaves out tools needing a permission not granted.
        """
        chosen = self.names() if names is None else [n for n in dict.fromkeys(names)
                                                     if n in self._tools]
        granted = None if permissions is None else frozenset(permissions)
        return [self._tools[n].spec() for n in chosen
                if granted is None or self._tools[n].permissions <= granted]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool[Any]]:
        return iter(self._tools[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._tools)
