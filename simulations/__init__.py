"""Multi-agent simulations over ordinary rooms: scenario files, a runner on Ray, reports.

A researcher writes a scenario (TOML: agents, scripted people, rooms and their turn-taking,
stop conditions, seed, repetitions, sweeps), runs it with ``salon simulate FILE`` and reads
the HTML report. Every run's rooms and agents are ordinary ones in the event store, so
replay, fork, re-run and audit work on them. See ``simulations/README.md``.

- ``scenarios`` (with ``sections``, ``problems``, ``sweeps``, ``locations``): the file
  format, validation with file/line/field errors, sweeps and overrides;
- ``runner``, ``driver``, ``clock``, ``naming``: runs on the live room and agent actors, in
  virtual time, many at once; ``memories``: waiting for the memory projection, and what
  agents hold in memory at the end;
- ``metrics``, ``measures``: what a run is measured by; ``reports``, ``plots``: the report;
- ``cli``: the ``salon simulate`` commands; ``crowds``: scenarios of any size, in code;
- ``scenarios/``: the bundled scenarios.
"""

from simulations.scenarios import Scenario, bundled, load_scenario, parse_scenario

__all__ = ["Scenario", "bundled", "load_scenario", "parse_scenario"]
