"""One provider interface for every model; vendor types never leave this package."""

from infra.llm.base import ChatMessage, Completion, ModelRequest, Provider, Usage
from infra.llm.registry import provider_for

__all__ = ["ChatMessage", "Completion", "ModelRequest", "Provider", "Usage", "provider_for"]
