"""The report's figures: matplotlib (Agg, no display needed) drawn to PNG bytes."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen before pyplot loads
from matplotlib.figure import Figure  # noqa: E402

MAX_BARS = 25
MAX_LINES = 8
DPI = 96
# matplotlib's "tab10": ten colours told apart easily, also by most colour-blind readers.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def _mean_by_agent(runs: list[dict[str, Any]], key: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for run in runs:
        for agent, stats in run.get("agents", {}).items():
            value = stats
            for part in key.split("."):
                value = value[part]
            found.setdefault(agent, []).append(float(value))
    return found


def _top(values: dict[str, list[float]]) -> list[tuple[str, float, float]]:
    rows = []
    for agent, series in values.items():
        mean = sum(series) / len(series)
        sd = (sum((x - mean) ** 2 for x in series) / (len(series) - 1)) ** 0.5 \
            if len(series) > 1 else 0.0
        rows.append((agent, mean, sd))
    rows.sort(key=lambda r: (-r[1], r[0]))
    if len(rows) > MAX_BARS:
        rest = rows[MAX_BARS - 1:]
        rows = rows[:MAX_BARS - 1] + [(f"{len(rest)} others", sum(r[1] for r in rest), 0.0)]
    return rows


def _distribution(values: dict[str, list[float]], label: str, title: str) -> bytes:
    """A histogram over agents, for crowds too large to show one bar each."""
    means = [sum(v) / len(v) for v in values.values()]
    figure, axes = plt.subplots(figsize=(7, 3.4))
    axes.hist(means, bins=min(30, max(5, len(set(means)))), color=COLOURS[0],
              edgecolor="white")
    axes.set_xlabel(label)
    axes.set_ylabel("agents")
    axes.set_title(f"{title} ({len(means)} agents)")
    return _png(figure)


def speaking_share(runs: list[dict[str, Any]]) -> bytes:
    """Agent turns per agent (mean over the runs, with their spread)."""
    by_agent = _mean_by_agent(runs, "messages")
    if len(by_agent) > MAX_BARS:
        return _distribution(by_agent, "agent turns (mean over runs)", "Turns per agent")
    rows = _top(by_agent)
    figure, axes = plt.subplots(figsize=(7, 0.8 + 0.32 * max(len(rows), 1)))
    total = sum(r[1] for r in rows) or 1.0
    positions = range(len(rows))
    axes.barh(list(positions), [r[1] for r in rows], xerr=[r[2] for r in rows],
              color=[COLOURS[i % len(COLOURS)] for i in positions])
    axes.set_yticks(list(positions), [r[0] for r in rows])
    axes.invert_yaxis()
    for index, (_, mean, _) in enumerate(rows):
        axes.text(mean, index, f"  {mean / total:.0%}", va="center", fontsize=8)
    axes.set_xlabel("agent turns (mean over runs)")
    axes.set_title("Speaking share")
    return _png(figure)


def conversation(run: dict[str, Any]) -> bytes:
    """Cumulative agent turns over virtual time, one line per room."""
    figure, axes = plt.subplots(figsize=(7, 3.4))
    rooms = sorted(run.get("rooms", {}).items())
    for index, (room, data) in enumerate(rooms):
        times = [m["t"] / 60 for m in data["transcript"] if m["kind"] == "agent"]
        if not times:
            continue
        label = room if len(rooms) <= MAX_LINES else None
        axes.step([0.0, *times], list(range(len(times) + 1)), where="post", label=label,
                  color=COLOURS[index % len(COLOURS)], alpha=1.0 if label else 0.5)
    axes.set_xlabel("virtual minutes")
    axes.set_ylabel("agent turns")
    axes.set_title(f"Conversation over time ({run['run']})")
    if len(rooms) <= MAX_LINES:
        axes.legend(fontsize=8, loc="upper left")
    return _png(figure)


def measure(run: dict[str, Any], name: str) -> bytes:
    """The measure of every agent message over virtual time, and its running mean per room."""
    figure, axes = plt.subplots(figsize=(7, 3.4))
    rooms = sorted(run.get("rooms", {}).items())
    agents = sorted({a for _, data in rooms for _, a, _ in data["scores"]})
    colour = {a: COLOURS[i % len(COLOURS)] for i, a in enumerate(agents)}
    for index, (room, data) in enumerate(rooms):
        scores = data["scores"]
        if not scores:
            continue
        axes.scatter([s[0] / 60 for s in scores], [s[2] for s in scores], s=12, alpha=0.6,
                     c=[colour[s[1]] for s in scores])
        running, total = [], 0.0
        for count, (_, _, score) in enumerate(scores, 1):
            total += score
            running.append(total / count)
        label = f"{room} (running mean)" if len(rooms) <= MAX_LINES else None
        axes.plot([s[0] / 60 for s in scores], running, label=label, linewidth=1.6,
                  color=COLOURS[(index + 3) % len(COLOURS)])
    axes.axhline(0, color="grey", linewidth=0.6)
    axes.set_ylim(-1.1, 1.1)
    axes.set_xlabel("virtual minutes")
    axes.set_ylabel(name)
    axes.set_title(f"{name.capitalize()} per agent message ({run['run']})")
    if len(rooms) <= MAX_LINES and any(d["scores"] for _, d in rooms):
        axes.legend(fontsize=8, loc="lower left")
    return _png(figure)


def tokens(runs: list[dict[str, Any]]) -> bytes:
    """Input and output tokens per agent (mean over runs)."""
    inputs = {a: sum(v) / len(v) for a, v in _mean_by_agent(runs, "input_tokens").items()}
    outputs = {a: sum(v) / len(v) for a, v in _mean_by_agent(runs, "output_tokens").items()}
    if len(inputs) > MAX_BARS:
        return _distribution({a: [inputs[a] + outputs.get(a, 0.0)] for a in inputs},
                             "tokens, input and output (mean over runs)", "Tokens per agent")
    rows = _top({a: [inputs[a] + outputs.get(a, 0.0)] for a in inputs})
    names = [r[0] for r in rows]
    figure, axes = plt.subplots(figsize=(7, 0.8 + 0.32 * max(len(rows), 1)))
    positions = list(range(len(rows)))
    first = [inputs.get(n, 0.0) for n in names]
    axes.barh(positions, first, color=COLOURS[0], label="input")
    axes.barh(positions, [outputs.get(n, 0.0) for n in names], left=first, color=COLOURS[1],
              label="output")
    axes.set_yticks(positions, names)
    axes.invert_yaxis()
    axes.set_xlabel("tokens (mean over runs)")
    axes.set_title("Tokens per agent")
    axes.legend(fontsize=8, loc="lower right")
    return _png(figure)


def latency(runs: list[dict[str, Any]]) -> bytes:
    """Response latency per agent: median bar, 95th percentile mark (wall clock)."""
    medians = {a: sum(v) / len(v) for a, v in
               _mean_by_agent(runs, "reply_latency_ms.p50").items()}
    highs = {a: max(v) for a, v in _mean_by_agent(runs, "reply_latency_ms.p95").items()}
    if len(medians) > MAX_BARS:
        return _distribution({a: [m] for a, m in medians.items()},
                             "median ms from the message that called on an agent to its reply",
                             "Response latency")
    rows = _top({a: [m] for a, m in medians.items()})
    figure, axes = plt.subplots(figsize=(7, 0.8 + 0.32 * max(len(rows), 1)))
    positions = list(range(len(rows)))
    axes.barh(positions, [r[1] for r in rows], color=COLOURS[2], label="median")
    axes.scatter([highs.get(r[0], r[1]) for r in rows], positions, color=COLOURS[3],
                 marker="|", s=160, label="95th percentile", zorder=3)
    axes.set_yticks(positions, [r[0] for r in rows])
    axes.invert_yaxis()
    axes.set_xlabel("ms from the message that called on the agent to its reply")
    axes.set_title("Response latency")
    axes.legend(fontsize=8, loc="lower right")
    return _png(figure)


def comparison(variants: list[dict[str, Any]], keys: list[tuple[str, str]]) -> bytes:
    """Sweep points side by side: one panel per metric, mean and spread over repetitions."""
    figure, panels = plt.subplots(1, len(keys), figsize=(3.0 * len(keys), 3.6), squeeze=False)
    labels = [f"#{v['index'] + 1}" for v in variants]
    for axes, (key, title) in zip(panels[0], keys, strict=True):
        means = [v["summary"]["totals"][key]["mean"] for v in variants]
        sds = [v["summary"]["totals"][key]["sd"] for v in variants]
        axes.bar(labels, means, yerr=sds, capsize=3,
                 color=[COLOURS[i % len(COLOURS)] for i in range(len(variants))])
        axes.set_title(title, fontsize=10)
        axes.tick_params(axis="x", labelsize=8)
    figure.suptitle("Sweep points compared (mean ± sd over repetitions)")
    return _png(figure)
