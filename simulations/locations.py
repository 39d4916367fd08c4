"""Where each key and array element of a TOML document is written: line numbers for errors.

``tomllib`` gives values, not positions. Validation errors name a field by its path
(``rooms.stage.policy.mode``, ``humans.customer.messages[2].at``); this module scans the text
once and maps every path it can see — table headers, ``[[arrays of tables]]``, keys (dotted
or quoted), inline tables and array elements — to the line it starts on, so an error can say
``debate.toml:14``. It is only run on text ``tomllib`` already accepted.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]
_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'[^']*'"
_KEY = re.compile(rf"((?:{_BARE}|{_QUOTED})(?:[ \t]*\.[ \t]*(?:{_BARE}|{_QUOTED}))*)[ \t]*=")
_PART = re.compile(rf"{_BARE}|{_QUOTED}")


def split_keys(dotted: str) -> tuple[str, ...]:
    """``a."b.c".d`` -> ``("a", "b.c", "d")``."""
    parts: list[str] = []
    for match in _PART.finditer(dotted):
        part = match.group(0)
        if part[0] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


class _Scanner:
    """A small recursive-descent walk over TOML text that records where paths begin."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.found: dict[Path, int] = {}

    def record(self, path: Path) -> None:
        self.found.setdefault(path, self.line)

    def advance(self, count: int = 1) -> None:
        end = min(self.i + count, len(self.text))
        self.line += self.text.count("\n", self.i, end)
        self.i = end

    def skip_blank(self, newlines: bool) -> None:
        text = self.text
        while self.i < len(text):
            c = text[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.advance()
            elif c == "#":
                end = text.find("\n", self.i)
                self.advance((end if end >= 0 else len(text)) - self.i)
            else:
                return

    def skip_line(self) -> None:
        end = self.text.find("\n", self.i)
        self.advance((end if end >= 0 else len(self.text)) - self.i)

    def document(self) -> dict[Path, int]:
        table: Path = ()
        counts: dict[Path, int] = {}
        text = self.text
        while self.i < len(text):
            self.skip_blank(newlines=True)
            if self.i >= len(text):
                break
            if text.startswith("[[", self.i):
                end = text.find("]]", self.i)
                keys = split_keys(text[self.i + 2:end])
                index = counts.get(keys, 0)
                counts[keys] = index + 1
                self.record(keys)
                table = keys + (index,)
                self.record(table)
                self.skip_line()
            elif text[self.i] == "[":
                end = text.find("]", self.i)
                table = split_keys(text[self.i + 1:end])
                self.record(table)
                self.skip_line()
            else:
                match = _KEY.match(text, self.i)
                if match is None:
                    self.skip_line()
                    continue
                path = table + split_keys(match.group(1))
                self.record(path)
                self.advance(match.end() - self.i)
                self.value(path)
        return self.found

    def value(self, path: Path) -> None:
        self.skip_blank(newlines=False)
        text = self.text
        if self.i >= len(text):
            return
        c = text[self.i]
        if c in "\"'":
            self.string()
        elif c == "[":
            self.array(path)
        elif c == "{":
            self.inline_table(path)
        else:
            while self.i < len(text) and text[self.i] not in ",]}\n#":
                self.advance()

    def string(self) -> None:
        text = self.text
        quote = text[self.i]
        if text.startswith(quote * 3, self.i):
            end = text.find(quote * 3, self.i + 3)
            while quote == '"' and end > 0 and _escaped(text, end):
                end = text.find(quote * 3, end + 1)
            end = end + 3 if end >= 0 else len(text)
            while end < len(text) and text[end] == quote:  # up to two quotes end the content
                end += 1
            self.advance(end - self.i)
            return
        j = self.i + 1
        while j < len(text) and text[j] != quote and text[j] != "\n":
            j += 2 if quote == '"' and text[j] == "\\" else 1
        self.advance(j + 1 - self.i)

    def array(self, path: Path) -> None:
        self.advance()
        index = 0
        while self.i < len(self.text):
            self.skip_blank(newlines=True)
            if self.i >= len(self.text) or self.text[self.i] == "]":
                self.advance()
                return
            if self.text[self.i] == ",":
                index += 1
                self.advance()
                continue
            self.record(path + (index,))
            self.value(path + (index,))

    def inline_table(self, path: Path) -> None:
        self.advance()
        while self.i < len(self.text):
            self.skip_blank(newlines=True)
            if self.i >= len(self.text) or self.text[self.i] == "}":
                self.advance()
                return
            if self.text[self.i] == ",":
                self.advance()
                continue
            match = _KEY.match(self.text, self.i)
            if match is None:
                self.advance()
                continue
            inner = path + split_keys(match.group(1))
            self.record(inner)
            self.advance(match.end() - self.i)
            self.value(inner)


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and text[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def key_lines(text: str) -> dict[Path, int]:
    """Every path the text spells out, mapped to the line (1-based) where it is written."""
    return _Scanner(text).document()


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of ``path``, or of its nearest written ancestor; None if nothing matches."""
    for end in range(len(path), 0, -1):
        found = lines.get(tuple(path[:end]))
        if found is not None:
            return found
    return None


def dotted(path: Path) -> str:
    """``("humans", "c", "messages", 2, "at")`` -> ``humans.c.messages[2].at``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
