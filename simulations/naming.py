"""Names of a run's rooms and agents in the installation, and the way back.

Every run gets an id (``debate-3fa2c1-2``: the scenario's name, a random part, the run's
number) and names its rooms and agents ``{run}-{name}``, so runs never collide and
``salon rooms list`` shows which run a room belongs to. Texts the scenario writes (human
messages, scripts, opening lines) address agents by their scenario names; they are rewritten
to the installation's names before they are posted or defined, so mentions and names reach
the right agents, and transcripts are read back with the prefix removed, so runs compare.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

SLUG_LENGTH = 10


def simulation_id(scenario: str) -> str:
    """A fresh id for one ``salon simulate`` invocation: ``{scenario slug}-{6 hex}``."""
    slug = re.sub(r"[^a-z0-9]+", "-", scenario.lower()).strip("-")[:SLUG_LENGTH].strip("-")
    return f"{slug or 'sim'}-{uuid.uuid4().hex[:6]}"


def run_id(simulation: str, number: int) -> str:
    """The id of the ``number``-th run (1-based) of a simulation."""
    return f"{simulation}-{number}"


class Naming:
    """Scenario names <-> installation names for one run."""

    def __init__(self, run: str, agents: Iterable[str]) -> None:
        self.run = run
        self.prefix = f"{run}-"
        names = sorted(set(agents), key=len, reverse=True)
        self._agents = re.compile(
            r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w-])",
            re.IGNORECASE) if names else None

    def room(self, name: str) -> str:
        """The installation's name of scenario room ``name``."""
        return self.prefix + name

    def agent(self, name: str) -> str:
        """The installation's name of scenario agent ``name``."""
        return self.prefix + name

    def rewrite(self, text: str) -> str:
        """Scenario text with every agent name (as a word or an @mention) made the run's."""
        if self._agents is None:
            return text
        return self._agents.sub(lambda m: self.prefix + m.group(1), text)

    def plain(self, text: str) -> str:
        """Installation text with the run's prefix taken out again."""
        return text.replace(self.prefix, "")
