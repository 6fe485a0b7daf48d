"""``/api/v1/monitors``: monitoring policies' decisions, which are runs of kind ``monitor``
named after their policy (``lockgate monitor run``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.api.rest.common import READ, Cursor, Limit
from lockgate.gateway.api.rest.runs import (
    RunId,
    get_run_of_kind,
    list_runs_page,
    run_object,
    run_summary,
)
from lockgate.registry.records import RunInfo

router = APIRouter(tags=["monitors"], dependencies=[READ])

KIND = "monitor"


def decision_fields(run: RunInfo) -> dict[str, Any]:
    tags = run.tags
    return {
        "policy": run.name,
        "decision": tags.get("decision"),  # quiet, insufficient, pending, cooldown, fired, error
        "reason": tags.get("reason"),
        "fired": run.metrics.get("fired") == 1.0,
    }


@router.get(
    "/monitors",
    summary="List monitor decisions",
    response_description="A page of decision runs, newest first.",
)
def list_decisions(
    state: StateDep,
    policy: Annotated[str | None, Query(max_length=200, description="A policy's name.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Every decision (of one ``policy``): whether its signal breached, fired an action, or
    stayed quiet, and why."""
    return list_runs_page(
        state.registry, KIND, policy, limit, cursor,
        lambda run: {**run_summary(run), **decision_fields(run)},
    )  # fmt: skip


@router.get(
    "/monitors/{run_id}",
    summary="Get a monitor decision",
    response_description="The decision run: measurement, decision, reason, actions, lineage.",
)
def get_decision(state: StateDep, run_id: RunId) -> dict[str, Any]:
    run = get_run_of_kind(state.registry, run_id, KIND)
    return {**run_object(state.registry, run), **decision_fields(run)}
