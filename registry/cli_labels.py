"""``lockgate prompt|model label|gate|history|protect|requests|approve|reject``: the label
commands, one implementation for both subjects (:func:`add_label_commands`).

A label moves only through its gate (and, when protected, an approver); these commands say
every check's verdict either way. Like the rest of :mod:`registry.cli`, they read the
registry from the typer context and no configuration of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lockgate.registry.console import JsonOption, console, emit, registry_of, table, when
from lockgate.registry.errors import ApprovalPending, GateRefused, InvalidInput

if TYPE_CHECKING:
    from lockgate.registry.records import SubjectType

_registry = registry_of


def add_label_commands(app: typer.Typer, subject: SubjectType) -> None:
    """Register the label commands of ``subject`` (``prompt`` or ``model``) on ``app``."""
    app.command("label")(_label_cmd(subject))
    app.command("protect")(_protect_cmd(subject))
    app.command("requests")(_requests_cmd(subject))
    app.command("approve")(_decide_cmd(subject, "approve"))
    app.command("reject")(_decide_cmd(subject, "reject"))
    app.command("gate")(_gate_cmd(subject))
    app.command("history")(_history_cmd(subject))


def _expect(value: str | None) -> tuple[int | None, bool]:
    if value is None:
        return None, False
    if value.lower() == "none":
        return None, True
    if not value.isdigit():
        raise InvalidInput(
            f"--expect takes a version number or 'none', not {value!r}", param="expect"
        )
    return int(value), False


def _overrode(move: Any) -> str:
    """What a forced move overrode: its checks that were not a pass."""
    failed = [f"{c.name} {c.verdict}" for c in move.checks if c.verdict != "pass"]
    return f" (overrode: {', '.join(failed)})" if move.forced and failed else ""


def _history_rows(moves: list[Any]) -> list[list[Any]]:
    return [
        [
            when(m.created_at),
            m.label,
            m.from_version or "-",
            m.to_version,
            m.actor,
            ("forced: " if m.forced else "") + m.reason + _overrode(m),
        ]
        for m in moves
    ]


def print_checks(c: Any, checks: list[Any]) -> None:
    """Every check of a gate, pass ones too: verdict, then the reason (which names it)."""
    for check in checks:
        c.print(f"  {check.verdict:<12} {check.reason}", markup=False)


HISTORY_COLUMNS = ["when", "label", "from", "to", "actor", "reason"]


def _label_cmd(subject: SubjectType) -> Any:
    def label(
        ctx: typer.Context,
        name: str,
        version: int,
        label: str,
        expect: Annotated[
            str | None,
            typer.Option(help="Fail unless the label now points to this version ('none': unset)."),
        ] = None,
        reason: Annotated[str, typer.Option(help="Why; kept in the history.")] = "",
        force: Annotated[
            bool, typer.Option("--force", help="Skip the gate policy (needs --reason; recorded).")
        ] = False,
        json_mode: JsonOption = False,
    ) -> None:
        expect_version, expect_absent = _expect(expect)
        try:
            move = _registry(ctx).labels.set(
                subject,
                name,
                label,
                version,
                expect_version=expect_version,
                expect_absent=expect_absent,
                reason=reason,
                force=force,
            )
        except GateRefused as exc:
            if not json_mode and exc.checks:
                out = console(stderr=True)
                out.print(f"gate of {label!r} for {name}@{version}:", markup=False)
                print_checks(out, exc.checks)
            raise
        except ApprovalPending as pending:  # a protected label: it has not moved (exit 1)
            message, request = pending.message, pending.request
            emit(
                {"status": "pending_approval", "message": message, "request": request},
                json_mode,
                lambda c: c.print(message, markup=False),
            )
            raise typer.Exit(pending.exit_code) from None

        def human(c: Any) -> None:
            c.print(f"{name}: {label} {move.from_version or '-'} -> {move.to_version}")
            if move.checks:
                c.print("forced past its gate:" if move.forced else "gate:")
                print_checks(c, move.checks)

        emit(move, json_mode, human)

    label.__doc__ = f"Point LABEL of a {subject} at VERSION (compare-and-set with --expect)."
    return label


def _gate_cmd(subject: SubjectType) -> Any:
    def gate(
        ctx: typer.Context,
        name: str,
        label: str,
        suite: Annotated[
            list[Path] | None,
            typer.Option(
                "--suite",
                help="A suite file that must pass, pinned by its content and its dataset's; "
                "repeatable. Replaces the label's suites.",
            ),
        ] = None,
        policy: Annotated[
            Path | None,
            typer.Option(
                "--policy",
                help="A policy file (YAML): `suites` (suite files), `drift` and `service` "
                "limits. Replaces the label's whole policy.",
            ),
        ] = None,
        check: Annotated[
            int | None,
            typer.Option(
                "--check",
                metavar="VERSION",
                help="Run every check of moving LABEL to VERSION and print each verdict; "
                "exit 1 unless all pass. Moves nothing.",
            ),
        ] = None,
        clear: Annotated[bool, typer.Option("--clear", help="Remove the gate.")] = False,
        json_mode: JsonOption = False,
    ) -> None:
        reg = _registry(ctx)
        if policy is not None and (suite or clear):
            raise InvalidInput("--policy sets the whole policy: give it alone", param="policy")
        current = [p for p in reg.gates.policies(subject, name) if p.label == label]
        if policy is not None:
            pins, limits = reg.gates.read_policy(policy)
            reg.gates.set_policy(
                subject, name, label, pins, drift=limits.drift, service=limits.service
            )
        elif suite or clear:  # --suite replaces the suites and keeps the limits
            pins = [] if clear else [reg.gates.pin_suite(path) for path in suite or []]
            kept = current[0] if current and not clear else None
            reg.gates.set_policy(
                subject, name, label, pins, drift=kept.drift if kept else None,
                service=kept.service if kept else None,
            )  # fmt: skip
        policies = [p for p in reg.gates.policies(subject, name) if p.label == label]
        shown = policies[0] if policies else None
        suites = shown.suites if shown else []
        checks = None if check is None else reg.gates.promotion_checks(subject, name, label, check)
        needs = [f"suite {s} to pass" for s in suites]
        if shown is not None and shown.drift is not None:
            needs.append(_drift_text(shown.drift))
        if shown is not None and shown.service is not None:
            needs.append(_service_text(shown.service))

        def human(c: Any) -> None:
            c.print(f"{name}: moving {label!r} requires " + (", ".join(needs) or "nothing"),
                    markup=False)  # fmt: skip
            if checks is not None:
                c.print(f"checks of moving {label!r} to {name}@{check}:"
                        + ("" if checks else " none (nothing gates it)"))  # fmt: skip
                print_checks(c, checks)

        emit(
            {
                "name": name, "label": label, "suites": [s.to_dict() for s in suites],
                "drift": shown.drift if shown else None,
                "service": shown.service if shown else None,
                **({"checks": checks} if checks is not None else {}),
            },
            json_mode,
            human,
        )  # fmt: skip
        if checks and any(c.verdict != "pass" for c in checks):
            raise typer.Exit(1)

    gate.__doc__ = (
        f"Show or set what a {subject} version needs before LABEL moves to it: a pass of "
        "each pinned suite's content on that version, every gate evaluated; drift within "
        "limits against the label holder's reference; service limits from its call records."
    )
    return gate


def _drift_text(drift: dict[str, Any]) -> str:
    against = drift.get("reference") or "the holder's reference"
    columns = f" of {', '.join(drift['columns'])}" if drift.get("columns") else ""
    age = f", a run at most {drift['max_age_s']:g} s old" if drift.get("max_age_s") else ""
    return f"drift share{columns} <= {drift['max_share_drifted']:g} against {against}{age}"


def _service_text(service: dict[str, Any]) -> str:
    limits = []
    if service.get("p99_latency_ms") is not None:
        limits.append(f"p99 latency <= {service['p99_latency_ms']:g} ms")
    if service.get("max_error_rate") is not None:
        limits.append(f"error rate <= {service['max_error_rate']:g}")
    return (f"{' and '.join(limits)} over the last {service['window_s']:g} s "
            f"(at least {service['min_calls']} calls)")  # fmt: skip


def _history_cmd(subject: SubjectType) -> Any:
    def history(
        ctx: typer.Context,
        name: str,
        label: Annotated[str | None, typer.Option(help="Only this label.")] = None,
        json_mode: JsonOption = False,
    ) -> None:
        moves = _registry(ctx).labels.history(subject, name, label)
        emit(
            moves,
            json_mode,
            lambda c: c.print(
                table(f"label history of {name}", HISTORY_COLUMNS, _history_rows(moves))
            ),
        )

    history.__doc__ = f"Every label move of a {subject}: who, when, from, to and why."
    return history


def _protect_cmd(subject: SubjectType) -> Any:
    def protect(
        ctx: typer.Context,
        name: str,
        label: str,
        approvers: Annotated[
            int,
            typer.Option(help="Approvers each move needs, besides its requester (0: unprotect)."),
        ] = 1,
        json_mode: JsonOption = False,
    ) -> None:
        info = _registry(ctx).labels.protect(subject, name, label, approvers)
        emit(
            {"name": name, "label": label, "approvals_needed": approvers, "protection": info},
            json_mode,
            lambda c: c.print(
                f"{name}: moving {label!r} needs {approvers} approver(s)"
                if approvers else f"{name}: {label!r} is no longer protected",
                markup=False,
            ),
        )  # fmt: skip

    protect.__doc__ = (
        f"Require approvers for every move of a {subject}'s LABEL, besides its gate: a move "
        "then waits as a request until approved (`approve`), over the CLI, API and UI alike."
    )
    return protect


def _request_lines(requests: list[Any]) -> list[list[Any]]:
    return [
        [r.id, r.label, r.from_version or "-", r.to_version, r.requested_by, r.status,
         f"{len(r.approvals)}/{r.approvals_needed}", ("forced: " if r.forced else "") + r.reason]
        for r in requests
    ]  # fmt: skip


def _requests_cmd(subject: SubjectType) -> Any:
    def requests(
        ctx: typer.Context,
        name: str,
        label: Annotated[str | None, typer.Option(help="Only this label.")] = None,
        all_states: Annotated[
            bool, typer.Option("--all", help="Decided requests too, not only pending ones.")
        ] = False,
        json_mode: JsonOption = False,
    ) -> None:
        found = _registry(ctx).labels.requests(
            subject, name, label, None if all_states else "pending"
        )
        columns = ["id", "label", "from", "to", "requested by", "status", "approvals", "reason"]
        emit(found, json_mode, lambda c: c.print(
            table(f"label move requests of {name}", columns, _request_lines(found))))  # fmt: skip

    requests.__doc__ = f"Requests to move a {subject}'s protected labels (pending ones by default)."
    return requests


def _decide_cmd(subject: SubjectType, verb: str) -> Any:
    def decide(
        ctx: typer.Context,
        name: str,
        label: str,
        request_id: int,
        reason: Annotated[str, typer.Option(help="Why (kept with the request).")] = "",
        json_mode: JsonOption = False,
    ) -> None:
        labels = _registry(ctx).labels
        if verb == "approve":
            try:
                done = labels.approve(subject, name, label, request_id)
            except GateRefused as exc:
                if not json_mode and exc.checks:
                    print_checks(console(stderr=True), exc.checks)
                raise
        else:
            done = labels.reject(subject, name, label, request_id, reason=reason)

        def human(c: Any) -> None:
            if done.status == "approved":
                c.print(f"{name}: {label} {done.from_version or '-'} -> {done.to_version} "
                        f"(request {done.id} approved)", markup=False)  # fmt: skip
            else:
                c.print(f"request {done.id}: {done.status} ({len(done.approvals)}/"
                        f"{done.approvals_needed} approvals)", markup=False)  # fmt: skip

        emit(done, json_mode, human)

    decide.__doc__ = (
        f"Approve REQUEST_ID, a pending move of a {subject}'s protected LABEL (not your own); "
        "with enough approvals the label moves, through its gate."
        if verb == "approve"
        else f"Reject REQUEST_ID, a pending move of a {subject}'s protected LABEL."
    )
    return decide
