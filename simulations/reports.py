"""The HTML report of a simulation: plots, tables and transcript excerpts in one file.

``write_report(folder)`` reads ``manifest.json`` and ``metrics.json`` from a simulation's
folder and writes ``report.html`` beside them: self-contained (plots are base64 PNGs), so it
opens from disk, by mail, or in a headless browser. Sweep points are compared side by side.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

from domain.errors import Invalid, NotFound
from simulations import plots
from simulations.metrics import SUMMARY_KEYS

ROOMS_SHOWN = 6
AGENTS_SHOWN = 40
COMPARED = [("agent_turns", "agent turns"), ("score_mean", "mean measure"),
            ("output_tokens", "output tokens"), ("virtual_seconds", "virtual seconds")]
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1d2330; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.4rem; border-bottom: 2px solid #dde3ee; }
table { border-collapse: collapse; margin: .8rem 0; font-size: 13px; }
th, td { border: 1px solid #dde3ee; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f1f4f9; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eef1f6; }
figcaption { font-size: 13px; color: #56607a; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1rem; }
.transcript td.t { color: #56607a; white-space: nowrap; } .agent { color: #174ea6; }
.human { color: #7a3b00; } .warn { background: #fff6e0; border-left: 4px solid #f0b400;
padding: .5rem 1rem; } .gap td { text-align: center; color: #8a93a8; }
code { background: #f1f4f9; padding: 0 .25rem; }
"""


def write_report(folder: Path) -> Path:
    """Render ``folder/report.html`` from the simulation's manifest and metrics."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise NotFound(f"{folder} holds no finished simulation ({Path(error.filename).name} is "
                       "missing); run `salon simulate FILE` first") from None
    except json.JSONDecodeError as error:
        raise Invalid(f"{folder}: a simulation file is damaged ({error}); run it again") \
            from None
    path = folder / "report.html"
    path.write_text(render(manifest, metrics), encoding="utf-8")
    return path


def render(manifest: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The whole report as one HTML document."""
    measure = str(metrics.get("measure", "agreement"))
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>Simulation {escape(manifest['simulation'])}</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>Simulation <code>{escape(manifest['simulation'])}</code>: "
             f"{escape(manifest['scenario'])}</h1>"]
    if manifest.get("description"):
        parts.append(f"<p>{escape(manifest['description'])}</p>")
    parts.append(_facts(manifest))
    if manifest.get("warnings"):
        parts.append("<div class='warn'><strong>Warnings</strong><ul>" +
                     "".join(f"<li>{escape(w)}</li>" for w in manifest["warnings"]) +
                     "</ul></div>")
    variants = metrics.get("variants", [])
    runs = metrics.get("runs", [])
    if len(variants) > 1:
        parts.append(_comparison(variants))
    for variant in variants:
        mine = [r for r in runs if r.get("variant") == variant["index"] and r.get("agents")]
        parts.append(_variant(variant, mine, measure, len(variants) > 1))
    parts.append(_runs(manifest))
    parts.append("</body></html>")
    return "\n".join(parts)


def _image(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode()
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{escape(caption)}'>"
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _facts(manifest: dict[str, Any]) -> str:
    runs = manifest.get("runs", [])
    seeds = sorted({r["seed"] for r in runs})
    rows = [("scenario file", manifest.get("source", "")),
            ("status", manifest.get("status", "")),
            ("started / finished", f"{manifest.get('created_at')} / {manifest.get('finished_at')}"),
            ("runs", f"{len(runs)} ({len(manifest.get('variants', []))} sweep points × "
                     f"{manifest.get('repetitions')} repetitions)"),
            ("seeds", ", ".join(str(s) for s in seeds[:20]) + (" …" if len(seeds) > 20 else "")),
            ("measure", manifest.get("measure", "")),
            ("agent hosts", str(manifest.get("agent_hosts", 0)) +
             " (0: one process per agent)")]
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                               for k, v in rows) + "</table>"


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"


def _comparison(variants: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>#{v['index'] + 1} {escape(v['label'])}</th>" for v in variants)
    rows = []
    for key in SUMMARY_KEYS:
        cells = "".join(
            f"<td class='n'>{_number(v['summary']['totals'][key]['mean'])} ± "
            f"{_number(v['summary']['totals'][key]['sd'])}</td>" for v in variants)
        rows.append(f"<tr><th>{escape(key.replace('_', ' '))}</th>{cells}</tr>")
    stops = "".join("<td>" + escape(", ".join(f"{k}: {n}" for k, n in
                                               v["summary"]["stops"].items())) + "</td>"
                    for v in variants)
    rows.append(f"<tr><th>rooms stopped by</th>{stops}</tr>")
    figure = _image(plots.comparison(variants, COMPARED),
                    "Each sweep point's mean and standard deviation over its repetitions")
    return (f"<h2>Sweep compared</h2><table><tr><th>metric</th>{head}</tr>{''.join(rows)}"
            f"</table>{figure}")


def _variant(variant: dict[str, Any], runs: list[dict[str, Any]], measure: str,
             swept: bool) -> str:
    title = f"#{variant['index'] + 1} {variant['label']}" if swept else "Results"
    parts = [f"<h2>{escape(title)}</h2>"]
    summary = variant["summary"]
    parts.append(f"<p>{summary['finished']} of {summary['runs']} runs finished. Rooms "
                 "stopped by: " + escape(", ".join(f"{k} ({n})" for k, n in
                                                    summary["stops"].items()) or "—") + ".</p>")
    if not runs:
        parts.append("<p>No run of this sweep point finished; see the runs below.</p>")
        return "\n".join(parts)
    first = runs[0]
    figures = [_image(plots.speaking_share(runs), "Agent turns per agent and their share of "
                      "all agent turns (for many agents, how many agents took how many turns)"),
               _image(plots.conversation(first), "Agent turns as virtual time goes by "
                      f"(run {first['run']})"),
               _image(plots.measure(first, measure), f"The {measure} measure of each agent "
                      "message (dots) and its running mean (line)"),
               _image(plots.tokens(runs), "Tokens per agent, as the providers reported them"),
               _image(plots.latency(runs), "Wall-clock time from the message that called on "
                      "an agent to its reply")]
    parts.append("<div class='grid'>" + "".join(figures) + "</div>")
    parts.append(_agents_table(runs))
    parts.append(_transcripts(first, variant))
    return "\n".join(parts)


def _agents_table(runs: list[dict[str, Any]]) -> str:
    columns = [("messages", "turns"), ("share", "share"), ("failed_turns", "failed"),
               ("input_tokens", "tokens in"), ("output_tokens", "tokens out"),
               ("cost_usd", "cost $"), ("tool_calls", "tool calls"),
               ("memory.growth", "memory growth"), ("reply_latency_ms.p50", "latency p50 ms"),
               ("score_mean", "measure")]
    turns: dict[str, float] = {}
    for run in runs:
        for agent, stats in run["agents"].items():
            turns[agent] = turns.get(agent, 0.0) + float(stats["messages"])
    ranked = sorted(turns, key=lambda a: (-turns[a], a))
    agents = sorted(ranked[:AGENTS_SHOWN])
    rows = []
    for agent in agents:
        cells = []
        for key, _ in columns:
            values = []
            for run in runs:
                value: Any = run["agents"].get(agent)
                if value is None:
                    continue
                for part in key.split("."):
                    value = value[part]
                values.append(float(value))
            mean = sum(values) / len(values) if values else 0.0
            shown = f"{mean:.1%}" if key == "share" else _number(mean)
            cells.append(f"<td class='n'>{shown}</td>")
        tools: dict[str, int] = {}
        for run in runs:
            for tool, statuses in run["agents"].get(agent, {}).get("tools", {}).items():
                for status, count in statuses.items():
                    tools[f"{tool} {status}"] = tools.get(f"{tool} {status}", 0) + count
        used = ", ".join(f"{k}: {v}" for k, v in sorted(tools.items())) or "—"
        rows.append(f"<tr><th>{escape(agent)}</th>{''.join(cells)}<td>{escape(used)}</td></tr>")
    head = "".join(f"<th>{escape(label)}</th>" for _, label in columns)
    note = f"<p>Means over {len(runs)} run(s).</p>" if len(runs) > 1 else ""
    if len(ranked) > AGENTS_SHOWN:
        note += (f"<p>The {AGENTS_SHOWN} agents with the most turns of {len(ranked)}; "
                 "metrics.json has them all.</p>")
    return f"{note}<table><tr><th>agent</th>{head}<th>tools</th></tr>{''.join(rows)}</table>"


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _transcripts(run: dict[str, Any], variant: dict[str, Any]) -> str:
    parts = [f"<h3>Transcript excerpts (run <code>{escape(run['run'])}</code>, "
             f"seed {run['seed']})</h3>"]
    excerpt = int(variant.get("excerpt", 8))
    rooms = sorted(run["rooms"].items())
    for room, data in rooms[:ROOMS_SHOWN]:
        messages = data["transcript"]
        head_count = max(excerpt, 1)
        tail_count = max(excerpt // 2, 1)
        shown: list[dict[str, Any] | None] = list(messages)
        if len(messages) > head_count + tail_count:
            shown = [*messages[:head_count], None, *messages[-tail_count:]]
        rows = []
        for message in shown:
            if message is None:
                skipped = len(messages) - head_count - tail_count
                rows.append(f"<tr class='gap'><td colspan='3'>… {skipped} more "
                            "messages …</td></tr>")
                continue
            rows.append(f"<tr><td class='t'>{_clock(message['t'])}</td>"
                        f"<td class='{escape(message['kind'])}'>{escape(message['author'])}"
                        f"</td><td>{escape(message['text'])}</td></tr>")
        parts.append(f"<h4>{escape(room)} <small>(<code>{escape(data['name'])}</code>; "
                     f"stopped by {escape(data['stop'])}: {escape(data['stop_detail'])}; "
                     f"{len(messages)} messages)</small></h4>"
                     f"<table class='transcript'>{''.join(rows)}</table>")
    if len(rooms) > ROOMS_SHOWN:
        parts.append(f"<p>… and {len(rooms) - ROOMS_SHOWN} more rooms: every transcript is "
                     "in metrics.json, and every room in the event log.</p>")
    return "\n".join(parts)


def _runs(manifest: dict[str, Any]) -> str:
    rows = []
    for run in manifest.get("runs", []):
        stops = ", ".join(f"{room}: {o['stop']}" for room, o in run.get("outcomes", {}).items())
        rooms = " ".join(f"<code>{escape(n)}</code>" for n in run.get("rooms", {}).values())
        error = f"<br><strong>{escape(run['error'])}</strong>" if run.get("error") else ""
        wall = run.get("wall_seconds", {}).get("total")
        rows.append(f"<tr><td><code>{escape(run['run'])}</code></td>"
                    f"<td>#{run['variant'] + 1}</td><td class='n'>{run['seed']}</td>"
                    f"<td>{escape(run['status'])}{error}</td><td>{rooms}</td>"
                    f"<td>{escape(stops)}</td><td class='n'>"
                    f"{'' if wall is None else f'{wall:.1f}'}</td></tr>")
    return ("<h2>Runs</h2><p>Every run's rooms are ordinary rooms: <code>salon replay ROOM "
            "--at N</code>, <code>salon fork ROOM --at N</code>, <code>salon export room "
            "ROOM</code> work on them.</p><table><tr><th>run</th><th>sweep point</th>"
            "<th>seed</th><th>status</th><th>rooms</th><th>stopped by</th><th>wall s</th></tr>"
            + "".join(rows) + "</table>")
