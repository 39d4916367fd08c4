"""Commands for read models, jobs and the audit log: ``salon projections``, ``salon jobs``,
``salon threads``, ``salon audit``. They ask the running Salon over HTTP (``projections.http``)
as its admin, found like every other command: ``SALON_URL`` and ``SALON_TOKEN``, or ``SALON_HOME``'s
``run.json`` and ``admin.token``.

Attach them to the ``salon`` group with ``attach(main)``.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlencode, urlsplit

import click

from domain import errors
from infra.settings import Settings

CODES: dict[str, type[errors.SalonError]] = {
    cls.code: cls for cls in (errors.Invalid, errors.NotFound, errors.Forbidden, errors.Conflict,
                              errors.RateLimited, errors.Unavailable, errors.Unauthenticated)
}


def installation(home: Path) -> tuple[str, str]:
    """(HTTP base URL, admin token) of the running Salon, or Unavailable / Unauthenticated."""
    url = os.environ.get("SALON_URL")
    token = os.environ.get("SALON_TOKEN")
    if url is None:
        runfile = home / "run.json"
        if not runfile.exists():
            raise errors.Unavailable(f"no Salon is running on {home}; start one with `salon up` "
                                     "(or set SALON_URL and SALON_TOKEN)")
        url = str(json.loads(runfile.read_text())["url"])
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    base = f"{scheme}://{parts.netloc}"
    if token is None:
        token_file = home / "admin.token"
        if not token_file.exists():
            raise errors.Unauthenticated(f"no token: set SALON_TOKEN (none in {token_file})")
        token = token_file.read_text().strip()
    return base, token


def fetch(path: str, **params: Any) -> bytes:
    """GET ``path`` of the running Salon with the admin token; Salon errors are raised."""
    base, token = installation(Settings().home.resolve())
    query = urlencode({"token": token, **{k: v for k, v in params.items() if v is not None}})
    try:
        with urllib.request.urlopen(f"{base}{path}?{query}", timeout=300) as answer:  # noqa: S310
            return bytes(answer.read())
    except urllib.error.HTTPError as failed:
        try:
            body = json.loads(failed.read())
            raise CODES.get(body.get("error"), errors.SalonError)(body["message"]) from None
        except (ValueError, KeyError):
            raise errors.Unavailable(f"Salon answered {failed.code} {failed.reason} for "
                                     f"{path}; is it a Salon with projections?") from None
    except urllib.error.URLError as failed:
        raise errors.Unavailable(f"cannot reach Salon at {base}: {failed.reason}; "
                                 "is `salon up` running?") from None


def ask(path: str, **params: Any) -> Any:
    """``fetch`` a JSON answer, exiting with the error's status if it fails."""
    try:
        return json.loads(fetch(path, **params))
    except errors.SalonError as error:
        fail(error)


def fail(error: errors.SalonError) -> NoReturn:
    """Print one line saying what went wrong and exit with the status of its kind."""
    click.echo(f"error: {error.message}", err=True)
    sys.exit(error.exit_status)


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Rows as aligned columns (``(none)`` when empty)."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:59] + "…"


@click.group()
def projections() -> None:
    """Read models built from the event log: their progress, and rebuilding one."""


@projections.command("status")
def projections_status() -> None:
    """Each projection's position, the log's head, events pending (its lag), and health."""
    rows = ask("/admin/projections")["projections"]
    for row in rows:
        row["state"] = ("running" if row.get("running") else "stopped") + \
            (f" ({row['error']})" if row.get("error") else "")
    table(rows, ["name", "position", "head", "pending", "applied", "state"])


@projections.command("rebuild")
@click.argument("name")
def projections_rebuild(name: str) -> None:
    """Drop projection NAME's view and apply the whole log to it again, from position 0."""
    row = ask("/admin/projections/rebuild", name=name)["projection"]
    click.echo(f"rebuilding {row['name']}: {row['pending']} events to apply "
               "(`salon projections status` shows its progress)")


@click.command()
@click.option("--status", type=click.Choice(["pending", "processing", "completed", "failed"]),
              default=None, help="only jobs in this status")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--dead", is_flag=True, help="show the dead-letter stream's entries")
@click.option("--queue", type=click.Choice(["digests", "memory"]), default="digests",
              show_default=True, help="digests: titles and summaries; memory: memory upkeep")
def jobs(status: str | None, limit: int, dead: bool, queue: str) -> None:
    """Background jobs (titles, summaries; memory upkeep): counts, recent jobs, dead letters."""
    found = ask("/admin/jobs", status=status, limit=limit, queue=queue)
    counts = found["counts"]
    click.echo("  ".join(f"{k}: {v}" for k, v in counts.items()))
    if dead:
        table(found["dead_letters"], ["job", "kind", "attempts", "failed_at", "error"])
    else:
        table(found["jobs"], ["id", "kind", "status", "attempts", "error"])


def _filters(agent: str | None, room: str | None, user: str | None, action: str | None,
             since: str | None, until: str | None) -> dict[str, str | None]:
    return {"agent": agent, "room": room, "user": user, "action": action, "since": since,
            "until": until}


FILTER_NAMES = ("agent", "room", "user", "action", "since", "until")


def filter_options(command: Any) -> Any:
    """The audit filters, as options of a command."""
    for option in reversed((
            click.option("--agent", default=None, help="only what concerns this agent"),
            click.option("--room", default=None, help="only what happened in this room"),
            click.option("--user", default=None, help="only what concerns this user"),
            click.option("--action", default=None,
                         help="only this kind of event, e.g. model_called"),
            click.option("--since", default=None,
                         help="from this time on (ISO 8601, UTC by default)"),
            click.option("--until", default=None, help="before this time (ISO 8601)"))):
        command = option(command)
    return command


@click.group(invoke_without_command=True)
@filter_options
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table",
              show_default=True, help="table shows the newest --limit rows; jsonl and csv "
                                      "export every matching row")
@click.option("--limit", type=click.IntRange(1, 5000), default=50, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="write the export here instead of standard output")
@click.pass_context
def audit(ctx: click.Context, agent: str | None, room: str | None, user: str | None,
          action: str | None, since: str | None, until: str | None, fmt: str, limit: int,
          output: str | None) -> None:
    """The audit log: who did what, when, with every detail; `salon audit verify` checks it."""
    if ctx.invoked_subcommand is not None:
        return
    filters = _filters(agent, room, user, action, since, until)
    if fmt == "table":
        rows: list[dict[str, Any]] = []
        after = 0
        while True:  # page through, keeping the newest ``limit`` rows
            page = ask("/admin/audit.json", after=after, limit=5000, **filters)
            rows = (rows + page["entries"])[-limit:]
            if len(page["entries"]) < 5000:
                break
            after = page["next_after"]
        for row in rows:
            row["at"] = str(row["at"])[:19].replace("T", " ")
        table(rows, ["position", "at", "actor", "action", "target", "room", "user"])
        return
    _export(fmt, filters, output)


def _export(fmt: str, filters: dict[str, str | None], output: str | None) -> None:
    try:
        data = fetch(f"/admin/audit.{fmt}", **filters)
    except errors.SalonError as error:
        fail(error)
    if output:
        Path(output).write_bytes(data)
        rows_written = data.count(b"\n") - (1 if fmt == "csv" else 0)
        click.echo(f"wrote {rows_written} rows to {output}")
    else:
        click.echo(data.decode(), nl=False)


@audit.command("export")
@filter_options
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="write here instead of standard output")
@click.pass_context
def audit_export(ctx: click.Context, fmt: str, output: str | None, **filters: str | None
                 ) -> None:
    """Export every matching row as JSONL or CSV (filters here or before `export`)."""
    parent = ctx.parent.params if ctx.parent is not None else {}
    merged = {k: filters.get(k) or parent.get(k) for k in FILTER_NAMES}
    _export(fmt, merged, output)


@audit.command("verify")
def audit_verify() -> None:
    """Check the hash chain and the log: name each modified, deleted or inserted row."""
    result = ask("/admin/audit/verify")
    if result["ok"]:
        click.echo(f"ok: {result['rows']} rows, up to position {result['up_to']}, intact")
        return
    click.echo(f"TAMPERED: {len(result['findings'])} findings in {result['rows']} rows")
    for finding in result["findings"]:
        click.echo(f"  {finding['kind']:<8} position {finding['position']}: "
                   f"{finding['message']}")
    sys.exit(1)


@click.group()
def threads() -> None:
    """Rooms as threads: listing, stats, generated titles and summaries, search, archiving."""


@threads.command("list")
@click.option("--archived", "shown", flag_value="1", help="only archived threads")
@click.option("--all", "shown", flag_value="all", help="open and archived threads")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def threads_list(shown: str | None, limit: int) -> None:
    """Threads with the newest activity first: messages, bytes, title, fork origin."""
    rows = ask("/admin/threads", archived=shown or "0", limit=limit)["threads"]
    table(rows, ["name", "message_count", "bytes", "members", "archived", "forked_from",
                 "title"])


@threads.command("show")
@click.argument("room")
def threads_show(room: str) -> None:
    """One thread's stats, title and summary."""
    row = ask("/admin/threads/show", room=room)["thread"]
    summary = row.pop("summary", None)
    for key, value in row.items():
        click.echo(f"{key:<17}{'' if value is None else value}")
    if summary:
        click.echo(f"summary\n{summary}")


@threads.command("search")
@click.argument("query")
@click.option("--room", default=None, help="only in this room")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
def threads_search(query: str, room: str | None, limit: int) -> None:
    """Full-text search of messages (words, "a phrase", -not, or), best matches first."""
    rows = ask("/admin/threads/search", q=query, room=room, limit=limit)["messages"]
    table(rows, ["room", "position", "author_id", "text"])


@threads.command("archive")
@click.argument("room")
def threads_archive(room: str) -> None:
    """Hide ROOM's thread from listings (the room stays open; `unarchive` lists it again)."""
    result = ask("/admin/threads/archive", room=room, archived=1)
    click.echo(f"archived {room}" if result["changed"] else f"{room} was archived already")


@threads.command("unarchive")
@click.argument("room")
def threads_unarchive(room: str) -> None:
    """List ROOM's thread again."""
    result = ask("/admin/threads/archive", room=room, archived=0)
    click.echo(f"unarchived {room}" if result["changed"] else f"{room} was not archived")


def attach(main: click.Group) -> None:
    """Add ``projections``, ``jobs``, ``threads`` and ``audit`` to the ``salon`` group."""
    main.add_command(projections)
    main.add_command(jobs)
    main.add_command(threads)
    main.add_command(audit)
