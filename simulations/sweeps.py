"""Sweeps and overrides: dotted paths into a scenario document, and the points they make.

``[sweep]`` maps a dotted path (``rooms.table.policy.mode``, ``agents.buyer.script``) to the
values to try; the sweep points are the cartesian product of those lists, each validated as a
scenario of its own. ``--set PATH=VALUE`` changes one path before anything is validated.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from typing import Any

from domain.errors import Invalid
from simulations.problems import Problems
from simulations.sections import ScenarioFile

LABEL_VALUE = 48
SWEEPABLE = tuple(sorted(set(ScenarioFile.model_fields) - {"sweep", "name", "repetitions"}))


def sweep_points(sweep: Any, report: Problems) -> list[dict[str, Any]]:
    """Every combination of the swept values, as {path: value}; one empty one without a sweep."""
    if not isinstance(sweep, dict):
        report.add(("sweep",), "sweep is a table of dotted paths to lists of values, e.g. "
                   "\"rooms.table.policy.mode\" = [\"free\", \"round_robin\"]")
        return []
    axes: list[tuple[str, list[Any]]] = []
    for path, values in sweep.items():
        top = path.split(".")[0]
        if top not in SWEEPABLE:
            report.add(("sweep", path), f"cannot sweep {path!r}: it must start with one of "
                       f"{', '.join(SWEEPABLE)}")
            continue
        if not isinstance(values, list) or not values:
            report.add(("sweep", path), "a sweep gives a non-empty list of values to try")
            continue
        axes.append((path, values))
    if not axes:
        return [{}]
    return [dict(zip([a for a, _ in axes], combo, strict=True))
            for combo in itertools.product(*(v for _, v in axes))]


def label(assignments: dict[str, Any]) -> str:
    """A sweep point's name: ``path=value, ...`` (long values cut short), or ``base``."""
    if not assignments:
        return "base"
    parts = []
    for path, value in assignments.items():
        shown = json.dumps(value, ensure_ascii=False)
        if len(shown) > LABEL_VALUE:
            shown = shown[:LABEL_VALUE - 1] + "\u2026"
        parts.append(f"{path}={shown}")
    return ", ".join(parts)


def assign(document: dict[str, Any], path: str, value: Any) -> None:
    """Set the dotted ``path`` of a parsed document (numbers index arrays)."""
    parts = path.split(".")
    target: Any = document
    for part in parts[:-1]:
        if isinstance(target, list):
            target = target[int(part)]
        else:
            target = target.setdefault(part, {})
    last = parts[-1]
    if isinstance(target, list):
        target[int(last)] = value
    elif isinstance(target, dict):
        target[last] = value
    else:
        raise TypeError(f"{'.'.join(parts[:-1])} is not a table")


def parse_assignment(text: str) -> tuple[str, Any]:
    """``agents.pro.chattiness=0.5`` -> (path, TOML value); a bare word is a string."""
    if "=" not in text:
        raise Invalid(f"--set {text!r}: write PATH=VALUE, e.g. stop.max_turns=20")
    path, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value
