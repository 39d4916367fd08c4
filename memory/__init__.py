"""What an agent keeps in mind: short-term context strategies and long-term memory.

The pure rules and the memory service (``AgentMemory``, ``service.py``, written against the
interfaces in ``ports.py``) are here; storage and embedding adapters are in ``infra/``, the
memory view in ``projections/``, the embedder actor in ``actors/``. ``service.py`` says more.
"""
