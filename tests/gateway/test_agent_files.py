"""Agents defined from files through the CLI, against the running Salon: any field of the
definition, scripted steps written as JSON arrays of objects, and redefinition."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from domain.definitions import AgentDefinition
from salon.cli import main
from salon.platform import Running
from tests.clients import Client


def test_a_scripted_turn_may_be_a_json_array_of_objects() -> None:
    step = json.dumps([{"tool": "calculator", "arguments": {"expression": "2+2"}},
                       "it is {result}"])
    spec = AgentDefinition.model_validate({"name": "counter", "script": [step]})
    assert spec.script == [step]


async def test_an_agent_is_created_and_redefined_from_toml_files(
        salon: Running, name: str, tmp_path: Path) -> None:
    agent, room = f"{name}-filed", f"{name}-room"
    admin = await Client.open(salon.ws_url, salon.admin_token)
    await admin.ok({"type": "create_room", "name": room})
    step = json.dumps([{"tool": "calculator", "arguments": {"expression": "6*7"}},
                       "the answer is {result}"])
    first = tmp_path / "agent.toml"
    first.write_text(f'''name = "{agent}"
persona = "a careful counter"
interests = ["numbers", "sums"]
tools = ["calculator"]
script = [{json.dumps(step)}]

[memory]
context = "last_n"
''')
    env = {"SALON_URL": salon.ws_url, "SALON_TOKEN": salon.admin_token}
    runner = CliRunner()
    created = await asyncio.to_thread(runner.invoke, main, [
        "agents", "create", "--file", str(first), "--room", room], env=env)
    assert created.exit_code == 0, created.output
    shown = await admin.ok({"type": "show_agent", "agent": agent})
    definition = shown["definition"]
    assert definition["persona"] == "a careful counter"
    assert definition["interests"] == ["numbers", "sums"]
    assert definition["memory"]["context"] == "last_n"

    await admin.ok({"type": "join", "room": room, "since": 0})
    await admin.ok({"type": "say", "room": room, "text": f"@{agent} what is six times seven?"})
    await admin.wait_for(lambda c: any(
        f["room"] == room and f["event"]["kind"] == "message_posted" and
        f["event"]["author_id"] == agent for f in c.events), "the agent's reply")
    reply = [f["event"]["text"] for f in admin.events if f["room"] == room and
             f["event"].get("author_id") == agent]
    assert reply == ["the answer is 42"], reply

    second = tmp_path / "agent-v2.toml"
    second.write_text(f'name = "{agent}"\npersona = "a faster counter"\n'
                      'script = ["quick: {text}"]\n')
    redefined = await asyncio.to_thread(runner.invoke, main, [
        "agents", "redefine", str(second)], env=env)
    assert redefined.exit_code == 0 and f"redefined agent {agent}" in redefined.output, \
        redefined.output
    again = await admin.ok({"type": "show_agent", "agent": agent})
    assert again["definition"]["persona"] == "a faster counter"

    flagged = f"{name}-flagged"
    made = await asyncio.to_thread(runner.invoke, main, [
        "agents", "create", flagged, "--cooldown", "5", "--idle-after", "60",
        "--set", "memory.context=first_last", "--set", "memory.recall=2",
        "--set", "personality.tone=dry", "--set", "personality.humour=0.9"], env=env)
    assert made.exit_code == 0, made.output
    held = (await admin.ok({"type": "show_agent", "agent": flagged}))["definition"]
    assert (held["cooldown_seconds"], held["idle_after_seconds"]) == (5.0, 60.0)
    assert (held["memory"]["context"], held["memory"]["recall"]) == ("first_last", 2)
    assert (held["personality"]["tone"], held["personality"]["humour"]) == ("dry", 0.9)
    wrong = await asyncio.to_thread(runner.invoke, main, [
        "agents", "create", f"{name}-wrong", "--set", "memory.recall=lots"], env=env)
    assert wrong.exit_code == 2 and "recall" in wrong.output, wrong.output
    await admin.close()
