"""Scenario files: bundled ones are valid and offline; bad ones say file, line, field, problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import Invalid
from simulations.locations import key_lines, line_of
from simulations.scenarios import bundled, load_scenario, parse_scenario
from simulations.sweeps import parse_assignment

GOOD = """\
name = "tiny"
seed = 4

[agents.ada]
script = ["hello"]

[agents.bo]
script = ["hi"]

[rooms.hall]
agents = ["ada", "bo"]
turn_seconds = 30

[stop]
max_turns = 4
"""


def problems(tmp_path: Path, text: str, name: str = "scenario.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(Invalid) as raised:
        load_scenario(path)
    return raised.value.message


def line_number(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_every_bundled_scenario_is_valid_and_runs_offline() -> None:
    found = bundled()
    assert {"debate", "support", "village", "negotiation"} <= set(found)
    for name, path in found.items():
        scenario = load_scenario(path)
        for variant in scenario.variants:
            providers = {a.definition.provider for a in variant.plan.agents.values()}
            assert providers == {"scripted"}, f"{name} needs a network: {providers}"
    village = load_scenario("village")
    assert all(a.memory.reflection and a.memory.recall for a in village.plan.agents.values())


def test_an_unknown_field_names_the_file_line_and_field(tmp_path: Path) -> None:
    text = GOOD.replace('script = ["hi"]', 'script = ["hi"]\ncolour = "red"')
    message = problems(tmp_path, text, "colours.toml")
    assert f"colours.toml:{line_number(text, 'colour')}: agents.bo.colour: unknown field " \
        "'colour'" in message
    assert "chattiness" in message  # it lists the fields an agent has


def test_an_unknown_field_in_a_section_lists_that_sections_fields(tmp_path: Path) -> None:
    text = GOOD.replace("max_turns = 4", "max_turns = 4\nmax_turn = 9")
    message = problems(tmp_path, text)
    assert f":{line_number(text, 'max_turn =')}: stop.max_turn: unknown field 'max_turn'; " \
        "the fields here are: max_turns, max_seconds, keywords, consensus" in message


def test_a_wrong_type_names_the_field_and_the_value(tmp_path: Path) -> None:
    text = GOOD.replace("turn_seconds = 30", 'turn_seconds = "fast"')
    message = problems(tmp_path, text)
    assert f"scenario.toml:{line_number(text, 'turn_seconds')}: rooms.hall.turn_seconds: " \
        "input should be a valid number" in message
    assert "(got 'fast')" in message


def test_an_out_of_range_value_in_an_inline_table_points_at_its_line(tmp_path: Path) -> None:
    text = GOOD + '\n[humans.cy]\nmessages = [\n  { at = 5, text = "hi" },\n' \
        '  { at = -1, text = "again" },\n]\n'
    message = problems(tmp_path, text)
    assert f":{line_number(text, 'at = -1')}: humans.cy.messages[1].at: input should be " \
        "greater than or equal to 0 (got -1)" in message


def test_a_missing_agent_names_the_room_entry(tmp_path: Path) -> None:
    text = GOOD.replace('agents = ["ada", "bo"]', 'agents = ["ada", "bo", "carol"]')
    message = problems(tmp_path, text)
    assert f"scenario.toml:{line_number(text, 'carol')}: rooms.hall.agents[2]: there is no " \
        "agent 'carol'; define it as [agents.carol]" in message


def test_a_missing_agent_is_named_even_when_other_fields_are_broken(tmp_path: Path) -> None:
    text = GOOD.replace('agents = ["ada", "bo"]', 'agents = ["ada", "zed"]').replace(
        "seed = 4", 'seed = "four"')
    message = problems(tmp_path, text)
    assert "seed: input should be a valid integer" in message
    assert "rooms.hall.agents[1]: there is no agent 'zed'" in message


def test_bad_toml_names_the_line_and_column(tmp_path: Path) -> None:
    text = GOOD.replace("seed = 4", "seed = = 4")
    message = problems(tmp_path, text, "broken.toml")
    assert f"broken.toml:{line_number(text, 'seed')}:8: not valid TOML: Invalid value" \
        in message


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    text = GOOD.replace('script = ["hello"]', 'script = ["hello"]\nchattiness = 3').replace(
        "max_turns = 4", "max_turns = 0")
    message = problems(tmp_path, text)
    assert message.splitlines()[0].endswith("has 2 problems:")
    first, second = message.splitlines()[1:3]
    assert "agents.ada.chattiness" in first and "stop.max_turns" in second


def test_a_field_from_defaults_is_blamed_on_defaults(tmp_path: Path) -> None:
    text = GOOD.replace('name = "tiny"', 'name = "tiny"\n[defaults]\nchattiness = 7\n', 1)
    message = problems(tmp_path, text)
    assert f":{line_number(text, 'chattiness')}: defaults.chattiness:" in message
    assert "from [defaults]" in message


def test_references_and_endless_rooms_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace("max_turns = 4", "keywords = ['bye']").replace(
        "[rooms.hall]", "[rooms.hall]\npolicy = { mode = 'selector' }")
    message = problems(tmp_path, text)
    assert "rooms.hall.policy.selector: selector mode needs a selector" in message
    assert "rooms.hall: this room could run forever (turn_seconds is set)" in message


def test_a_timed_agent_may_be_in_one_room_only(tmp_path: Path) -> None:
    text = GOOD.replace('script = ["hello"]', 'script = ["hello"]\nidle_after_seconds = 60') \
        + '\n[rooms.porch]\nagents = ["ada"]\n'
    message = problems(tmp_path, text)
    assert "agents.ada: agent 'ada' speaks on a timer and is in rooms hall, porch" in message


def test_a_sweep_makes_the_cartesian_product_of_its_values() -> None:
    scenario = parse_scenario(GOOD + '\n[sweep]\n"stop.max_turns" = [2, 6]\n'
                              '"rooms.hall.policy.mode" = ["free", "round_robin"]\n')
    points = [(v.plan.stop.max_turns, v.plan.rooms["hall"].policy.mode)
              for v in scenario.variants]
    assert points == [(2, "free"), (2, "round_robin"), (6, "free"), (6, "round_robin")]
    assert scenario.variants[1].label == 'stop.max_turns=2, rooms.hall.policy.mode="round_robin"'


def test_a_bad_sweep_value_points_at_the_sweep(tmp_path: Path) -> None:
    text = GOOD + '\n[sweep]\n"agents.ada.chattiness" = [0.5, 2]\n'
    message = problems(tmp_path, text)
    assert f":{line_number(text, 'agents.ada.chattiness')}: agents.ada.chattiness: input " \
        "should be less than or equal to 1 (got 2) (with sweep agents.ada.chattiness=2)" in message


def test_overrides_change_the_document_before_validation() -> None:
    path, value = parse_assignment("stop.max_turns=9")
    scenario = parse_scenario(GOOD, overrides={path: value, "agents.bo.chattiness": 0.5})
    assert scenario.plan.stop.max_turns == 9
    assert scenario.plan.agents["bo"].definition.chattiness == 0.5
    assert parse_assignment("rooms.hall.policy.mode=free") == ("rooms.hall.policy.mode", "free")


def test_memory_is_validated_even_where_agents_cannot_use_it_yet(tmp_path: Path) -> None:
    text = GOOD.replace('script = ["hello"]', 'script = ["hello"]\nmemory = { recal = 3 }')
    message = problems(tmp_path, text)
    assert f":{line_number(text, 'recal')}: agents.ada.memory.recal: unknown field" in message


def test_the_locator_finds_keys_in_every_toml_form() -> None:
    text = """\
name = "x"  # a comment
[a.'b.c']
d = 1
e = { f = 2, g = [3, 4] }
h = [
  { i = 5 },
  { i = '''multi
line''' },
  "x",
]
[[j]]
k = 1
[[j]]
k = 2
"""
    lines = key_lines(text)
    assert lines[("name",)] == 1
    assert lines[("a", "b.c", "d")] == 3
    assert lines[("a", "b.c", "e", "g", 1)] == 4
    assert lines[("a", "b.c", "h", 1, "i")] == 7
    assert lines[("a", "b.c", "h", 2)] == 9
    assert lines[("j", 1, "k")] == 14
    assert line_of(lines, ("a", "b.c", "h", 0, "nope")) == 6
