"""``lockgate monitor run POLICY… [--every 1h] [--json]``: decide, act, deliver webhooks.

Cron-friendly: one pass by default. Exit codes of a single pass: 0 every policy decided and
none fired; 1 at least one fired (its actions ran); 2 an error: a bad policy file, a signal
that cannot be measured (no such model, label or dataset), or an action that failed (all of
these are recorded on the decision run). With ``--every`` it decides again after each
interval until interrupted (Ctrl-C: exit 0); errors of a pass are printed and the loop goes
on. After deciding, each pass delivers due webhook events (``webhooks`` in lockgate.yaml).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lockgate.registry.console import JsonOption, console

if TYPE_CHECKING:
    from lockgate.gateway.monitor.policy import Policy
    from lockgate.gateway.monitor.runner import Decision

monitor_app = typer.Typer(
    help="Monitoring policies: watch drift, evals, latency, errors and new data; act.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_COLOURS = {"fired": "red", "pending": "yellow", "cooldown": "yellow", "quiet": "green",
            "insufficient": "yellow", "error": "red"}  # fmt: skip


def _decide(ctx: typer.Context, policies: list[Policy], as_json: bool) -> int:
    from lockgate.gateway.monitor.runner import run_policy
    from lockgate.registry.errors import LockgateError

    state = ctx.obj
    registry = state.registry()
    transport = getattr(state, "eval_transport_factory", None)
    decisions: list[Decision] = []
    errors: list[str] = []
    for policy in policies:
        try:
            decisions.append(
                run_policy(registry, policy, evals=getattr(state, "evals_settings", None),
                           eval_transport_factory=transport)
            )  # fmt: skip
        except LockgateError as exc:
            errors.append(f"{policy.name}: {exc.message}")
    delivered = _flush(state)
    if as_json:
        doc = {"decisions": [d.to_dict() for d in decisions], "errors": errors,
               "webhooks": delivered}  # fmt: skip
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    else:
        _show(decisions, errors, delivered)
    if errors or any(not d.ok for d in decisions):
        return 2
    return 1 if any(d.fired for d in decisions) else 0


def _flush(state: Any) -> dict[str, Any] | None:
    """Deliver what is due to the configured webhooks (one pass)."""
    settings = state.settings.webhooks
    if not settings.endpoints:
        return None
    from lockgate.gateway.webhooks import WebhookDispatcher

    dispatcher = WebhookDispatcher(state.registry().events, settings)
    try:
        summary = dispatcher.flush()
    finally:
        dispatcher.close()
    return {"delivered": summary.delivered, "retrying": summary.retrying,
            "failed": summary.failed, "errors": summary.errors}  # fmt: skip


def _show(decisions: list[Decision], errors: list[str], delivered: dict[str, Any] | None) -> None:
    out = console()
    for d in decisions:
        colour = _COLOURS.get(d.decision, "white")
        out.print(f"{d.policy}: [{colour}]{d.decision}[/] — {d.reason} (run {d.run_id[:12]})",
                  highlight=False)  # fmt: skip
        for a in d.actions:
            mark = "ok" if a.ok else "[red]failed[/]"
            out.print(f"  {a.kind}: {mark} — {a.detail}", highlight=False)
    for line in errors:
        console(stderr=True).print(f"[red]error[/]: {line}", highlight=False)
    if delivered is not None and (delivered["delivered"] or delivered["retrying"]
                                  or delivered["failed"]):  # fmt: skip
        out.print(f"webhooks: {delivered['delivered']} delivered, {delivered['retrying']} to "
                  f"retry, {delivered['failed']} failed", highlight=False)  # fmt: skip


@monitor_app.command("run")
def run_command(
    ctx: typer.Context,
    policy_files: Annotated[
        list[Path], typer.Argument(metavar="POLICY...", help="Policy YAML files.")
    ],
    every: Annotated[
        str | None,
        typer.Option("--every", help="Decide again after this long (e.g. 1h) until stopped."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Decide each policy once (or --every interval): record the decision, act if it fires.

    Exit 0: nothing fired; 1: a policy fired; 2: an error (bad policy, signal or action)."""
    from lockgate.gateway.monitor.errors import PolicyInvalid
    from lockgate.gateway.monitor.policy import load_policy, parse_duration

    policies = [load_policy(path) for path in policy_files]
    if every is None:
        raise typer.Exit(_decide(ctx, policies, as_json))
    try:
        interval = parse_duration(every).total_seconds()
    except ValueError as exc:
        raise PolicyInvalid(f"--every: {exc}", param="every") from None
    try:
        while True:
            started = time.monotonic()
            _decide(ctx, policies, as_json)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
