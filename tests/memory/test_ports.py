"""The concrete adapters offer what the memory service's ports ask for, call for call."""

from __future__ import annotations

import inspect

import pytest

from actors.embedder import RemoteEmbedder
from infra.embeddings import MiniLMEmbedder, OpenAIEmbedder
from infra.memories import MemoryStore
from infra.store import EventStore
from memory.ports import Embedder, EventLog, MemoryTables


def methods(protocol: type) -> list[str]:
    return [name for name, value in vars(protocol).items()
            if inspect.isfunction(value) and not name.startswith("_")]


@pytest.mark.parametrize(("port", "adapter"), [
    (EventLog, EventStore), (MemoryTables, MemoryStore), (Embedder, MiniLMEmbedder),
    (Embedder, OpenAIEmbedder), (Embedder, RemoteEmbedder)])
def test_adapter_accepts_every_call_the_port_allows(port: type, adapter: type) -> None:
    for name in methods(port):
        assert hasattr(adapter, name), f"{adapter.__name__} has no {name}"
        wanted = inspect.signature(getattr(port, name)).parameters
        offered = inspect.signature(getattr(adapter, name)).parameters
        positional = [p for p in offered.values()
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        for index, (pname, param) in enumerate(wanted.items()):
            assert pname in offered, f"{adapter.__name__}.{name} takes no {pname}"
            if param.kind is param.POSITIONAL_OR_KEYWORD:
                assert positional[index].name == pname, \
                    f"{adapter.__name__}.{name}: {pname} is not argument {index}"
            if param.default is not param.empty:
                assert offered[pname].default is not offered[pname].empty, \
                    f"{adapter.__name__}.{name}: {pname} needs a default"
