"""``lockgate keys create|list|revoke``: virtual API keys for the gateway."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from lockgate.registry.console import JsonOption, emit, parse_moment, table

keys_app = typer.Typer(
    help="Virtual API keys: scopes, model lists, limits, budgets.", no_args_is_help=True
)


def parse_expiry(value: str | None, now: datetime | None = None) -> datetime | None:
    """``30d``, ``12h`` (from now) or an ISO 8601 time (UTC when no zone is given)."""
    if value is None:
        return None
    return parse_moment(value, "--expires", now=now or datetime.now(UTC), sign=1,
                        hint="a duration like 30d or 12h")  # fmt: skip


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="What the key is for (shown in lists and records).")],
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models", help="Models it may call (comma-separated or repeated); default all."
        ),
    ] = None,
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            "--scopes",
            help="inference, registry:read, registry:write, registry:label (moving labels, a "
            "job's gate-and-label step included), registry:approve (approving a move of a "
            "protected label), admin (default inference).",
        ),
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    max_parallel: Annotated[int | None, typer.Option(help="Concurrent requests.")] = None,
    budget_usd: Annotated[float | None, typer.Option(help="Total spend allowed, in USD.")] = None,
    expires: Annotated[str | None, typer.Option(help="30d, 12h or an ISO 8601 time.")] = None,
    json_mode: JsonOption = False,
) -> None:
    """Create a key. The key itself is printed once and cannot be shown again."""
    key = ctx.obj.registry().keys.create(
        name,
        scopes=_split(scopes) or ["inference"],
        models=_split(models),
        rpm=rpm,
        tpm=tpm,
        max_parallel=max_parallel,
        budget_usd=budget_usd,
        expires_at=parse_expiry(expires),
    )

    def human(c: Any) -> None:
        c.print(f"created {key.id} ({key.name}); scopes {', '.join(key.scopes)}")
        c.print("the key (shown once; store it now):")
        c.print(key.secret, markup=False, highlight=False)

    emit({**key.to_dict(), "key": key.secret}, json_mode, human)


@keys_app.command("list")
def keys_list(ctx: typer.Context, json_mode: JsonOption = False) -> None:
    """List keys (prefixes only) with their limits and spend."""
    keys = ctx.obj.registry().keys.list()
    rows = [
        [k.id, k.name, k.prefix + "…", ",".join(k.models or ["*"]), _limits(k),
         f"{k.spent_usd:.4f}" + (f"/{k.budget_usd:g}" if k.budget_usd else ""),
         "revoked" if k.revoked_at else ("active" if k.active() else "expired")]
        for k in keys
    ]  # fmt: skip
    columns = ["id", "name", "prefix", "models", "limits", "spent $", "state"]
    emit(keys, json_mode, lambda c: c.print(table("keys", columns, rows)))


def _limits(key: Any) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (("rpm", key.rpm), ("tpm", key.tpm), ("parallel", key.max_parallel))
        if value
    ]
    return " ".join(parts) or "-"  # fmt: skip


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key: str, json_mode: JsonOption = False) -> None:
    """Revoke a key by id or prefix; requests with it get 401 from then on."""
    info = ctx.obj.registry().keys.revoke(key)
    emit(info, json_mode, lambda c: c.print(f"revoked {info.id} ({info.name})"))
