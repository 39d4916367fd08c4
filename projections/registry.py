"""The projections Salon runs, by name, and the schema each one's view lives in."""

from __future__ import annotations

from typing import Any

from domain.errors import NotFound
from projections.audit import Audit
from projections.memories import Memories
from projections.metrics import Metrics
from projections.threads import Threads
from projections.views import Projection, check_schema

PROJECTIONS: dict[str, type[Projection[Any]]] = {
    Threads.name: Threads,
    Audit.name: Audit,
    Metrics.name: Metrics,
    Memories.name: Memories,
}
SCHEMA_PREFIX = "salon_"


def projection_class(name: str) -> type[Projection[Any]]:
    """The projection called ``name``, or NotFound naming those there are."""
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise NotFound(f"there is no projection {name!r}; there are "
                       f"{', '.join(sorted(PROJECTIONS))}") from None


def schema_of(name: str, prefix: str = SCHEMA_PREFIX) -> str:
    """The schema of projection ``name``'s view (``salon_threads``, …)."""
    return check_schema(f"{prefix}{projection_class(name).name}")
