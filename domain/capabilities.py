"""Capabilities: what an agent definition reaches outside the installation, and who granted it.

A definition asks for capabilities (tool permissions such as ``code`` and ``network``, hosts
``http_get`` may fetch, providers that spend the operator's money, provider endpoints and the
environment variables holding their keys). Only an admin grants them: to an agent, or to a
member as a quota the member may hand to agents they own. Nobody gets one by writing it into
a definition. The operator's configuration (``SALON_ENDPOINTS``) names the endpoints and key
variables that exist; a definition only picks among them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.definitions import AgentDefinition
from domain.errors import Forbidden, Invalid

# Providers that cost the operator nothing per call: deterministic scripts and local runners.
FREE_PROVIDERS = frozenset({"scripted", "mlx", "transformers", "vllm-local"})
# The key variable each vendor's SDK reads by default.
DEFAULT_KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY",
                "groq": "GROQ_API_KEY", "xai": "XAI_API_KEY", "deepseek": "DEEPSEEK_API_KEY",
                "gemini": "GEMINI_API_KEY", "together": "TOGETHER_API_KEY"}
KINDS = ("permissions", "hosts", "providers", "endpoints")


@dataclass(frozen=True)
class Endpoint:
    """An endpoint the operator configured: where it is and which variable holds its key."""

    name: str
    base_url: str
    api_key_env: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """Sets of capabilities of each kind."""

    permissions: frozenset[str] = field(default_factory=frozenset)
    hosts: frozenset[str] = field(default_factory=frozenset)
    providers: frozenset[str] = field(default_factory=frozenset)
    endpoints: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, data: Mapping[str, Iterable[str]] | None) -> Capabilities:
        """From the JSON form (unknown kinds are an error)."""
        data = data or {}
        unknown = sorted(set(data) - set(KINDS))
        if unknown:
            raise Invalid(f"unknown capability kind(s) {', '.join(unknown)}; "
                          f"one of {', '.join(KINDS)}")
        parts: dict[str, frozenset[str]] = {}
        for kind in KINDS:
            values = data.get(kind) or []
            if isinstance(values, str) or not all(isinstance(v, str) and 0 < len(v) <= 200
                                                  for v in values):
                raise Invalid(f"capabilities.{kind} is a list of names")
            parts[kind] = frozenset(values)
        if sum(len(v) for v in parts.values()) > 200:
            raise Invalid("at most 200 capabilities in one grant")
        return cls(**parts)

    def as_dict(self) -> dict[str, list[str]]:
        """The JSON form, sorted."""
        return {kind: sorted(getattr(self, kind)) for kind in KINDS}

    def __or__(self, other: Capabilities) -> Capabilities:
        return Capabilities(*(getattr(self, k) | getattr(other, k) for k in KINDS))

    def __sub__(self, other: Capabilities) -> Capabilities:
        return Capabilities(*(getattr(self, k) - getattr(other, k) for k in KINDS))

    def __bool__(self) -> bool:
        return any(getattr(self, k) for k in KINDS)

    def describe(self) -> str:
        """For messages: 'permissions code; hosts example.org'."""
        return "; ".join(f"{kind} {', '.join(sorted(getattr(self, kind)))}"
                         for kind in KINDS if getattr(self, kind))


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def required(spec: AgentDefinition, endpoints: Mapping[str, Endpoint],
             tool_permissions: Mapping[str, frozenset[str]] | None = None) -> Capabilities:
    """What a definition needs granted. An endpoint nobody configured cannot be granted.

    ``tool_permissions`` maps tool names to the permissions they need, so a tool on the allow
    list counts even if the definition forgot to list its permission.
    """
    permissions = set(spec.permissions)
    for name in spec.tools:
        permissions |= (tool_permissions or {}).get(name, frozenset())
    providers = {spec.provider}
    links: list[tuple[str, str | None, str | None]] = [
        (spec.provider, spec.base_url, spec.api_key_env)]
    for entry in spec.fallbacks:
        provider, _, rest = entry.partition(":")
        _, _, base_url = rest.partition("@")
        providers.add(provider)
        if base_url:
            links.append((provider, base_url, None))
    wanted_endpoints: set[str] = set()
    for provider, base_url, key in links:
        if base_url is None:
            if key is not None and key != DEFAULT_KEYS.get(provider):
                wanted_endpoints.add(f"key:{key}")
            continue
        match = next((e for e in endpoints.values() if _same_url(e.base_url, base_url)), None)
        if match is None:
            wanted_endpoints.add(f"url:{base_url}")
            continue
        wanted_endpoints.add(match.name)
        if key is not None and key != match.api_key_env:
            wanted_endpoints.add(f"key:{key}")
    return Capabilities(frozenset(permissions), frozenset(spec.allowed_hosts),
                        frozenset(providers - FREE_PROVIDERS), frozenset(wanted_endpoints))


def check_grantable(granted: Capabilities, endpoints: Mapping[str, Endpoint]) -> None:
    """An admin grants endpoints by their configured names only."""
    unknown = sorted(e for e in granted.endpoints if e not in endpoints)
    if unknown:
        raise Invalid(f"unknown endpoint(s) {', '.join(unknown)}; the operator names endpoints "
                      f"in SALON_ENDPOINTS ({', '.join(sorted(endpoints)) or 'none configured'})")


def require_granted(agent: str, needs: Capabilities, holds: Capabilities) -> None:
    """Refuse a definition that asks for more than was granted, naming who can grant it."""
    missing = needs - holds
    if not missing:
        return
    hint = ""
    if any(e.startswith(("url:", "key:")) for e in missing.endpoints):
        hint = (" A base_url or api_key_env must be one the operator configured in "
                "SALON_ENDPOINTS.")
    raise Forbidden(f"agent {agent!r} asks for capabilities that were not granted "
                    f"({missing.describe()}); only an admin grants them, to the agent or to its "
                    f"owner (`salon grant`).{hint}")


def endpoints_from(raw: Mapping[str, Any]) -> dict[str, Endpoint]:
    """The operator's endpoints from settings: ``{name: {base_url, api_key_env}}``."""
    found = {}
    for name, value in raw.items():
        if not isinstance(value, Mapping) or not isinstance(value.get("base_url"), str):
            raise Invalid(f"SALON_ENDPOINTS[{name!r}] needs a base_url")
        key = value.get("api_key_env")
        found[name] = Endpoint(name, value["base_url"], key if isinstance(key, str) else None)
    return found
