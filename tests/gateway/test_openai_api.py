"""The OpenAI-compatible API with the real ``openai`` SDK against the running gateway."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import openai
import pytest

from salon.platform import Running
from tests.clients import Client


def sdk(salon: Running, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=salon.http_url + "v1", api_key=token, max_retries=0)


def setup(salon: Running, name: str, joinable: bool = True) -> tuple[str, str]:
    """An agent (``joinable`` or not) owned by the admin, and a member's token."""
    async def run() -> tuple[str, str]:
        admin = await Client.open(salon.ws_url, salon.admin_token)
        agent = f"{name}-ada"
        await admin.ok({"type": "create_agent", "definition": {
            "name": agent, "script": ["hello from ada"], "joinable": joinable}})
        token = (await admin.ok({"type": "create_token", "user": f"{name}-bea"}))["token"]
        await admin.ws.close()
        return agent, token
    return asyncio.run(run())


def history(salon: Running, room: str) -> list[dict]:
    async def run() -> list[dict]:
        admin = await Client.open(salon.ws_url, salon.admin_token)
        found = await admin.ok({"type": "history", "room": room, "limit": 100})
        await admin.ws.close()
        return [f["event"] for f in found["events"]]
    return asyncio.run(run())


def test_models_lists_only_agents_the_caller_may_use(salon: Running, name: str) -> None:
    agent, token = setup(salon, name)
    private, _ = setup(salon, f"{name}-p", joinable=False)
    listed = {m.id: m for m in sdk(salon, token).models.list().data}
    assert agent in listed and listed[agent].owned_by == "admin"
    assert private not in listed
    assert private in {m.id for m in sdk(salon, salon.admin_token).models.list().data}


def test_a_completion_is_the_agents_reply_and_lands_in_the_room(salon: Running,
                                                               name: str) -> None:
    agent, token = setup(salon, name)
    raw = sdk(salon, token).chat.completions.with_raw_response.create(
        model=agent, messages=[{"role": "system", "content": "be brief"},
                               {"role": "user", "content": "hi ada"}])
    room = raw.headers["X-Salon-Room"]
    answer = raw.parse()
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.content == "hello from ada"
    assert answer.usage is not None and answer.usage.total_tokens == \
        answer.usage.prompt_tokens + answer.usage.completion_tokens
    said = [(e["author_id"], e["text"]) for e in history(salon, room)
            if e["kind"] == "message_posted"]
    assert (f"{name}-bea", "hi ada") in said and (agent, "hello from ada") in said


def test_streaming_yields_chunks_then_done(salon: Running, name: str) -> None:
    agent, token = setup(salon, name)
    room = f"{name}-chat"
    chunks = list(sdk(salon, token).chat.completions.create(
        model=agent, messages=[{"role": "user", "content": "stream please"}], stream=True,
        extra_headers={"X-Salon-Room": room}))
    assert chunks and all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello from ada"
    assert any(e.get("text") == "stream please" for e in history(salon, room))


def test_the_user_field_names_the_room_and_the_conversation_goes_on(salon: Running,
                                                                     name: str) -> None:
    agent, token = setup(salon, name)
    client, room = sdk(salon, token), f"{name}-thread"
    for text in ("first", "second"):
        raw = client.chat.completions.with_raw_response.create(
            model=agent, user=room, messages=[{"role": "user", "content": text}])
        assert raw.headers["X-Salon-Room"] == room
        assert raw.parse().choices[0].message.content == "hello from ada"
    said = [e["text"] for e in history(salon, room)
            if e["kind"] == "message_posted" and e["author_id"] == f"{name}-bea"]
    assert said == ["first", "second"]


def test_errors_come_in_openais_shape(salon: Running, name: str) -> None:
    agent, token = setup(salon, name)
    private, _ = setup(salon, f"{name}-p", joinable=False)
    hi = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.AuthenticationError):
        sdk(salon, "nobody.secret").models.list()
    with pytest.raises(openai.PermissionDeniedError):
        sdk(salon, token).chat.completions.create(model=private, messages=hi)
    with pytest.raises(openai.NotFoundError):
        sdk(salon, token).chat.completions.create(model=f"{name}-nobody", messages=hi)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(salon, token).chat.completions.create(model=agent, messages=hi, tools=[{
            "type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    assert "tools" in str(refused.value)


def test_an_oversized_body_is_refused(salon: Running, name: str) -> None:
    agent, token = setup(salon, name)
    body = json.dumps({"model": agent, "messages": [
        {"role": "user", "content": "x" * (2 * 1024 * 1024)}]}).encode()
    request = urllib.request.Request(salon.http_url + "v1/chat/completions", data=body,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert "error" in json.loads(refused.value.read())
