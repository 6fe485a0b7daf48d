"""``lockgate calls list|show``: the gateway's call records, read from the registry."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lockgate.registry.console import JsonOption, emit, parse_moment, table, when
from lockgate.registry.errors import InvalidInput
from lockgate.registry.records import Ref

if TYPE_CHECKING:  # registry.calls pulls in SQLAlchemy: not at `lockgate --help`
    from lockgate.registry.calls import CallInfo

MAX_PAGE = 1000  # as registry.calls.MAX_PAGE (a test checks they agree)

calls_app = typer.Typer(
    help="Call records: one per gateway call, with its route, prompt, key, status and trace.",
    no_args_is_help=True,
)

_STATUS = re.compile(r"^([1-5])(?:xx|(\d\d))$")


def parse_time(value: str | None, option: str, now: datetime | None = None) -> datetime | None:
    """``24h``, ``7d``, ``30m`` (that long ago) or an ISO 8601 time (UTC when no zone)."""
    if value is None:
        return None
    return parse_moment(value, option, now=now or datetime.now(UTC), sign=-1,
                        hint="a time ago like 24h, 7d or 30m")  # fmt: skip


def parse_status(value: str) -> tuple[int, int]:
    """``429`` (that code) or ``5xx`` (a class) as an inclusive range of codes."""
    m = _STATUS.match(value.strip().lower())
    if m is None:
        raise InvalidInput(
            f"--status {value!r}: give an HTTP status code like 429 or a class like 5xx",
            param="status",
        )
    if m.group(2) is None:
        low = int(m.group(1)) * 100
        return low, low + 99
    code = int(value.strip())
    return code, code


def _prompt(value: str | None) -> tuple[str | None, int | None]:
    if value is None:
        return None, None
    ref = Ref.parse(value)
    if ref.label is not None:
        raise InvalidInput(
            f"--prompt {value!r}: records keep the version a label pointed at, so give "
            "NAME or NAME@VERSION",
            param="prompt",
        )
    return ref.name, ref.version


def _rows(calls: list[CallInfo]) -> list[list[Any]]:
    rows = []
    for c in calls:
        prompt = f"{c.prompt_name}@{c.prompt_version}" if c.prompt_name else "-"
        tokens = f"{c.input_tokens or 0}/{c.output_tokens or 0}"
        status = f"{c.status_code}" + (f" {c.error_type}" if c.error_type else "")
        rows.append([c.id, when(c.created_at), c.route or "-", prompt, c.key_id or "-",
                     status, f"{c.latency_ms:.1f}", tokens])  # fmt: skip
    return rows


# narrow enough for 80 columns; model, trace and the rest are in `calls show` and --json
_COLUMNS = ["id", "time (UTC)", "route", "prompt", "key", "status", "ms", "tokens"]


@calls_app.command("list")
def calls_list(
    ctx: typer.Context,
    route: Annotated[str | None, typer.Option(help="The model name the client asked for.")] = None,
    model: Annotated[str | None, typer.Option(help="The upstream model that answered.")] = None,
    key: Annotated[str | None, typer.Option(help="An API key's id or name.")] = None,
    prompt: Annotated[str | None, typer.Option(help="NAME or NAME@VERSION.")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="A status code (429) or class (5xx); repeatable, any may match."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="From: 24h, 7d ago or an ISO time.")] = None,
    until: Annotated[str | None, typer.Option(help="Before: 1h ago or an ISO time.")] = None,
    limit: Annotated[int, typer.Option(help=f"At most this many (1 to {MAX_PAGE}).")] = 50,
    before: Annotated[
        int | None, typer.Option(help="Only records older than this id (the next page).")
    ] = None,
    json_mode: JsonOption = False,
) -> None:
    """Call records, newest first, filtered; the ids go to ``calls show``."""
    now = datetime.now(UTC)
    start, end = parse_time(since, "--since", now), parse_time(until, "--until", now)
    prompt_name, prompt_version = _prompt(prompt)
    statuses = tuple(parse_status(s) for s in status or [])
    registry = ctx.obj.registry()
    from lockgate.registry.calls import CallFilter

    where = CallFilter(
        route=route,
        model=model,
        key_ids=registry.calls.key_ids(key) if key is not None else None,
        prompt_name=prompt_name,
        prompt_version=prompt_version,
        statuses=statuses,
        since=start,
        until=end,
    )
    page = registry.calls.query(where, limit=limit, before=before)

    def human(c: Any) -> None:
        shown = table("calls", _COLUMNS, _rows(page.calls))
        for column in (shown.columns[0], shown.columns[4]):  # ids are never cut short
            column.no_wrap = True
        c.print(shown)
        if page.next_before is not None:
            c.print(f"more: add --before {page.next_before}")

    emit({"calls": page.calls, "next_before": page.next_before}, json_mode, human)


@calls_app.command("show")
def calls_show(ctx: typer.Context, call_id: str, json_mode: JsonOption = False) -> None:
    """One call record with every field: CALL_ID is its number, or its request or trace id
    (or a unique prefix of at least 4 characters)."""
    call = ctx.obj.registry().calls.get(call_id)

    def human(c: Any) -> None:
        for name, value in call.to_dict().items():
            c.print(f"{name + ':':16}{'-' if value is None else value}", markup=False)

    emit(call, json_mode, human)
