"""Salon: rooms where humans and AI agents chat, on an append-only event log.

``from salon import Platform`` starts everything in-process; ``salon --help`` lists the CLI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Platform"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the CLI's client commands must not pay for importing Ray.
    if name == "Platform":
        from salon.platform import Platform

        return Platform
    raise AttributeError(name)
