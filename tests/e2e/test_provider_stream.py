"""An agent on an OpenAI-compatible endpoint, driven through the running Salon.

The endpoint is a local server speaking OpenAI's wire format (``tests/infra/llm/vendors.py``)
in this test's event loop; the agent actor calls it from its Ray worker process. The agent's
key is a secret reference (``api_key_env``), read in the worker from its environment: Ray
workers inherit the environment of the process that started Ray, so the variable is set
here, when pytest imports this module, before the session's Salon starts.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import ray

from domain.ids import agent_id
from salon.platform import Platform, Running
from tests.clients import Client
from tests.infra.llm.vendors import Fail, Reply, Vendors

KEY_VARIABLE = "SALON_TEST_PROVIDER_KEY"
os.environ.setdefault(KEY_VARIABLE, f"sk-e2e-{uuid.uuid4().hex}")
KEY = os.environ[KEY_VARIABLE]
REPLY = "Streams arrive in pieces, and the pieces make the whole."


@pytest.fixture
async def vendors() -> Any:
    server = await Vendors().start()
    yield server
    await server.stop()


def agent(name: str, vendors: Vendors, route: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "provider": "openai-compatible", "model": f"{route}-model",
            "base_url": vendors.openai_url(route), "api_key_env": KEY_VARIABLE, **more}


async def room_with(salon: Running, room: str, definition: dict[str, Any]) -> Client:
    client = await Client.open(salon.ws_url, salon.admin_token)
    await client.ok({"type": "create_room", "name": room, "topic": "providers"})
    await client.ok({"type": "create_agent", "definition": definition})
    await client.ok({"type": "add_agent", "room": room, "agent": definition["name"]})
    await client.ok({"type": "join", "room": room, "since": 0})
    return client


def said_by(client: Client, room: str, author: str) -> list[str]:
    return [m["text"] for m in client.messages(room) if m["author_id"] == author]


async def recorded(platform: Platform, name: str, kind: str) -> list[Any]:
    """The agent's events of ``kind`` (saved before the post or ephemeral that shows them)."""
    assert platform.store is not None
    events = await asyncio.to_thread(platform.store.events, agent_id(name))
    return [e for e in events if type(e).__name__ == kind]


async def test_an_openai_compatible_agent_streams_tokens_that_make_the_persisted_message(
        salon: Running, platform: Platform, name: str, vendors: Vendors) -> None:
    bot = f"{name}-bot"
    vendors.queue("local", Reply(text=REPLY, input_tokens=42, output_tokens=13))
    client = await room_with(salon, name, agent(bot, vendors, "local"))
    turn = await client.ok({"type": "invoke", "room": name, "agent": bot, "prompt": "stream?"})
    await client.wait_for(lambda c: said_by(c, name, bot), "the agent's reply")
    tokens = [e["delta"] for e in client.ephemerals
              if e["kind"] == "agent_token" and e["turn_id"] == turn["turn_id"]]
    assert len(tokens) == len(REPLY.split(" ")), "one delta per streamed chunk"
    assert "".join(tokens) == REPLY == said_by(client, name, bot)[0]
    history = await client.ok({"type": "history", "room": name, "limit": 100})
    persisted = [e for e in history["events"] if e["event"]["kind"] == "message_posted"
                 and e["event"]["author_id"] == bot]
    assert len(persisted) == 1, "the reply is persisted once"
    sent = vendors.requests("local")[0]
    assert sent.headers["authorization"] == f"Bearer {KEY}", "the worker read the secret"
    assert sent.body["stream"] is True and sent.body["model"] == "local-model"
    assert sent.body["messages"][-1]["content"] == "admin: stream?"
    called = (await recorded(platform, bot, "ModelCalled"))[0]
    assert (called.provider, called.model, called.fallback_from) == \
        ("openai-compatible", "local-model", None)
    assert (called.input_tokens, called.output_tokens) == (42, 13)
    assert called.output["text"] == REPLY and called.latency_ms > 0
    await client.close()


async def test_fallbacks_are_recorded_and_no_key_reaches_events_logs_or_errors(
        salon: Running, platform: Platform, name: str, vendors: Vendors) -> None:
    # Both failing routes echo the key back, as some vendors do in their error bodies.
    echo = {"error": {"message": f"upstream rejected key {KEY}"}}
    vendors.always["down"] = Fail(503, echo)
    vendors.always["refused"] = Fail(401, echo)
    vendors.queue("up", Reply(text="The backup answers."))
    steady = f"{name}-steady"
    client = await room_with(salon, name, agent(
        steady, vendors, "down", fallbacks=[f"openai-compatible:up-model@"
                                            f"{vendors.openai_url('up')}"]))
    await client.ok({"type": "invoke", "room": name, "agent": steady, "prompt": "hello"})
    await client.wait_for(lambda c: said_by(c, name, steady), "the backup's reply")
    called = (await recorded(platform, steady, "ModelCalled"))[0]
    assert called.model == "up-model" and called.fallback_from == "openai-compatible:down-model"
    assert len(vendors.requests("down")) == 3, "the primary was retried before falling back"

    doomed = f"{name}-doomed"
    definition = agent(doomed, vendors, "refused",
                       fallbacks=[f"openai-compatible:down-model@{vendors.openai_url('down')}"])
    await client.ok({"type": "create_agent", "definition": definition})
    await client.ok({"type": "add_agent", "room": name, "agent": doomed})
    await client.ok({"type": "invoke", "room": name, "agent": doomed, "prompt": "hello"})
    await client.wait_for(lambda c: any(e["kind"] == "turn_failed" and e["agent"] == doomed
                                        for e in c.ephemerals), "the doomed turn to fail")
    failed = (await recorded(platform, doomed, "TurnFailed"))[0]
    assert "every model of the chain failed" in failed.error
    assert "[redacted]" in failed.error, "the echoed key was there to be scrubbed"
    errors = [failed.error] + [str(e.get("error")) for e in client.ephemerals
                               if e["kind"] == "turn_failed"]

    states = await asyncio.to_thread(stored_states, salon, platform.store)
    assert any(b"The backup answers." in state for state in states), "the grep can find text"
    assert not [state for state in states if KEY.encode() in state], "a key in the event store"
    logs = ray_logs()
    assert any(b"falling back to openai-compatible:up-model" in path.read_bytes()
               for path in logs), "the grep reads the workers' logs"
    assert [path for path in logs if KEY.encode() in path.read_bytes()] == []
    assert [error for error in errors if KEY in error] == []
    await client.close()


def stored_states(salon: Running, store: Any) -> list[bytes]:
    """Every stored event and snapshot as bytes (the store's JSON, uncompressed), and every
    stream's events again as they read once opened (personal fields are sealed at rest)."""
    assert salon.settings.database_url
    states: list[bytes] = []
    with psycopg.connect(salon.settings.database_url) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE column_name = 'state' AND table_schema = 'public'").fetchall()
        for (table,) in tables:
            rows = connection.execute(f'SELECT state FROM "{table}"').fetchall()
            states += [bytes(row[0]) for row in rows]
        streams = connection.execute("SELECT DISTINCT originator_id FROM salon_events").fetchall()
    for (stream,) in streams:
        states += [record.state.encode() for record in store.records(stream)]
    return states


def ray_logs() -> list[Path]:
    """The log files of this session's Ray (workers, raylet, GCS)."""
    node = ray._private.worker._global_node
    assert node is not None, "Ray runs in this process"
    return [p for p in Path(node.get_logs_dir_path()).rglob("*") if p.is_file()]
