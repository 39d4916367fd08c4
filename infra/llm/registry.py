"""Which provider serves an agent's definition: its model, then its fallbacks, each guarded.

``provider_for(definition)`` is what the agent actor calls. A definition names its primary
``provider`` and ``model`` and may list ``fallbacks`` as ``"provider:model"`` (optionally
``"provider:model@BASE_URL"`` for an OpenAI-compatible server of its own). A fallback of the
same provider as the primary inherits the primary's ``base_url`` and ``api_key_env``; others
use their preset's URL and key variable. Each link is wrapped in a guard (rate limits,
timeouts, retries, prompted tools, cost) and the links in a fallback chain. ``scripted``
alone stays the plain scripted provider.

Providers: ``anthropic``, ``openai``, the OpenAI-compatible presets of ``compatible.py``
(``groq``, ``xai``, ``deepseek``, ``gemini``, ``together``, ``ollama``, ``vllm``,
``openai-compatible``), the local runners of ``local.py`` (``mlx``, ``transformers``,
``vllm-local``) and ``scripted``.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from domain.agents import AgentDefinition
from domain.errors import Invalid
from infra.llm.anthropic import AnthropicProvider
from infra.llm.base import Provider
from infra.llm.clients import cached
from infra.llm.compatible import PRESETS, endpoint_for
from infra.llm.fallback import FallbackChain, Link
from infra.llm.guard import DEFAULT_TIMEOUT, GuardedProvider, Sleep
from infra.llm.limits import Limiter, Limits, MemoryLimiter, Mode, RedisLimiter
from infra.llm.local import RUNNERS, LocalProvider
from infra.llm.models import model_info
from infra.llm.openai import Endpoint, OpenAIProvider
from infra.llm.retries import RetryPolicy
from infra.llm.scripted import ScriptedProvider

LOCAL_TIMEOUT = 600.0
OPENAI = Endpoint(provider="openai", base_url=None, key_variable="OPENAI_API_KEY",
                  official=True, json_mode="schema")


@dataclass(frozen=True)
class ProviderOptions:
    """How calls are made: where the shared rate limiter lives, and how patient to be."""

    redis_url: str | None = None          # share RPM/TPM windows here; None: this process
    limiter: Limiter | None = None        # or hand one in (tests)
    rate_limit_mode: Mode = "wait"        # wait for room under the limit, or fail fast
    max_wait: float = 120.0               # seconds a call may wait for the limiter
    window: float = 60.0                  # seconds of the RPM/TPM window
    timeout: float = DEFAULT_TIMEOUT      # seconds per call (per stream piece)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Sleep = asyncio.sleep          # how retries pause (tests record instead)


_memory_limiters: dict[tuple[str, float], MemoryLimiter] = {}
_memory_lock = threading.Lock()


def limiter_for(options: ProviderOptions) -> Limiter:
    """The limiter ``options`` call for: shared through Redis, or this process's own."""
    if options.limiter is not None:
        return options.limiter
    if options.redis_url:
        url, mode, wait = options.redis_url, options.rate_limit_mode, options.max_wait
        limiter: Limiter = cached(("limiter", url, mode, wait),
                                  lambda: RedisLimiter(url, mode=mode, max_wait=wait))
        return limiter
    with _memory_lock:
        key = (options.rate_limit_mode, options.max_wait)
        if key not in _memory_limiters:
            _memory_limiters[key] = MemoryLimiter(mode=options.rate_limit_mode,
                                                  max_wait=options.max_wait)
        return _memory_limiters[key]


def provider_names() -> list[str]:
    """Every provider name a definition may use."""
    return ["anthropic", "openai", *PRESETS, *RUNNERS, "scripted"]


def parse_fallback(spec: str) -> tuple[str, str, str | None]:
    """``"provider:model[@base_url]"`` as (provider, model, base_url)."""
    provider, _, rest = spec.strip().partition(":")
    base_url = None
    for scheme in ("@http://", "@https://"):
        if scheme in rest:
            rest, _, tail = rest.partition(scheme)
            base_url = scheme[1:] + tail
    if not provider or not rest:
        raise Invalid(f"fallback {spec!r} should read 'provider:model' (e.g. "
                      "'anthropic:claude-haiku-4-5'), optionally '@BASE_URL' after the model")
    return provider, rest, base_url


def check_definition(definition: AgentDefinition) -> None:
    """Raise Invalid when a definition names an unknown provider or writes a fallback wrongly.

    Cheap and without I/O (no key is read, no client made): for checking at definition time.
    """
    known = set(provider_names())
    links = [(definition.provider, definition.base_url)]
    links += [(provider, base_url or (definition.base_url if provider == definition.provider
                                      else None))
              for provider, _, base_url in map(parse_fallback, definition.fallbacks)]
    for provider, base_url in links:
        if provider not in known:
            raise Invalid(f"unknown provider {provider!r}; one of {', '.join(provider_names())}")
        if provider == "openai-compatible" and not base_url:
            raise Invalid("provider 'openai-compatible' needs a base_url (the server's /v1 URL)")


def adapter_for(provider: str, model: str, base_url: str | None = None,
                key_variable: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Provider:
    """The bare adapter for ``provider``'s ``model`` (no limits, retries or fallbacks)."""
    if provider == "anthropic":
        return AnthropicProvider(model, base_url, key_variable, timeout)
    if provider == "openai":
        endpoint = Endpoint(provider="openai", base_url=base_url,
                            key_variable=key_variable or OPENAI.key_variable, official=True,
                            json_mode="schema")
        return OpenAIProvider(endpoint, model, timeout)
    if provider in PRESETS:
        return OpenAIProvider(endpoint_for(provider, base_url, key_variable), model, timeout)
    if provider in RUNNERS:
        return LocalProvider(provider, model)
    raise Invalid(f"unknown provider {provider!r}; one of {', '.join(provider_names())}")


def provider_for(definition: AgentDefinition, options: ProviderOptions | None = None) -> Provider:
    """The provider an agent's definition names: its model and fallbacks, guarded, chained."""
    if definition.provider == "scripted" and not definition.fallbacks:
        return ScriptedProvider(definition.name, definition.script)
    options = options or ProviderOptions()
    specs = [(definition.provider, definition.model, definition.base_url,
              definition.api_key_env)]
    for fallback in definition.fallbacks:
        provider, model, base_url = parse_fallback(fallback)
        same = provider == definition.provider
        specs.append((provider, model, base_url or (definition.base_url if same else None),
                      definition.api_key_env if same else None))
    links: list[Link] = []
    limiter: Limiter | None = None
    for provider, model, base_url, key_variable in specs:
        label = f"{provider}:{model}"
        if provider == "scripted":
            links.append(Link(ScriptedProvider(definition.name, definition.script), model,
                              label))
            continue
        adapter = adapter_for(provider, model, base_url, key_variable, options.timeout)
        info = model_info(provider, model)
        limiter = limiter or limiter_for(options)
        # A local model's first piece waits for the model to load from disk.
        timeout = max(options.timeout, LOCAL_TIMEOUT) if provider in RUNNERS else \
            options.timeout
        guarded = GuardedProvider(adapter, info, limiter=limiter, retry=options.retry,
                                  limits=Limits(info.rpm, info.tpm, options.window),
                                  timeout=timeout, sleep=options.sleep)
        links.append(Link(guarded, model, label))
    return FallbackChain(links)
