"""``/api/v1/{prompts|models}/{name}/gates``: gate policies and the verdicts of a move.

A policy pins eval suites by content (``lockgate prompt gate NAME LABEL --suite FILE`` reads
the suite file on the operator's machine). Over HTTP nothing is read from a path: a policy
may name only suites the subject's policies have pinned already (by ``name`` and, when
several pins share a name, ``digest``), and set drift and service limits. A string that looks
like a path is a suite name that is not pinned: a 400, whatever exists at that path.

``GET …/gates/{label}/checks?version=N`` runs every check of moving the label to version N
without moving it (``Gates.promotion_checks``): each check's verdict (``pass``, ``fail``,
``inconclusive``), its reason and its evidence run. Reading needs ``registry:read``; setting
a policy needs ``admin`` (a key that may move labels must not be able to clear their gate).
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from lockgate.gateway.api.deps import StateDep
from lockgate.gateway.api.rest._bodies import body_schema, read_body
from lockgate.gateway.api.rest.common import ADMIN, READ, Cursor, Limit, jsonable, page
from lockgate.gateway.api.rest.labels import (
    SUBJECTS,
    LabelParam,
    NameParam,
    _names,
    etag,
)
from lockgate.gateway.auth import Principal
from lockgate.gateway.state import GatewayState
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.gates import GatePolicyInfo, SuitePin
from lockgate.registry.records import SubjectType

router = APIRouter(tags=["gates"])
Admin = Annotated[Principal, ADMIN]
MAX_SUITES = 50


class SuiteRef(BaseModel):
    """A suite the subject's policies have pinned already."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    digest: str | None = Field(
        default=None, max_length=80, description="`sha256:…`; needed when pins share a name."
    )


class PolicyBody(BaseModel):
    """The body of ``PUT …/gates/{label}``: the label's whole policy (all empty: none)."""

    model_config = ConfigDict(extra="forbid")

    suites: list[SuiteRef] = Field(default_factory=list, max_length=MAX_SUITES)
    drift: dict[str, Any] | None = Field(
        default=None, description="max_share_drifted, reference, columns, max_age_s."
    )
    service: dict[str, Any] | None = Field(
        default=None, description="window_s, p99_latency_ms, max_error_rate, min_calls."
    )


def policy_object(policy: GatePolicyInfo) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(policy)
    return out


def _known_pins(state: GatewayState, subject: SubjectType, name: str) -> list[SuitePin]:
    pins: list[SuitePin] = []
    for policy in state.registry.gates.policies(subject, name):
        pins += [p for p in policy.suites if p.digest and p not in pins]
    return pins


def _resolve(suites: list[SuiteRef], known: list[SuitePin], subject: str, name: str,
             label: str) -> list[SuitePin]:  # fmt: skip
    """The pins the body names, each one already pinned; never a path read."""
    chosen = []
    for i, ref in enumerate(suites):
        same = [p for p in known if p.name == ref.name]
        if ref.digest is not None:
            same = [p for p in same if p.digest == ref.digest]
        if len(same) != 1:
            problem = "is not pinned" if not same else "is pinned with several digests: name one"
            raise InvalidInput(
                f"suites[{i}]: suite {ref.name[:200]!r} {problem} for {subject} {name!r}. Over "
                "HTTP a policy names suites already pinned; pin a suite file on the server "
                f"with `lockgate {subject} gate {name} {label} --suite FILE`",
                param=f"suites[{i}]",
            )
        chosen.append(same[0])
    return chosen


def _routes(plural: str, subject: SubjectType) -> None:
    base = f"/{plural}/{{name:path}}"

    def list_policies(
        state: StateDep, name: NameParam, limit: Limit = 50, cursor: Cursor = None
    ) -> dict[str, Any]:
        """Every gated label of the subject with its pinned suites and limits."""
        _names(name)
        return page(state.registry.gates.policies(subject, name), limit, cursor, policy_object)

    def get_policy(state: StateDep, name: NameParam, label: LabelParam) -> dict[str, Any]:
        """The label's gate policy (404: nothing gates it)."""
        _names(name, label)
        for policy in state.registry.gates.policies(subject, name):
            if policy.label == label:
                return policy_object(policy)
        raise NotFound(f"{subject} {name!r} has no gate policy for {label!r}", param="label")

    async def set_policy(
        request: Request, state: StateDep, principal: Admin, name: NameParam, label: LabelParam
    ) -> dict[str, Any]:
        """Replace the label's policy: already-pinned suites, drift and service limits."""
        _names(name, label)
        body = await read_body(request, state, PolicyBody)

        def write() -> GatePolicyInfo | None:
            pins = _resolve(body.suites, _known_pins(state, subject, name), subject, name, label)
            return state.registry.gates.set_policy(
                subject, name, label, pins, drift=body.drift, service=body.service
            )

        del principal  # the registry records its own actor on policies
        policy = await anyio.to_thread.run_sync(write)
        return {"label": label, "policy": policy_object(policy) if policy else None}

    def checks(
        state: StateDep, name: NameParam, label: LabelParam,
        version: Annotated[int, Query(ge=1, le=2**31 - 1, description="The candidate.")],
    ) -> dict[str, Any]:  # fmt: skip
        """Every check of moving the label to `version`, without moving it."""
        _names(name, label)
        registry = state.registry
        found = registry.gates.promotion_checks(subject, name, label, version)
        current = registry.labels.of(subject, name).get(label)
        protected = [p for p in registry.labels.protections(subject, name) if p.label == label]
        return {
            "label": label, "version": version, "current_version": current,
            "etag": etag(current), "allowed": all(c.verdict == "pass" for c in found),
            "approvals_needed": protected[0].approvals if protected else 0,
            "checks": jsonable(found),
        }  # fmt: skip

    def add(method: str, path: str, endpoint: Any, summary: str, response: str,
            **kw: Any) -> None:  # fmt: skip
        router.add_api_route(
            base + path, endpoint, methods=[method], summary=f"{summary} ({subject})",
            response_description=response, operation_id=f"{endpoint.__name__}_{subject}", **kw,
        )  # fmt: skip

    add("GET", "/gates/{label}/checks", checks, "Preview a label move's gate",
        "Every check's verdict, reason and evidence run; `allowed` when all pass.",
        dependencies=[READ])  # fmt: skip
    add("GET", "/gates/{label}", get_policy, "Get a gate policy", "The policy.",
        dependencies=[READ])  # fmt: skip
    add("PUT", "/gates/{label}", set_policy, "Set a gate policy",
        "The policy now (null: removed).", openapi_extra=body_schema(PolicyBody))  # fmt: skip
    add("GET", "/gates", list_policies, "List gate policies", "A page of policies.",
        dependencies=[READ])  # fmt: skip


for _plural, _subject in SUBJECTS.items():
    _routes(_plural, _subject)
