"""Salon: rooms where humans and AI agents chat, on an append-only event log.

``from salon import Platform`` starts everything in-process; ``salon --help`` lists the CLI.
"""

from salon.platform import Platform

__all__ = ["Platform"]
