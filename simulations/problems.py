"""Problems found in a scenario file, said the way people fix them: file, line, field, problem.

``Problems`` collects (path, problem) pairs while a file is checked and raises them all at
once, in line order, as one ``Invalid``; ``describe`` turns a pydantic error into plain words.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from domain.errors import Invalid
from simulations.locations import Path as KeyPath
from simulations.locations import dotted, line_of


class Problems:
    """Collects errors as (path, problem); renders them with file and line."""

    def __init__(self, source: str, lines: dict[KeyPath, int],
                 swept: dict[str, Any] | None = None, label: str = "") -> None:
        self.source = source
        self.lines = lines
        self.swept = swept or {}
        self.label = label
        self.items: list[tuple[int, str]] = []

    def add(self, path: KeyPath, problem: str) -> None:
        """Note a problem at ``path`` (a swept path is blamed on its line in ``[sweep]``)."""
        where = dotted(path)
        line = None
        via = ""
        for swept in self.swept:
            if where == swept or where.startswith(swept + ".") or where.startswith(swept + "["):
                line = self.lines.get(("sweep", swept))
                via = f" (with sweep {self.label})"
        if line is None:
            line = line_of(self.lines, path)
        position = f"{short(self.source)}:{line}" if line else short(self.source)
        item = (line or 0, f"{position}: {where or 'the file'}: {problem}{via}")
        if item not in self.items:
            self.items.append(item)

    def extend(self, other: Problems) -> None:
        """Take over another collector's problems (those of one sweep point)."""
        for item in other.items:
            if item not in self.items:
                self.items.append(item)

    def pydantic(self, error: ValidationError, prefix: KeyPath = (),
                 model: type[BaseModel] | None = None) -> None:
        """Note every error of a pydantic validation, below ``prefix``."""
        for item in error.errors(include_url=False):
            loc = tuple(part for part in item["loc"] if part not in ("[key]",))
            self.add(prefix + loc, describe(item, model, loc))

    def raise_if_any(self) -> None:
        """Raise Invalid listing every problem, in line order, if there is any."""
        if self.items:
            count = len(self.items)
            header = f"scenario {short(self.source)} has {count} problem" + \
                ("s" if count > 1 else "") + ":"
            ordered = [text for _, text in sorted(self.items, key=lambda item: item[0])]
            raise Invalid("\n".join([header, *(f"  {item}" for item in ordered),
                                     "Fix them, then check again with `salon simulate check "
                                     "FILE`."]))


def describe(item: Mapping[str, Any], model: type[BaseModel] | None, loc: tuple[Any, ...]
             ) -> str:
    """One pydantic error in plain words (unknown fields list the fields there are)."""
    kind = item.get("type", "")
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1]) if model is not None else []
        hint = f"; the fields here are: {', '.join(allowed)}" if allowed else ""
        return f"unknown field {loc[-1]!r}{hint}"
    if kind == "missing":
        return f"missing required field {loc[-1]!r}" if loc else "missing a required field"
    message = str(item.get("msg", "is not valid"))
    message = message.removeprefix("Value error, ")
    message = message[0].lower() + message[1:] if message else message
    if "input" in item and kind not in ("model_type", "dict_type") and \
            not isinstance(item["input"], (dict, list)):
        message += f" (got {_shown(item['input'])})"
    return message


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by following ``loc`` from ``model`` (best effort)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = info.annotation
        elif typing.get_origin(current) in (dict, list):
            args = typing.get_args(current)
            current = args[-1] if args else None
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = options[0] if len(options) == 1 else annotation
            if len(options) != 1:
                return annotation
        else:
            return annotation


def short(source: str) -> str:
    """A file's path as a person typed it: relative to here when it is below here."""
    path = Path(source)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return source


def toml_position(error: tomllib.TOMLDecodeError, text: str) -> str:
    """``line:column`` of a TOML syntax error."""
    line = getattr(error, "lineno", None)
    column = getattr(error, "colno", None)
    if line is None:
        found = re.search(r"at line (\d+), column (\d+)", str(error))
        if found:
            line, column = int(found.group(1)), int(found.group(2))
        elif "end of document" in str(error):
            lines = text.splitlines() or [""]
            line, column = len(lines), len(lines[-1]) + 1
    return f"{line}:{column}" if line else "1"


def toml_problem(error: tomllib.TOMLDecodeError) -> str:
    """What ``tomllib`` found wrong, without its own position (we give it in front)."""
    message = getattr(error, "msg", None) or str(error)
    return re.sub(r"\s*\(at line \d+, column \d+\)", "", str(message))
