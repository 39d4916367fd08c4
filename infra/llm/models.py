"""The model registry: context window, output limit, rate limits, capabilities and prices.

Prices are US dollars per million tokens as the vendors list them for standard (non-batch,
non-cached) use; rate limits are the vendors' entry-tier defaults, so a paid account with a
higher tier is throttled earlier than it must be (raise them with ``register``). A model not
listed still works: it gets ``conservative`` values and one warning per process. Names match
by longest prefix, so dated snapshots (``gpt-4o-2024-08-06``, ``claude-sonnet-4-5-20250929``)
and Ollama tags (``llama3.2:3b``) find their family.
"""

from __future__ import annotations

import logging
import threading

from pydantic import BaseModel, ConfigDict

from infra.llm.base import Usage

log = logging.getLogger(__name__)


class ModelInfo(BaseModel):
    """What Salon knows about one model of one provider."""

    model_config = ConfigDict(frozen=True)

    provider: str
    name: str
    context_window: int
    max_output: int
    rpm: int | None = None            # requests per minute; None: no limit applies
    tpm: int | None = None            # tokens per minute; None: no limit applies
    tools: bool = True                # native tool calling
    vision: bool = False
    input_price: float = 0.0          # USD per million input tokens
    output_price: float = 0.0         # USD per million output tokens
    reasoning: bool = False           # fixed temperature; OpenAI wants max_completion_tokens
    known: bool = True                # False: conservative defaults for an unlisted model

    def cost(self, usage: Usage) -> float:
        """What ``usage`` cost in USD at this model's prices."""
        return round((usage.input_tokens * self.input_price +
                      usage.output_tokens * self.output_price) / 1_000_000, 8)


def _m(provider: str, name: str, context: int, output: int, rpm: int | None, tpm: int | None,
       price_in: float, price_out: float, *, tools: bool = True, vision: bool = False,
       reasoning: bool = False) -> ModelInfo:
    return ModelInfo(provider=provider, name=name, context_window=context, max_output=output,
                     rpm=rpm, tpm=tpm, tools=tools, vision=vision, input_price=price_in,
                     output_price=price_out, reasoning=reasoning)


K = 1_000
CATALOGUE: list[ModelInfo] = [
    # Anthropic (tier-1 limits: 50 RPM; input tokens per minute by family)
    _m("anthropic", "claude-opus-4-5", 200 * K, 64 * K, 50, 30 * K, 5.0, 25.0, vision=True),
    _m("anthropic", "claude-opus-4-1", 200 * K, 32 * K, 50, 30 * K, 15.0, 75.0, vision=True),
    _m("anthropic", "claude-opus-4", 200 * K, 32 * K, 50, 30 * K, 15.0, 75.0, vision=True),
    _m("anthropic", "claude-sonnet-4-5", 200 * K, 64 * K, 50, 30 * K, 3.0, 15.0, vision=True),
    _m("anthropic", "claude-sonnet-4", 200 * K, 64 * K, 50, 30 * K, 3.0, 15.0, vision=True),
    _m("anthropic", "claude-3-7-sonnet", 200 * K, 64 * K, 50, 20 * K, 3.0, 15.0, vision=True),
    _m("anthropic", "claude-haiku-4-5", 200 * K, 64 * K, 50, 50 * K, 1.0, 5.0, vision=True),
    _m("anthropic", "claude-3-5-haiku", 200 * K, 8192, 50, 50 * K, 0.8, 4.0, vision=True),
    _m("anthropic", "claude-3-haiku", 200 * K, 4096, 50, 50 * K, 0.25, 1.25, vision=True),
    # OpenAI (tier-1 limits)
    _m("openai", "gpt-5.1", 400 * K, 128 * K, 500, 500 * K, 1.25, 10.0, vision=True,
       reasoning=True),
    _m("openai", "gpt-5", 400 * K, 128 * K, 500, 500 * K, 1.25, 10.0, vision=True,
       reasoning=True),
    _m("openai", "gpt-5-mini", 400 * K, 128 * K, 500, 500 * K, 0.25, 2.0, vision=True,
       reasoning=True),
    _m("openai", "gpt-5-nano", 400 * K, 128 * K, 500, 200 * K, 0.05, 0.4, vision=True,
       reasoning=True),
    _m("openai", "gpt-4.1", 1_047_576, 32_768, 500, 30 * K, 2.0, 8.0, vision=True),
    _m("openai", "gpt-4.1-mini", 1_047_576, 32_768, 500, 200 * K, 0.4, 1.6, vision=True),
    _m("openai", "gpt-4.1-nano", 1_047_576, 32_768, 500, 200 * K, 0.1, 0.4, vision=True),
    _m("openai", "gpt-4o", 128 * K, 16_384, 500, 30 * K, 2.5, 10.0, vision=True),
    _m("openai", "gpt-4o-mini", 128 * K, 16_384, 500, 200 * K, 0.15, 0.6, vision=True),
    _m("openai", "o3", 200 * K, 100 * K, 500, 30 * K, 2.0, 8.0, vision=True, reasoning=True),
    _m("openai", "o3-mini", 200 * K, 100 * K, 500, 200 * K, 1.1, 4.4, reasoning=True),
    _m("openai", "o4-mini", 200 * K, 100 * K, 500, 200 * K, 1.1, 4.4, vision=True,
       reasoning=True),
    _m("openai", "o1", 200 * K, 100 * K, 500, 30 * K, 15.0, 60.0, vision=True, reasoning=True),
    _m("openai", "gpt-4-turbo", 128 * K, 4096, 500, 30 * K, 10.0, 30.0, vision=True),
    _m("openai", "gpt-3.5-turbo", 16_385, 4096, 3500, 200 * K, 0.5, 1.5),
    # Groq (developer-tier figures vary by model; free tier is lower)
    _m("groq", "llama-3.3-70b-versatile", 131_072, 32_768, 1000, 300 * K, 0.59, 0.79),
    _m("groq", "llama-3.1-8b-instant", 131_072, 131_072, 1000, 250 * K, 0.05, 0.08),
    _m("groq", "openai/gpt-oss-120b", 131_072, 65_536, 1000, 250 * K, 0.15, 0.75),
    _m("groq", "openai/gpt-oss-20b", 131_072, 65_536, 1000, 250 * K, 0.10, 0.50),
    _m("groq", "meta-llama/llama-4-maverick-17b-128e-instruct", 131_072, 8192, 1000, 300 * K,
       0.20, 0.60, vision=True),
    _m("groq", "meta-llama/llama-4-scout-17b-16e-instruct", 131_072, 8192, 1000, 300 * K,
       0.11, 0.34, vision=True),
    _m("groq", "moonshotai/kimi-k2-instruct", 262_144, 16_384, 1000, 250 * K, 1.0, 3.0),
    _m("groq", "qwen/qwen3-32b", 131_072, 40_960, 1000, 300 * K, 0.29, 0.59),
    # xAI
    _m("xai", "grok-4-fast", 2_000 * K, 30 * K, 480, 4_000 * K, 0.20, 0.50, vision=True),
    _m("xai", "grok-4", 256 * K, 64 * K, 480, 2_000 * K, 3.0, 15.0, vision=True,
       reasoning=True),
    _m("xai", "grok-code-fast-1", 256 * K, 10 * K, 480, 2_000 * K, 0.20, 1.50),
    _m("xai", "grok-3-mini", 131_072, 16_384, 480, 2_000 * K, 0.30, 0.50),
    _m("xai", "grok-3", 131_072, 16_384, 600, 2_000 * K, 3.0, 15.0),
    _m("xai", "grok-2-vision", 32_768, 8192, 600, 2_000 * K, 2.0, 10.0, vision=True),
    # DeepSeek (no published rate limit: it queues instead)
    _m("deepseek", "deepseek-chat", 128 * K, 8192, None, None, 0.28, 0.42),
    _m("deepseek", "deepseek-reasoner", 128 * K, 64 * K, None, None, 0.28, 0.42,
       reasoning=True),
    # Gemini through its OpenAI-compatible endpoint (tier-1 limits; prices up to 200k prompt)
    _m("gemini", "gemini-3-pro-preview", 1_048_576, 65_536, 50, 1_000 * K, 2.0, 12.0,
       vision=True),
    _m("gemini", "gemini-2.5-pro", 1_048_576, 65_536, 150, 2_000 * K, 1.25, 10.0, vision=True),
    _m("gemini", "gemini-2.5-flash-lite", 1_048_576, 65_536, 4000, 4_000 * K, 0.10, 0.40,
       vision=True),
    _m("gemini", "gemini-2.5-flash", 1_048_576, 65_536, 1000, 1_000 * K, 0.30, 2.50,
       vision=True),
    _m("gemini", "gemini-2.0-flash-lite", 1_048_576, 8192, 4000, 4_000 * K, 0.075, 0.30,
       vision=True),
    _m("gemini", "gemini-2.0-flash", 1_048_576, 8192, 2000, 4_000 * K, 0.10, 0.40,
       vision=True),
    # Together
    _m("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", 131_072, 8192, 600, None,
       0.88, 0.88),
    _m("together", "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", 131_072, 8192, 600, None,
       0.18, 0.18),
    _m("together", "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8", 1_048_576, 8192, 600,
       None, 0.27, 0.85, vision=True),
    _m("together", "deepseek-ai/DeepSeek-V3", 131_072, 8192, 600, None, 1.25, 1.25),
    _m("together", "deepseek-ai/DeepSeek-R1", 163_840, 32_768, 600, None, 3.0, 7.0,
       tools=False, reasoning=True),
    _m("together", "Qwen/Qwen2.5-72B-Instruct-Turbo", 32_768, 8192, 600, None, 1.20, 1.20),
    _m("together", "openai/gpt-oss-120b", 131_072, 32_768, 600, None, 0.15, 0.60),
    _m("together", "moonshotai/Kimi-K2-Instruct", 131_072, 16_384, 600, None, 1.0, 3.0),
    _m("together", "mistralai/Mixtral-8x7B-Instruct-v0.1", 32_768, 8192, 600, None, 0.60, 0.60,
       tools=False),
    # Ollama (local: free, no limits; tool support as Ollama's library lists it)
    _m("ollama", "llama3.3", 131_072, 8192, None, None, 0, 0),
    _m("ollama", "llama3.2", 131_072, 8192, None, None, 0, 0),
    _m("ollama", "llama3.1", 131_072, 8192, None, None, 0, 0),
    _m("ollama", "qwen3", 40_960, 8192, None, None, 0, 0),
    _m("ollama", "qwen2.5", 32_768, 8192, None, None, 0, 0),
    _m("ollama", "mistral", 32_768, 8192, None, None, 0, 0),
    _m("ollama", "gpt-oss", 131_072, 32_768, None, None, 0, 0),
    _m("ollama", "gemma3", 131_072, 8192, None, None, 0, 0, tools=False, vision=True),
    _m("ollama", "phi4", 16_384, 4096, None, None, 0, 0, tools=False),
    _m("ollama", "deepseek-r1", 131_072, 8192, None, None, 0, 0, tools=False, reasoning=True),
    # The deterministic providers
    _m("scripted", "scripted", 1_000_000, 100_000, None, None, 0, 0),
]

# Where an unlisted model's provider implies native tools (the big vendors' current models do).
NATIVE_TOOLS_BY_DEFAULT = frozenset({"anthropic", "openai", "xai", "gemini", "groq", "deepseek",
                                     "together"})
# Local runners and self-hosted servers have no vendor limits or prices.
LOCAL = frozenset({"ollama", "vllm", "mlx", "transformers", "vllm-local", "openai-compatible"})
# Local runners load any model from disk: none is "listed", so none is worth a warning.
RUNNERS = frozenset({"mlx", "transformers", "vllm-local"})

_registry: dict[str, dict[str, ModelInfo]] = {}
_warned: set[tuple[str, str]] = set()
_lock = threading.Lock()


def register(info: ModelInfo) -> None:
    """Add or replace a model's entry (a newer model, your own tier's limits or prices)."""
    with _lock:
        _registry.setdefault(info.provider, {})[info.name] = info


for _info in CATALOGUE:
    register(_info)


def conservative(provider: str, model: str) -> ModelInfo:
    """Values for an unlisted model: a small window, entry-level limits, no price known."""
    local = provider in LOCAL
    return ModelInfo(provider=provider, name=model, context_window=8192, max_output=2048,
                     rpm=None if local else 60, tpm=None if local else 60 * K,
                     tools=provider in NATIVE_TOOLS_BY_DEFAULT, known=False)


def model_info(provider: str, model: str) -> ModelInfo:
    """What is known of ``model`` at ``provider``; conservative values (one warning) if unlisted."""
    listed = _registry.get(provider, {})
    found = _lookup(listed, model)
    if found is not None:
        return found
    if provider in RUNNERS:
        return conservative(provider, model)
    key = (provider, model)
    with _lock:
        first = key not in _warned
        _warned.add(key)
    if first:
        log.warning("model %r of provider %r is not in Salon's model registry; using "
                    "conservative defaults (8k context, 2k output, no price, prompted tools "
                    "unless the vendor has native ones); register() it for exact figures",
                    model, provider)
    return conservative(provider, model)


def models(provider: str | None = None) -> list[ModelInfo]:
    """Every registered model (of ``provider``), for ``salon models list``."""
    return [info for name, listed in sorted(_registry.items()) if provider in (None, name)
            for info in sorted(listed.values(), key=lambda i: i.name)]


def _lookup(listed: dict[str, ModelInfo], model: str) -> ModelInfo | None:
    if model in listed:
        return listed[model]
    bare = model.split(":", 1)[0] if ":" in model else model
    best: ModelInfo | None = None
    for name, info in listed.items():
        if bare == name or (bare.startswith(name) and bare[len(name):len(name) + 1] in "-.@:"):
            if best is None or len(name) > len(best.name):
                best = info
    return best
