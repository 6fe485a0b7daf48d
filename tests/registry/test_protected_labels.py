"""Protected labels (registry/approvals.py): a move becomes a request that another principal
approves; the rule is the registry's, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from lockgate.registry import Registry
from lockgate.registry.errors import (
    ApprovalPending,
    Conflict,
    GateRefused,
    InvalidInput,
    NotAllowed,
)
from lockgate.registry.gates import SuitePin, suite_digest

PIN = SuitePin("qa", suite_digest({"name": "qa"}, "sha256:data"))


@pytest.fixture
def reg(registry: Registry) -> Registry:
    for i in range(3):
        registry.prompts.push("p", f"v{i} {{{{ x }}}}")
    return registry


def test_protect_validates_and_unprotects(reg: Registry) -> None:
    for bad in (-1, 11):
        with pytest.raises(InvalidInput):
            reg.labels.protect("prompt", "p", "production", bad)
    with pytest.raises(InvalidInput):
        reg.labels.protect("prompt", "p", "latest", 1)
    info = reg.labels.protect("prompt", "p", "production", 2, actor="ops")
    assert info is not None and (info.approvals, info.updated_by) == (2, "ops")
    assert [p.label for p in reg.labels.protections("prompt", "p")] == ["production"]
    assert reg.labels.protect("prompt", "p", "production", 0) is None
    assert reg.labels.protections("prompt", "p") == []
    reg.labels.set("prompt", "p", "production", 1)  # unprotected: moves at once


def test_a_request_records_who_what_why_and_the_gate(reg: Registry) -> None:
    reg.labels.protect("prompt", "p", "production")
    reg.gates.set_policy("prompt", "p", "production", [PIN])
    with pytest.raises(GateRefused):  # a refused gate makes no request
        reg.labels.set("prompt", "p", "production", 1, actor="alice")
    with pytest.raises(InvalidInput):
        reg.labels.set("prompt", "p", "production", 1, actor="alice", force=True)
    with pytest.raises(ApprovalPending) as pending:
        reg.labels.set("prompt", "p", "production", 1, actor="alice", force=True, reason="hot")
    request = pending.value.request
    assert (request.requested_by, request.to_version, request.forced, request.reason) == (
        "alice", 1, True, "hot",
    )  # fmt: skip
    assert [c.verdict for c in request.checks] == ["inconclusive"]
    assert pending.value.exit_code == 1 and pending.value.status_code == 202
    with pytest.raises(NotAllowed):
        reg.labels.approve("prompt", "p", "production", request.id, actor="alice")
    done = reg.labels.approve("prompt", "p", "production", request.id, actor="bob")
    assert done.status == "approved" and done.decided_by == "bob"
    move = reg.labels.history("prompt", "p", "production")[-1]
    assert (move.actor, move.forced, move.to_version) == ("alice", True, 1)
    assert "approved by bob" in move.reason and move.checks[0].verdict == "inconclusive"


def test_requests_expect_the_label_where_it_was(reg: Registry) -> None:
    reg.labels.set("prompt", "p", "production", 1)
    reg.labels.protect("prompt", "p", "production")
    with pytest.raises(Conflict):  # --expect is checked when the move is asked for
        reg.labels.set("prompt", "p", "production", 2, expect_version=3, actor="a")
    ids = []
    for version in (2, 3):
        with pytest.raises(ApprovalPending) as pending:
            reg.labels.set("prompt", "p", "production", version, expect_version=1, actor="a")
        ids.append(pending.value.request.id)
    reg.labels.approve("prompt", "p", "production", ids[0], actor="b")
    with pytest.raises(Conflict):
        reg.labels.approve("prompt", "p", "production", ids[1], actor="b")
    assert reg.labels.request("prompt", "p", "production", ids[1]).status == "stale"
    assert reg.labels.of("prompt", "p")["production"] == 2
    with pytest.raises(Conflict):
        reg.labels.reject("prompt", "p", "production", ids[1], actor="b")
    assert [r.id for r in reg.labels.requests("prompt", "p", status=None)] == ids[::-1]
    assert reg.labels.requests("prompt", "p") == []
    with pytest.raises(InvalidInput):
        reg.labels.requests("prompt", "p", status="bogus")


def test_a_requester_may_withdraw_and_approvers_count_once(reg: Registry) -> None:
    reg.labels.protect("prompt", "p", "staging", 2)
    with pytest.raises(ApprovalPending) as pending:
        reg.labels.set("prompt", "p", "staging", 3, actor="a")
    rid = pending.value.request.id
    assert reg.labels.approve("prompt", "p", "staging", rid, actor="b").status == "pending"
    with pytest.raises(Conflict):
        reg.labels.approve("prompt", "p", "staging", rid, actor="b")
    withdrawn = reg.labels.reject("prompt", "p", "staging", rid, actor="a", reason="oops")
    assert (withdrawn.status, withdrawn.decision) == ("rejected", "oops")
    assert "staging" not in reg.labels.of("prompt", "p")
