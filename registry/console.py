"""Output for every lockgate CLI: rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

from lockgate.registry.errors import InvalidInput

if TYPE_CHECKING:
    from lockgate.registry.registry import Registry
    from lockgate.registry.settings import RegistrySettings

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


class RegistryContext(Protocol):
    """What the root CLI (``gateway/cli.py``) puts in the typer context."""

    @property
    def registry_settings(self) -> RegistrySettings: ...

    def registry(self) -> Registry: ...


def registry_of(ctx: typer.Context) -> Registry:
    """The registry of a command's context, opened on first use."""
    state: RegistryContext = ctx.obj
    return state.registry()


_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(value: str, option: str, *, now: datetime, sign: int, hint: str) -> datetime:
    """A time option's value: a duration (``30d``, ``12h``, ``90m``), which is ``now`` plus
    ``sign`` times it, or an ISO 8601 time (UTC when no zone is given). Anything else is an
    :class:`InvalidInput` naming ``option``: "give ``hint``, or an ISO 8601 time"."""
    text = value.strip()
    if m := _DURATION.match(text):
        return now + sign * timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{option} {value!r}: give {hint}, or an ISO 8601 time", param=option.lstrip("-")
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def emit(data: Any, json_mode: bool, human: Callable[[Any], None]) -> None:
    """Print ``data`` as JSON, or call ``human`` with a rich console."""
    if json_mode:
        sys.stdout.write(json.dumps(to_jsonable(data), indent=2, ensure_ascii=False) + "\n")
    else:
        human(console())


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def when(ts: datetime | None) -> str:
    return "" if ts is None else ts.strftime("%Y-%m-%d %H:%M:%S")
