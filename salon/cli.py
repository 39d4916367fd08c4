"""The ``salon`` command line."""

from __future__ import annotations

import fcntl
import json
import logging
import signal
import sys
import threading
import tomllib
from pathlib import Path
from typing import Any, NoReturn

import click

from domain.errors import Invalid, SalonError
from infra.settings import Settings
from projections.cli import attach as attach_projections
from salon.client import SalonClient, find_installation


def fail(error: SalonError) -> NoReturn:
    click.echo(f"error: {error.message}", err=True)
    sys.exit(error.exit_status)


def call(frame: dict[str, Any]) -> dict[str, Any]:
    """Send one request to the running Salon; exit with the error's status if it fails."""
    try:
        url, token = find_installation(Settings().home.resolve())
        with SalonClient(url, token) as client:
            return client.request(frame)
    except SalonError as error:
        fail(error)


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c) or "")) for r in rows)) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(str(row.get(c) or "").ljust(widths[c]) for c in columns))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Salon: rooms where humans and AI agents chat, on an append-only event log.

    `salon up` runs everything; the other commands talk to the running Salon found through
    SALON_HOME (default ./.salon), or to SALON_URL with SALON_TOKEN.
    """


@main.command()
@click.option("--host", default=None, help="interface to listen on (SALON_HOST, 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port to listen on (SALON_PORT, 8765)")
@click.option("--no-demo", is_flag=True, help="do not open the demo room with two agents")
def up(host: str | None, port: int | None, no_demo: bool) -> None:
    """Start PostgreSQL, Valkey, Ray and the gateway; print the login URL; run until stopped."""
    from salon.platform import Platform

    updates: dict[str, Any] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if no_demo:
        updates["demo"] = False
    settings = Settings().model_copy(update=updates)
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    lock = (home / "salon.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        running = home / "run.json"
        where = json.loads(running.read_text()) if running.exists() else {}
        click.echo(f"error: Salon is already running on {home} (pid {where.get('pid', '?')}, "
                   f"{where.get('url', 'starting')}); stop it first or set SALON_HOME "
                   "to another folder", err=True)
        sys.exit(1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    platform = Platform(settings)
    try:
        click.echo(f"starting Salon in {home} …")
        running = platform.start()
        # After start: Ray installs handlers of its own while it starts.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        platform.write_runfile()
        click.echo(f"Salon is up: {running.http_url}")
        click.echo(f"log in as admin: {running.login_url}")
        click.echo(f"WebSocket: {running.ws_url}   (Ctrl-C stops)", nl=True)
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
        click.echo("stopping Salon …")
    finally:
        platform.stop()
        lock.close()
    click.echo("Salon stopped.")


@main.group()
def rooms() -> None:
    """Create and list rooms."""


@rooms.command("create")
@click.argument("name")
@click.option("--topic", default="", help="what the room is about")
@click.option("--private", is_flag=True, help="only members (and admins) may see it")
def rooms_create(name: str, topic: str, private: bool) -> None:
    """Create room NAME (lowercase letters, digits, '-', '_')."""
    result = call({"type": "create_room", "name": name, "topic": topic,
                   "visibility": "private" if private else "public"})
    click.echo(f"created room {result['room']}")


@rooms.command("policy")
@click.argument("room")
@click.option("--mode", type=click.Choice(["free", "round_robin", "selector"]), required=True,
              help="free: agents answer when addressed (or on their interests); round_robin: "
                   "agents take turns after each person; selector: a moderator agent picks")
@click.option("--max-agent-streak", type=click.IntRange(0, 50), default=3, show_default=True,
              help="agent messages in a row before agents stop answering agents")
@click.option("--selector", default=None, help="the moderator agent, for selector mode")
def rooms_policy(room: str, mode: str, max_agent_streak: int, selector: str | None) -> None:
    """Set how agents take turns in ROOM (its owner or an admin)."""
    call({"type": "set_policy", "room": room, "mode": mode,
          "max_agent_streak": max_agent_streak, "selector": selector})
    click.echo(f"{room}: {mode}, at most {max_agent_streak} agent messages in a row")


def guard_options(command: Any) -> Any:
    """The options ``rooms guard`` and ``agents guard`` share."""
    options = [
        click.option("--policy", "mode", default=None,
                     type=click.Choice(["off", "flag", "block", "redact"]),
                     help="flag: let flagged texts through marked untrusted; block: stop "
                          "them; redact: mask secrets and PII (withhold injections)"),
        click.option("--check", "checks", multiple=True,
                     type=click.Choice(["injection", "secrets", "pii", "content"]),
                     help="a check to run (repeat; default all four)"),
        click.option("--category", "categories", multiple=True,
                     type=click.Choice(["violence", "self_harm", "hate", "sexual", "weapons"]),
                     help="a content-filter category (repeat; default all)"),
        click.option("--judge", default=None, metavar="PROVIDER:MODEL",
                     help="the model judging injection (default: a pattern heuristic)"),
        click.option("--judge-script", multiple=True,
                     help="for a scripted judge: its reply lines (repeat)"),
        click.option("--judge-timeout", type=click.FloatRange(0.01, 60), default=10.0,
                     show_default=True, help="seconds before the judge fails closed"),
        click.option("--threshold", type=click.FloatRange(0, 1), default=0.5,
                     show_default=True, help="judge score from which a text is flagged"),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def guard_policy(mode: str | None, checks: tuple[str, ...], categories: tuple[str, ...],
                 judge: str | None, judge_script: tuple[str, ...], judge_timeout: float,
                 threshold: float) -> dict[str, Any]:
    """The ``policy`` of a guard frame from the shared options."""
    if mode is None:
        fail(Invalid("say what the guard does: --policy off|flag|block|redact"))
    found: dict[str, Any] = {"mode": mode}
    if checks:
        found["checks"] = list(checks)
    if categories:
        found["categories"] = list(categories)
    if judge is not None:
        provider, _, model = judge.partition(":")
        if not provider or not model:
            fail(Invalid(f"--judge {judge!r} should read PROVIDER:MODEL, e.g. "
                         "scripted:judge or ollama:llama3.2"))
        found["judge"] = {"provider": provider, "model": model, "script": list(judge_script),
                          "timeout_seconds": judge_timeout, "threshold": threshold}
    return found


@rooms.command("guard")
@click.argument("room")
@guard_options
def rooms_guard(room: str, **options: Any) -> None:
    """Set ROOM's guardrail policy (its owner or an admin)."""
    result = call({"type": "set_guard", "room": room, "policy": guard_policy(**options)})
    guard = result["guard"]
    click.echo(f"{room}: guardrails {guard['mode']} ({', '.join(guard['checks'])})")


@rooms.command("add-member")
@click.argument("room")
@click.argument("user")
def rooms_add_member(room: str, user: str) -> None:
    """Add person USER to ROOM (its owner or an admin): how private rooms get members."""
    result = call({"type": "add_member", "room": room, "user": user})
    click.echo(f"added {result['user']} to {result['room']}")


@rooms.command("list")
def rooms_list() -> None:
    """List the rooms you can see."""
    table(call({"type": "list_rooms"})["rooms"], ["name", "visibility", "owner_id", "topic"])


@main.group()
def agents() -> None:
    """Create, inspect and control agents; their long-term memory (and its upkeep) and facts."""


def definition_file(path: str) -> dict[str, Any]:
    """An agent definition read from a TOML (or JSON) file; exits 2 with the reason if not."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(Invalid(f"{path} does not exist"))
    except (OSError, UnicodeDecodeError) as error:
        fail(Invalid(f"{path} cannot be read as UTF-8 text: {error}"))
    if len(text) > 1_000_000:
        fail(Invalid(f"{path} is {len(text):,} characters; a definition has at most 1,000,000"))
    try:
        found: Any = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        fail(Invalid(f"{path} is not valid {'JSON' if file.suffix == '.json' else 'TOML'}: "
                     f"{error}"))
    if isinstance(found, dict) and isinstance(found.get("agent"), dict):
        found = found["agent"]  # an [agent] table
    if not isinstance(found, dict):
        fail(Invalid(f"{path} must hold the definition's fields (a table)"))
    return dict(found)


def set_field(definition: dict[str, Any], item: str) -> None:
    """Apply one ``--set FIELD=VALUE`` (dotted FIELD for nested tables) to ``definition``."""
    path, eq, raw = item.partition("=")
    keys = path.split(".")
    if not eq or not all(k.strip() for k in keys) or len(keys) > 4:
        fail(Invalid(f"--set {item!r} is not FIELD=VALUE (e.g. memory.context=vector)"))
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    table = definition
    for key in keys[:-1]:
        found = table.setdefault(key, {})
        if not isinstance(found, dict):
            fail(Invalid(f"--set {item!r}: {key} is not a table of fields"))
        table = found
    table[keys[-1]] = value


@agents.command("create")
@click.argument("name", required=False)
@click.option("--file", "file_", default=None, metavar="AGENT.toml",
              help="a definition file (TOML, or JSON by its .json suffix) with any field of "
                   "the definition; the options below and NAME override it")
@click.option("--template", default=None,
              help="start from a template: assistant, rag_assistant, moderator, debater, "
                   "support_agent, property_manager")
@click.option("--role", default=None, help="who the agent is, e.g. 'a patient tutor'")
@click.option("--goal", default=None, help="what it is trying to achieve")
@click.option("--interest", "interests", multiple=True, help="a topic it cares about; repeatable")
@click.option("--chattiness", type=click.FloatRange(0, 1), default=None,
              help="0 speaks only when addressed; 1 whenever its interests come up")
@click.option("--tool", "tools_", multiple=True, help="a tool it may use; repeatable")
@click.option("--permission", "permissions", multiple=True,
              help="a permission it is granted (e.g. network, code); repeatable")
@click.option("--persona", default=None, help="more about its character and style")
@click.option("--provider", default=None,
              help="model provider: anthropic, openai, groq, xai, deepseek, gemini, together, "
                   "ollama, vllm, openai-compatible, mlx, transformers, vllm-local, scripted "
                   "(default scripted); any but scripted needs --model")
@click.option("--model", default=None, help="model name (see `salon models list`)")
@click.option("--fallback", "fallbacks", multiple=True,
              help="a backup as PROVIDER:MODEL[@BASE_URL], tried in order when the one "
                   "before fails; repeatable")
@click.option("--base-url", default=None,
              help="the server's /v1 URL, for openai-compatible or a self-hosted preset")
@click.option("--api-key-env", default=None,
              help="the environment variable holding this agent's key (a secret reference; "
                   "the key itself is never stored)")
@click.option("--knowledge", default=None,
              help="the knowledge-base collection its search_knowledge_base tool searches")
@click.option("--opening-line", default=None, help="what it says when it joins a room")
@click.option("--script", "script", multiple=True,
              help="a scripted reply ({author}, {text}, {agent} are filled in); repeatable")
@click.option("--cooldown", type=click.FloatRange(min=0), default=None,
              help="seconds between its unaddressed remarks (manners)")
@click.option("--idle-after", type=click.FloatRange(min=0, min_open=True), default=None,
              help="speak first when the room has been quiet this many seconds")
@click.option("--every", type=click.FloatRange(min=0, min_open=True), default=None,
              help="speak first on a schedule, every this many seconds")
@click.option("--set", "settings_", multiple=True, metavar="FIELD=VALUE",
              help="any field, dotted for nested ones: memory.context=vector, "
                   "memory.recall=3, personality.tone=dry, personality.humour=0.8; "
                   "VALUE is JSON when it parses as JSON, else text; repeatable")
@click.option("--room", "rooms_", multiple=True, help="add the agent to this room; repeatable")
def agents_create(name: str | None, file_: str | None, template: str | None, role: str | None,
                  goal: str | None,
                  interests: tuple[str, ...], chattiness: float | None, tools_: tuple[str, ...],
                  permissions: tuple[str, ...], persona: str | None, provider: str | None,
                  model: str | None, fallbacks: tuple[str, ...], base_url: str | None,
                  api_key_env: str | None, knowledge: str | None, opening_line: str | None,
                  script: tuple[str, ...], cooldown: float | None, idle_after: float | None,
                  every: float | None, settings_: tuple[str, ...],
                  rooms_: tuple[str, ...]) -> None:
    """Create agent NAME (or the one --file defines), optionally adding it to rooms."""
    definition: dict[str, Any] = definition_file(file_) if file_ else {}
    if name is not None:
        definition["name"] = name
    if not isinstance(definition.get("name"), str):
        fail(Invalid("name the agent: give NAME, or a name field in --file"))
    name = str(definition["name"])
    if provider is not None:
        definition["provider"] = provider
        if provider != "scripted" and model is None and "model" not in definition:
            fail(Invalid(f"--provider {provider} needs --model too (`salon models list "
                         f"--provider {provider}` lists its models)"))
    definition.setdefault("provider", "scripted")
    for key, value in (("template", template), ("role", role), ("goal", goal),
                       ("persona", persona), ("model", model), ("opening_line", opening_line),
                       ("chattiness", chattiness), ("base_url", base_url),
                       ("api_key_env", api_key_env), ("knowledge", knowledge),
                       ("cooldown_seconds", cooldown), ("idle_after_seconds", idle_after),
                       ("every_seconds", every)):
        if value is not None:
            definition[key] = value
    for item in settings_:
        set_field(definition, item)
    for key, values in (("script", script), ("interests", interests), ("tools", tools_),
                        ("permissions", permissions), ("fallbacks", fallbacks)):
        if values:
            definition[key] = list(values)
    call({"type": "create_agent", "definition": definition})
    click.echo(f"created agent {name}")
    for room in rooms_:
        call({"type": "add_agent", "room": room, "agent": name})
        click.echo(f"added {name} to {room}")


@main.group()
def models() -> None:
    """The model registry: context windows, limits, tool support and prices."""


@models.command("list")
@click.option("--provider", default=None, help="only this provider's models")
def models_list(provider: str | None) -> None:
    """List the models Salon knows (unlisted models work with conservative defaults)."""
    from infra.llm.models import models as registered

    def limit(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    rows = [{"provider": m.provider, "model": m.name, "context": f"{m.context_window:,}",
             "max_out": f"{m.max_output:,}", "rpm": limit(m.rpm), "tpm": limit(m.tpm),
             "tools": "yes" if m.tools else "prompted", "vision": "yes" if m.vision else "no",
             "in_$/M": f"{m.input_price:g}", "out_$/M": f"{m.output_price:g}"}
            for m in registered(provider)]
    if provider and not rows:
        fail(Invalid(f"no models are registered for provider {provider!r}"))
    table(rows, ["provider", "model", "context", "max_out", "rpm", "tpm", "tools", "vision",
                 "in_$/M", "out_$/M"])


@agents.command("redefine")
@click.argument("file_", metavar="AGENT.toml")
def agents_redefine(file_: str) -> None:
    """Replace an agent's definition with the one in a file (its owner or an admin); the
    agent's name comes from the file."""
    definition = definition_file(file_)
    if not isinstance(definition.get("name"), str):
        fail(Invalid(f"{file_} has no name field: it names the agent to redefine"))
    result = call({"type": "redefine_agent", "definition": definition})
    click.echo(f"redefined agent {definition['name']} (version {result.get('version', '?')})")


@agents.command("list")
def agents_list() -> None:
    """List the agents."""
    table(call({"type": "list_agents"})["agents"], ["name", "provider", "model", "role"])


@agents.command("show")
@click.argument("agent")
def agents_show(agent: str) -> None:
    """Show AGENT's status, definition and compiled system prompt."""
    info = call({"type": "show_agent", "agent": agent})
    click.echo(f"{info['name']} ({info['status']}, definition v{info['version']}, "
               f"owner {info['owner_id']}, {info['turns']} turns)")
    click.echo(json.dumps(info["definition"], indent=2))
    click.echo("--- system prompt ---")
    click.echo(info["system_prompt"])


def _command(agent: str, command: str) -> None:
    result = call({"type": "command", "agent": agent, "command": command})
    click.echo(f"{result['agent']} is {result['status']}")


@agents.command("pause")
@click.argument("agent")
def agents_pause(agent: str) -> None:
    """Pause AGENT: its turn in flight is cancelled; it posts nothing until resumed."""
    _command(agent, "pause")


@agents.command("resume")
@click.argument("agent")
def agents_resume(agent: str) -> None:
    """Resume a paused or stopped AGENT."""
    _command(agent, "resume")


@agents.command("stop")
@click.argument("agent", required=False)
@click.option("--all", "everyone", is_flag=True, help="emergency stop: every agent, at once")
@click.option("--reason", default="", help="why (recorded with the stop)")
def agents_stop(agent: str | None, everyone: bool, reason: str) -> None:
    """Stop AGENT now, or every agent with --all (the emergency stop; admins only)."""
    if everyone == (agent is not None):
        click.echo("error: name one AGENT or pass --all", err=True)
        sys.exit(2)
    if everyone:
        stopped = call({"type": "emergency_stop", "reason": reason})["stopped"]
        click.echo(f"stopped {len(stopped)} agents: {', '.join(stopped) or '(none)'}")
    else:
        _command(str(agent), "stop")


@agents.command("memory")
@click.argument("agent")
@click.option("--query", default=None,
              help="search: the best memories for this text, scores split into recency, "
                   "importance and relevance")
@click.option("--kind", type=click.Choice(["episodic", "semantic", "procedural", "social"]),
              default=None, help="only memories of this kind (listing), or the kind to --add")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--add", "content", default=None, help="record this as a memory of AGENT")
@click.option("--importance", type=click.IntRange(1, 10), default=None,
              help="with --add: its importance 1-10 (default: the heuristic's rating)")
@click.option("--delete", "memory_id", default=None, help="forget the memory with this id")
@click.option("--upkeep", is_flag=True,
              help="run upkeep now: merge near-duplicates, forget what decayed, apply "
                   "retention; prints what it merged and forgot")
def agents_memory(agent: str, query: str | None, kind: str | None, limit: int,
                  content: str | None, importance: int | None, memory_id: str | None,
                  upkeep: bool) -> None:
    """List, search, add to or delete from AGENT's long-term memory, or run its upkeep now
    (owner or admin)."""
    if sum((content is not None, memory_id is not None, upkeep, query is not None)) > 1:
        fail(Invalid("give one of --add, --delete, --upkeep or --query"))
    if upkeep:
        _print_upkeep(call({"type": "memory_upkeep", "agent": agent}))
        return
    if content is not None:
        added = call({"type": "add_memory", "agent": agent, "content": content,
                      "kind": kind or "semantic", "importance": importance})
        click.echo(f"remembered {added['memory_id']}")
        return
    if memory_id is not None:
        call({"type": "delete_memory", "agent": agent, "memory_id": memory_id})
        click.echo(f"forgot {memory_id}")
        return
    frame: dict[str, Any] = {"type": "memories", "agent": agent, "limit": limit}
    if query:
        frame["query"] = query
    if kind:
        frame["kind"] = kind
    found = call(frame)["memories"]
    rows = [{"id": m["id"], "kind": m["kind"], "importance": f"{m['importance']:g}",
             "accessed": m["access_count"], "content": _clip(m["content"], 60),
             **({"score": f"{m['score']:.3f}", "recency": f"{m['parts']['recency']:.3f}",
                 "imp_part": f"{m['parts']['importance']:.3f}",
                 "relevance": f"{m['parts']['relevance']:.3f}"} if query else {})}
            for m in found]
    columns = ["id", "kind", "importance", "accessed", "content"]
    if query:
        columns = ["score", "recency", "imp_part", "relevance", *columns]
    table(rows, columns)


def _print_upkeep(done: dict[str, Any]) -> None:
    texts: dict[str, str] = done.get("contents") or {}

    def shown(memory_id: str) -> str:
        return f"{memory_id} {_clip(texts[memory_id], 60)!r}" if memory_id in texts \
            else memory_id

    click.echo(f"{done['agent']}: merged {done['merged']}, forgot {done['forgotten']} "
               f"(decayed) and {done['past_retention']} (past retention)")
    for merge in done["merges"]:
        for merged in merge["merged_ids"]:
            click.echo(f"merged  {shown(merged)} into {shown(merge['kept_id'])} "
                       f"(cosine {merge['similarity']:.3f})")
    for memory_id in done["forgotten_ids"]:
        click.echo(f"forgot  {shown(memory_id)} (decayed below the floor)")
    for memory_id in done["retired_ids"]:
        click.echo(f"forgot  {shown(memory_id)} (past the retention limit)")
    if done.get("more"):
        click.echo("more remains than one pass takes; run it again")


@agents.command("facts")
@click.argument("agent")
@click.option("--about", default=None, help="admins: facts about this user (default: you)")
@click.option("--forget", "fact_id", default=None, help="delete the fact with this id")
def agents_facts(agent: str, about: str | None, fact_id: str | None) -> None:
    """What AGENT remembers about you (or, for admins, about --about); --forget deletes one."""
    if fact_id is not None:
        call({"type": "forget_fact", "agent": agent, "fact_id": fact_id, "about": about})
        click.echo(f"forgot {fact_id}")
        return
    found = call({"type": "facts", "agent": agent, "about": about})
    table(found["facts"], ["fact_id", "category", "key", "value"])


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "\u2026"


@main.group()
def knowledge() -> None:
    """Knowledge bases: documents agents search with the search_knowledge_base tool."""


@knowledge.command("add")
@click.argument("collection")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--title", default=None, help="the document's title (default: the file name)")
def knowledge_add(collection: str, file: str, title: str | None) -> None:
    """Add FILE (text; '-' reads standard input) to COLLECTION, replacing a same-titled one."""
    with click.open_file(file, encoding="utf-8") as handle:
        try:
            text = handle.read()
        except UnicodeDecodeError:
            fail(Invalid(f"{file} is not UTF-8 text"))
    from gateway.protocol import MAX_DOCUMENT_CHARS

    if len(text) > MAX_DOCUMENT_CHARS:
        fail(Invalid(f"{file} has {len(text):,} characters; a document may have at most "
                     f"{MAX_DOCUMENT_CHARS:,}: split it into several"))
    name = title or ("stdin" if file == "-" else file.rsplit("/", 1)[-1])
    added = call({"type": "add_document", "collection": collection, "title": name,
                  "text": text})
    click.echo(f"added {name!r} to {collection} in {added['chunks']} chunks")


@knowledge.command("list")
@click.argument("collection")
def knowledge_list(collection: str) -> None:
    """List the documents of COLLECTION."""
    table(call({"type": "knowledge", "collection": collection})["documents"],
          ["title", "chunks"])


@knowledge.command("share")
@click.argument("collection")
@click.argument("readers", nargs=-1, required=True)
def knowledge_share(collection: str, readers: tuple[str, ...]) -> None:
    """Let READERS (user names; '*' for everyone) search COLLECTION (admins).

    The list replaces the collection's readers; its owner and admins always may."""
    result = call({"type": "share_knowledge", "collection": collection,
                   "readers": list(readers)})
    click.echo(f"{result['collection']}: readers {', '.join(result['readers'])}")


@knowledge.command("search")
@click.argument("collection")
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 50), default=5, show_default=True)
def knowledge_search(collection: str, query: str, k: int) -> None:
    """The passages of COLLECTION nearest QUERY, by meaning."""
    found = call({"type": "knowledge", "collection": collection, "query": query, "k": k})
    rows = [{"score": f"{p['score']:.3f}", "title": p["title"], "passage": _clip(p["chunk"], 70)}
            for p in found["passages"]]
    table(rows, ["score", "title", "passage"])


@agents.command("guard")
@click.argument("agent")
@guard_options
@click.option("--allow-flagged", "allow", multiple=True, metavar="TOOL",
              help="a privileged tool that may still run after a flagged input ('*': all)")
@click.option("--clear", is_flag=True, help="remove the override (the rooms' policies alone)")
def agents_guard(agent: str, allow: tuple[str, ...], clear: bool, **options: Any) -> None:
    """Tighten the guardrails for AGENT in every room (its owner or an admin)."""
    found: dict[str, Any] | None = None
    if not clear:
        found = {**guard_policy(**options), "allow_flagged_tools": list(allow)}
    result = call({"type": "set_agent_guard", "agent": agent, "policy": found})
    guard = result["guard"]
    click.echo(f"{agent}: no guardrail override" if guard is None else
               f"{agent}: guardrails at least {guard['mode']}"
               + (f", allowed after a flag: {', '.join(guard['allow_flagged_tools'])}"
                  if guard["allow_flagged_tools"] else ""))


@agents.command("add")
@click.argument("agent")
@click.argument("room")
def agents_add(agent: str, room: str) -> None:
    """Add AGENT to ROOM."""
    call({"type": "add_agent", "room": room, "agent": agent})
    click.echo(f"added {agent} to {room}")


@main.command()
@click.argument("room")
@click.argument("text")
@click.option("--reply-to", default=None, help="id of the message this answers")
def say(room: str, text: str, reply_to: str | None) -> None:
    """Post TEXT in ROOM as the token's user; prints the new position."""
    frame: dict[str, Any] = {"type": "say", "room": room, "text": text}
    if reply_to:
        frame["reply_to"] = reply_to
    result = call(frame)
    click.echo(f"posted {result['message_id']} at position {result['position']}")


@main.command()
@click.argument("room")
@click.option("--at", "at", type=click.IntRange(min=1), required=True,
              help="the position to look at")
def replay(room: str, at: int) -> None:
    """Show ROOM as it stood at position --at: its state and transcript."""
    past = call({"type": "replay", "room": room, "at": at})
    state = past["state"]
    click.echo(f"{state['name']} at position {state['position']}: {len(state['members'])} "
               f"members, policy {state['policy']['mode']}"
               + (f", forked from {state['forked_from']['room']} at "
                  f"{state['forked_from']['at']}" if state["forked_from"] else ""))
    for line in past["transcript"]:
        click.echo(f"{line['position']:>6}  {line['author_id']}: {line['text']}")


@main.command()
@click.argument("room")
@click.option("--at", "at", type=click.IntRange(min=1), default=None,
              help="fork after this position")
@click.option("--message", "message_id", default=None, help="fork just after this message id")
@click.option("--name", default=None, help="name of the new room (default ROOM-fork-xxxx)")
@click.option("--override", "overrides", multiple=True, metavar="AGENT.FIELD=VALUE",
              help="what-if: run AGENT with FIELD changed in the fork only (e.g. "
                   "bot.model=gpt-4o); repeatable")
@click.option("--keep-redacted", is_flag=True,
              help="keep copies of messages ROOM redacts later (by default they follow)")
def fork(room: str, at: int | None, message_id: str | None, name: str | None,
         overrides: tuple[str, ...], keep_redacted: bool) -> None:
    """Open a new room that starts as ROOM up to a position (or a message)."""
    changes: dict[str, dict[str, Any]] = {}
    for item in overrides:
        target, eq, value = item.partition("=")
        agent, dot, field = target.partition(".")
        if not eq or not dot or not agent or not field:
            click.echo(f"error: --override {item!r} is not AGENT.FIELD=VALUE", err=True)
            sys.exit(2)
        try:
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        changes.setdefault(agent, {})[field] = parsed
    frame: dict[str, Any] = {"type": "fork", "room": room}
    if keep_redacted:
        frame["keep_redacted"] = True
    for key, val in (("at", at), ("message_id", message_id), ("name", name)):
        if val is not None:
            frame[key] = val
    result = call(frame)
    click.echo(f"forked {room} at {result['at']} into {result['room']}")
    for agent, fields in changes.items():
        call({"type": "override", "room": result["room"], "agent": agent, "changes": fields})
        click.echo(f"  {agent} runs with {', '.join(fields)} changed there")


@main.command()
@click.argument("room")
@click.option("--name", default=None, help="name of the new room (default ROOM-rerun-xxxx)")
def rerun(room: str, name: str | None) -> None:
    """Re-run ROOM from its recording: agents replay what they said and what tools returned."""
    frame: dict[str, Any] = {"type": "rerun", "room": room}
    if name:
        frame["name"] = name
    result = call(frame)
    same = "identical" if result["transcript_equal"] else "DIFFERENT"
    click.echo(f"re-ran {room} into {result['room']}: transcript {same}")
    if not result["transcript_equal"]:
        sys.exit(1)


@main.command()
@click.argument("room")
@click.argument("other")
def diff(room: str, other: str) -> None:
    """Show where ROOM and OTHER (say, a room and its fork) part."""
    result = call({"type": "diff", "room": room, "other": other})
    click.echo(f"shared up to position {result['shared_up_to']}")
    for label, key in ((room, "room_only"), (other, "other_only")):
        click.echo(f"--- only in {label} ---")
        for e in result[key]:
            detail = f"{e.get('author_id')}: {e.get('text')}" if "text" in e else e["kind"]
            click.echo(f"{e['position']:>6}  {detail}")


@main.command("export")
@click.argument("kind", type=click.Choice(["room", "agent"]))
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="write here instead of standard output")
def export_(kind: str, name: str, output: str | None) -> None:
    """Export a room or an agent as JSONL with a schema version and checksums."""
    data = call({"type": "export", "kind": kind, "name": name})["data"]
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(data)
        click.echo(f"wrote {kind} {name} to {output}")
    else:
        click.echo(data, nl=False)


@main.command("import")
@click.argument("path", type=click.File("r", encoding="utf-8"))
def import_(path: Any) -> None:
    """Import an export file (all of it or nothing; damaged files are refused)."""
    result = call({"type": "import", "data": path.read()})
    click.echo(f"imported {result['kind']} {result['name']} ({result['position']} events)")


@main.group()
def token() -> None:
    """Issue and revoke login tokens."""


@token.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="make NAME an admin (when the user is new)")
@click.option("--days", type=click.FloatRange(min=0, min_open=True, max=3650),
              help="the token expires after this many days")
def token_create(name: str, admin: bool, days: float | None) -> None:
    """Issue a token for user NAME (registering the user if new); admins only."""
    frame: dict[str, Any] = {"type": "create_token", "user": name,
                             "role": "admin" if admin else "member"}
    if days is not None:
        frame["days"] = days
    result = call(frame)
    click.echo(result["token"])


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke every token of user NAME; their open connections close at once. Admins only."""
    result = call({"type": "revoke_token", "user": name})
    click.echo(f"revoked {result['revoked']} token(s) of {name}; closed {result['closed']} "
               "connection(s)")


@main.command("redact")
@click.argument("room")
@click.argument("message_id")
@click.option("--reason", default=None, help="why (recorded, shown to no one but the log)")
def redact(room: str, message_id: str, reason: str | None) -> None:
    """Take back message MESSAGE_ID of ROOM: its author, the room's owner or an admin.

    The text is shown to no one again (history, replay, exports, threads, agents' memory);
    forks that copied it follow unless their owner keeps copies."""
    frame: dict[str, Any] = {"type": "redact", "room": room, "message_id": message_id}
    if reason is not None:
        frame["reason"] = reason
    result = call(frame)
    forks = f" and in {', '.join(result['forks'])}" if result["forks"] else ""
    click.echo(f"redacted message {message_id} (position {result['message_position']}) in "
               f"{room}{forks}")


def _forgot(result: dict[str, Any]) -> None:
    click.echo(f"forgot {result['user']}: {result['keys_destroyed']} key(s) destroyed, "
               f"{result['rooms']} room(s) purged, {result['tokens_revoked']} token(s) revoked")


@main.command("forget-me")
@click.option("--yes", "confirm", default=None, metavar="YOUR_NAME",
              help="confirm with your own user name instead of answering the prompt")
def forget_me(confirm: str | None) -> None:
    """Erase everything you said, everywhere, for good; your tokens stop working."""
    me = call({"type": "whoami"})["user"]
    if confirm is None:
        confirm = click.prompt(f"This erases everything {me} said and cannot be undone. "
                               "Type your user name to go on")
    result = call({"type": "forget_me", "confirm": confirm})
    _forgot(result)


@main.group()
def users() -> None:
    """People: erasure."""


@users.command("forget")
@click.argument("name")
def users_forget(name: str) -> None:
    """Erase everything NAME said (admins): their data key is destroyed; their tokens stop."""
    result = call({"type": "forget_user", "user": name})
    _forgot(result)


@main.group()
def keys() -> None:
    """The master key that wraps the data keys sealing people's words."""


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-wrap every data key under a new master key (admins); the key file is replaced."""
    result = call({"type": "rotate_keys"})
    click.echo(f"re-wrapped {result['rewrapped']} data key(s) under master key "
               f"{result['master']}")


@main.command("grant")
@click.option("--user", "user", help="the member who may hand these to agents they own")
@click.option("--agent", "agent", help="the agent that holds these")
@click.option("--permission", "permissions", multiple=True, help="e.g. code, network")
@click.option("--host", "hosts", multiple=True, help="a host http_get may fetch from")
@click.option("--provider", "providers", multiple=True, help="a paid provider, e.g. openai")
@click.option("--endpoint", "endpoints", multiple=True,
              help="an endpoint named in SALON_ENDPOINTS")
def grant(user: str | None, agent: str | None, permissions: tuple[str, ...],
          hosts: tuple[str, ...], providers: tuple[str, ...],
          endpoints: tuple[str, ...]) -> None:
    """Set the capabilities a user or an agent holds (replacing earlier grants). Admins only.

    With no capability options, takes every grant away.
    """
    if (user is None) == (agent is None):
        fail(Invalid("give either --user NAME or --agent NAME"))
    frame: dict[str, Any] = {"type": "grant", "capabilities": {
        "permissions": list(permissions), "hosts": list(hosts), "providers": list(providers),
        "endpoints": list(endpoints)}}
    frame["user" if user else "agent"] = user or agent
    result = call(frame)
    held = "; ".join(f"{k}: {', '.join(v)}" for k, v in result["capabilities"].items() if v)
    click.echo(f"{user or agent} holds {held or 'nothing'}")


@main.command("consent")
@click.argument("memory", required=False, type=click.Choice(["on", "off"]))
@click.option("--room", default=None, help="only in this room (default: everywhere)")
@click.option("--mine", is_flag=True, help="list what agents remember about you")
def consent(memory: str | None, room: str | None, mine: bool) -> None:
    """Whether agents may form memories and facts about you (the token's user): on or off,
    by default or in --room R. Off deletes what they hold about you there. With no argument,
    shows your settings."""
    if mine:
        found = call({"type": "my_memories"})
        table(found["memories"], ["id", "agent", "kind", "room", "content"])
        table(found["facts"], ["fact_id", "agent", "key", "value", "room"])
        return
    if memory is None:
        if room is not None:
            fail(Invalid("--room needs on or off"))
        result = call({"type": "consent"})
    else:
        frame: dict[str, Any] = {"type": "set_consent", "memory": memory}
        if room is not None:
            frame["room"] = room
        result = call(frame)
    rooms = ", ".join(f"{r}: {v}" for r, v in result["rooms"].items())
    click.echo(f"{result['user']}: memory {result['memory']} by default"
               + (f"; {rooms}" if rooms else ""))


def _simulate_group() -> click.Group:
    from salon.simulate import simulation_platform
    from simulations.cli import simulate_group

    return simulate_group(simulation_platform)


main.add_command(_simulate_group())


attach_projections(main)  # salon projections | jobs | threads | audit (projections/cli.py)

if __name__ == "__main__":
    main()
