"""Counting tokens without a tokenizer: the documented estimate of about four characters a token.

No vendor tokenizer can be loaded offline here, so strategies take a ``count`` function and
default to this estimate (OpenAI and Anthropic both document ~4 characters of English text per
token). Each message also costs a fixed overhead for its role and author markers.
"""

from __future__ import annotations

from collections.abc import Callable

CHARS_PER_TOKEN = 4
# Role, name and separators around each chat message (OpenAI documents 3-4 tokens).
PER_MESSAGE = 4

TokenCounter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """About four characters a token, rounded up; the empty text costs nothing."""
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
