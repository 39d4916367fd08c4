"""Prometheus' text exposition format (0.0.4) of Salon's metrics, served at ``/metrics``.

Counters carry every dimension as labels (``day``, ``agent``, ``room``, ``user``,
``provider``, ``model``), so summing a family over any labels gives that breakdown and summing
it over all gives the totals of the log. Percentiles cannot be summed, so latency p50/p95 and
tool success ratios are gauges per day and one dimension (``by`` names it, ``key`` its value).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from projections import metrics
from projections.views import Queries

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
USAGE_LABELS = ("day", "agent", "room", "user_name", "provider", "model")


@dataclass
class Family:
    """One metric family: its name, type, help and samples (labels, value)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, labels: dict[str, Any], value: float) -> None:
        """Add one sample."""
        self.samples.append(({k: str(v) for k, v in labels.items()}, float(value)))


def escape(value: str) -> str:
    """A label value as the text format writes it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    """A sample value as the text format writes it."""
    if value != value:  # noqa: PLR0124 - NaN
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(value)


def render(families: Iterable[Family]) -> str:
    """The exposition text of ``families``."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            text = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
            lines.append(f"{family.name}{{{text}}} {number(value)}" if text
                         else f"{family.name} {number(value)}")
    return "\n".join(lines) + "\n"


def _labels(row: dict[str, Any]) -> dict[str, Any]:
    return {("user" if k == "user_name" else k): row[k] for k in USAGE_LABELS}


def agent_families(reader: Queries, since: str | None = None) -> list[Family]:
    """Tokens, cost, calls, latency and tool success from the metrics view."""
    calls = Family("salon_model_calls_total", "counter", "Model calls made by agents.")
    tokens = Family("salon_model_tokens_total", "counter",
                    "Tokens of model calls; direction is input or output.")
    cost = Family("salon_model_cost_usd_total", "counter", "Cost of model calls in US dollars.")
    fallbacks = Family("salon_model_fallbacks_total", "counter",
                       "Model calls answered by a fallback provider.")
    for row in metrics.usage(reader, since):
        labels = _labels(row)
        calls.add(labels, row["calls"])
        tokens.add({**labels, "direction": "input"}, row["input_tokens"])
        tokens.add({**labels, "direction": "output"}, row["output_tokens"])
        cost.add(labels, row["cost_usd"])
        fallbacks.add(labels, row["fallbacks"])
    latency = Family("salon_model_latency_ms", "gauge",
                     "Model call latency percentiles per day and dimension (by, key).")
    for dimension in metrics.DIMENSIONS:
        by = "user" if dimension == "user_name" else dimension
        for row in metrics.latency(reader, dimension, since):
            for quantile in ("p50", "p95"):
                latency.add({"by": by, "key": row["key"], "day": row["day"],
                             "quantile": "0.5" if quantile == "p50" else "0.95"},
                            row[quantile])
    tool_calls = Family("salon_tool_calls_total", "counter",
                        "Tool calls by status (ok, error, refused, timeout).")
    for row in metrics.tools(reader, since):
        tool_calls.add({"day": row["day"], "agent": row["agent"], "room": row["room"],
                        "user": row["user_name"], "tool": row["tool"],
                        "status": row["status"]}, row["calls"])
    success = Family("salon_tool_success_ratio", "gauge",
                     "Share of tool calls that succeeded, per day and dimension (by, key).")
    for dimension in metrics.DIMENSIONS[:3]:
        by = "user" if dimension == "user_name" else dimension
        for row in metrics.tool_success(reader, dimension, since):
            success.add({"by": by, "key": row["key"], "day": row["day"]}, row["ratio"])
    guards = Family("salon_guardrail_verdicts_total", "counter",
                    "Guardrail verdicts by check and action (flagged, blocked, redacted, "
                    "refused).")
    for row in metrics.guard_verdicts(reader, since):
        guards.add({"day": row["day"], "agent": row["agent"], "room": row["room"],
                    "user": row["user_name"], "direction": row["direction"],
                    "source": row["source"], "check": row["check_name"],
                    "action": row["action"]}, row["verdicts"])
    return [calls, tokens, cost, fallbacks, latency, tool_calls, success, guards]
