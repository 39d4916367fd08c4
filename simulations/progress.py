"""How far a simulation got, and a text progress bar for people watching a terminal."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Protocol, TextIO

BAR_WIDTH = 28
REDRAW_SECONDS = 0.2


@dataclass
class Tally:
    """Counts the runner keeps up to date while it runs."""

    runs_total: int = 0
    runs_done: int = 0
    runs_failed: int = 0
    rooms_total: int = 0
    rooms_done: int = 0
    agent_turns: int = 0
    # Known when every room has a turn limit: then the bar follows the turns.
    turns_expected: int | None = None
    started: float = 0.0

    def fraction(self) -> float:
        """How much is done, 0..1."""
        by_rooms = self.rooms_done / self.rooms_total if self.rooms_total else 0.0
        if self.turns_expected:
            # Rooms may stop early (keyword, consensus): never show less than the rooms done.
            return max(min(1.0, self.agent_turns / self.turns_expected), by_rooms)
        return by_rooms


class Progress(Protocol):
    """Told about every change of the tally (often: keep it cheap)."""

    def update(self, tally: Tally) -> None:
        """The tally changed."""
        ...

    def close(self, tally: Tally) -> None:
        """The simulation is over."""
        ...


class Silent:
    """Shows nothing (tests, programs)."""

    def update(self, tally: Tally) -> None:
        """Ignore the change."""

    def close(self, tally: Tally) -> None:
        """Nothing to finish."""


class TextProgress:
    """A one-line bar on stderr, redrawn at most five times a second."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.last = 0.0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, tally: Tally) -> None:
        """Redraw if enough time passed (or on a plain stream, every ten percent)."""
        now = time.monotonic()
        if now - self.last < (REDRAW_SECONDS if self.tty else 5.0):
            return
        self.last = now
        self._draw(tally, end="\r" if self.tty else "\n")

    def close(self, tally: Tally) -> None:
        """Draw the final state and end the line."""
        self._draw(tally, end="\n")

    def _draw(self, tally: Tally, end: str) -> None:
        fraction = tally.fraction()
        filled = int(round(fraction * BAR_WIDTH))
        elapsed = max(time.monotonic() - tally.started, 1e-9) if tally.started else 0.0
        rate = tally.agent_turns / elapsed if elapsed else 0.0
        failed = f", {tally.runs_failed} failed" if tally.runs_failed else ""
        line = (f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
                f"{fraction * 100:3.0f}%  runs {tally.runs_done}/{tally.runs_total}{failed}  "
                f"rooms {tally.rooms_done}/{tally.rooms_total}  turns {tally.agent_turns}  "
                f"{rate:.1f} turns/s")
        self.stream.write(line + end)
        self.stream.flush()
