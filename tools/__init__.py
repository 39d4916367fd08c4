"""Tool framework and built-in tools for agents.

Not built yet: the agents issue delivers ``@tool``, the registry and permissions. Agents of the
walking skeleton call no tools.
"""
