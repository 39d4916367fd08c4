"""One provider interface for every model; vendor types never leave this package."""

from infra.llm.base import (
    ChatMessage,
    Completion,
    Delta,
    ModelRequest,
    Provider,
    ToolCall,
    ToolSpec,
    Usage,
)
from infra.llm.registry import ProviderOptions, provider_for

__all__ = ["ChatMessage", "Completion", "Delta", "ModelRequest", "Provider", "ProviderOptions",
           "ToolCall", "ToolSpec", "Usage", "provider_for"]
