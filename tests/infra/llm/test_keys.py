"""API keys never reach error messages or logs, even when a vendor echoes them back."""

from __future__ import annotations

import logging
import pickle

import pytest

from domain.agents import AgentDefinition
from domain.errors import SalonError
from infra.llm import ChatMessage, ModelRequest
from infra.llm.keys import REDACTED, scrub
from infra.llm.registry import ProviderOptions, provider_for
from tests.infra.llm.vendors import Fail, Vendors

KEY = "sk-proj-SECRET-a1b2c3d4e5f6g7h8"


def ask() -> ModelRequest:
    return ModelRequest(model="gpt-4o-mini", messages=[ChatMessage(role="user", content="hi")])


async def test_a_key_echoed_by_the_vendor_is_scrubbed_from_errors_and_logs(
        vendors: Vendors, options: ProviderOptions, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MY_TEAM_KEY", KEY)
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "auth"}}
    vendors.queue("primary", Fail(401, echo))
    vendors.queue("backup", *[Fail(500, {"error": {"message": f"upstream saw {KEY}"}})] * 3)
    # The fallback is of the same provider, so it inherits the agent's key variable.
    agent = AgentDefinition(name="kee", provider="openai-compatible", model="m1",
                            base_url=vendors.openai_url("primary"), api_key_env="MY_TEAM_KEY",
                            fallbacks=[f"openai-compatible:m2@{vendors.openai_url('backup')}"])
    errors: list[BaseException] = []
    for stream in (False, True):
        try:
            provider = provider_for(agent, options)
            if stream:
                async for _ in provider.stream(ask()):
                    pass
            else:
                await provider.complete(ask())
        except SalonError as error:
            errors.append(error)
        vendors.queue("primary", Fail(401, echo))
        vendors.queue("backup", *[Fail(500, {"error": {"message": f"upstream saw {KEY}"}})] * 3)
    assert len(errors) == 2
    assert all(s.headers["authorization"] == f"Bearer {KEY}" for s in vendors.seen)
    texts = [caplog.text]
    for error in errors:
        texts += [str(error), repr(error), error.message,  # type: ignore[attr-defined]
                  str(pickle.loads(pickle.dumps(error)))]
        assert REDACTED in str(error), "the echoed key was there to be scrubbed"
    for text in texts:
        assert KEY not in text


def test_tracebacks_in_logs_are_scrubbed(monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.INFO)
    assert scrub(f"key={KEY}") == f"key={REDACTED}"
    try:
        raise RuntimeError(f"request with {KEY} failed")
    except RuntimeError:
        logging.getLogger("anything.at.all").exception("call failed for %s", KEY)
    assert "call failed for [redacted]" in caplog.text
    assert KEY not in caplog.text
    assert KEY not in "".join(r.exc_text or "" for r in caplog.records)
