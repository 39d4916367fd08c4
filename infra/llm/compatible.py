"""OpenAI-compatible endpoints by ``base_url``, with named presets for the usual vendors.

An agent names a preset as its ``provider`` (``groq``, ``xai``, ``deepseek``, ``gemini``,
``together``, ``ollama``, ``vllm``), or ``openai-compatible`` with its own ``base_url`` for
any other server. An agent's ``base_url`` overrides the preset's (a proxy, a self-hosted
gateway) and its ``api_key_env`` names the variable of the key instead of the preset's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from domain.errors import Invalid
from infra.llm.openai import Endpoint, JsonMode

OLLAMA_DEFAULT_HOST = "http://127.0.0.1:11434"
VLLM_DEFAULT_URL = "http://127.0.0.1:8000/v1"


@dataclass(frozen=True)
class Preset:
    """A named OpenAI-compatible vendor or server kind."""

    name: str
    base_url: str | None
    key_variable: str | None
    key_required: bool = True
    stream_usage: bool = True
    json_mode: JsonMode = "object"
    note: str = ""


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    Preset("xai", "https://api.x.ai/v1", "XAI_API_KEY", json_mode="schema",
           note="Grok models"),
    Preset("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    Preset("gemini", "https://generativelanguage.googleapis.com/v1beta/openai/",
           "GEMINI_API_KEY", json_mode="schema", note="Gemini's OpenAI-compatible endpoint"),
    Preset("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    Preset("ollama", None, None, key_required=False,
           note="OLLAMA_HOST (default http://127.0.0.1:11434) + /v1"),
    Preset("vllm", VLLM_DEFAULT_URL, "VLLM_API_KEY", key_required=False,
           note="a `vllm serve` server; VLLM_API_KEY only if it was started with --api-key"),
    Preset("openai-compatible", None, None, key_required=False, json_mode="prompt",
           note="any other server: give base_url (and api_key_env if it needs a key)"),
]}


def ollama_url() -> str:
    """Ollama's OpenAI-compatible base URL from ``OLLAMA_HOST`` (host, host:port or URL)."""
    host = os.environ.get("OLLAMA_HOST", "").strip() or OLLAMA_DEFAULT_HOST
    if "://" not in host:
        host = f"http://{host}"
    if host.count(":") == 1:                   # scheme only: Ollama's default port
        host += ":11434"
    return host.rstrip("/") + "/v1"


def endpoint_for(provider: str, base_url: str | None = None,
                 key_variable: str | None = None) -> Endpoint:
    """The endpoint of preset ``provider``, with an agent's own base URL and key variable."""
    preset = PRESETS.get(provider)
    if preset is None:
        raise Invalid(f"unknown OpenAI-compatible preset {provider!r}; one of "
                      f"{', '.join(PRESETS)}")
    url = base_url or (ollama_url() if provider == "ollama" else preset.base_url)
    if url is None:
        raise Invalid(f"provider {provider!r} needs a base_url (the server's /v1 URL)")
    endpoint = Endpoint(provider=provider, base_url=url, key_variable=preset.key_variable,
                        key_required=preset.key_required, stream_usage=preset.stream_usage,
                        json_mode=preset.json_mode)
    if key_variable:
        # A named secret reference is meant to be used: a missing variable is an error.
        endpoint = replace(endpoint, key_variable=key_variable, key_required=True)
    return endpoint
