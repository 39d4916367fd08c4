"""Tool framework and built-in tools for agents.

Declare a tool with ``@tool`` (schema from type hints and docstring) or by subclassing
``Tool``; register it in a ``ToolRegistry``; run calls through a ``ToolExecutor``, which checks
an agent's allow list and permissions, validates arguments, applies timeouts, output caps and
the cache, and answers every call with a ``ToolOutcome`` instead of raising.
"""

from tools.base import Tool, ToolContext, ToolOutcome, ToolStatus
from tools.builtins import RunPython, builtin_tools, default_registry
from tools.cache import MemoryToolCache, RedisToolCache, ToolCache, cache_key
from tools.calls import ParsedToolCall, parse_tool_calls, render_tool_instructions
from tools.executor import ToolExecutor
from tools.functions import FunctionTool, tool
from tools.registry import ToolRegistry
from tools.sandbox import Sandbox, SandboxLimits

__all__ = [
    "FunctionTool", "MemoryToolCache", "ParsedToolCall", "RedisToolCache", "RunPython",
    "Sandbox", "SandboxLimits", "Tool", "ToolCache", "ToolContext", "ToolExecutor",
    "ToolOutcome", "ToolRegistry", "ToolStatus", "builtin_tools", "cache_key",
    "default_registry", "parse_tool_calls", "render_tool_instructions", "tool",
]
