"""``/api/v1/{prompts|models}/{name}/labels|gates``: compare-and-set moves (ETag/If-Match: 412,
428), the gate with every check's verdict, scopes, protected labels with approvals that bind
the API and the CLI alike, and hostile input. Real gateway on loopback with auth on, over
HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lockgate.registry import LineageEdge, Registry
from lockgate.registry.gates import SuitePin, suite_digest
from tests.gateway.conftest import Gateway, StartGateway
from tests.gateway.rest_support import (
    BACKENDS,
    BODY_CAP,
    Clients,
    error,
    make_clients,
    rest_gateway,
)

ACCURACY = SuitePin("qa-accuracy", suite_digest({"name": "qa-accuracy"}, "sha256:data"))
SAFETY = SuitePin("qa-safety", suite_digest({"name": "qa-safety"}, "sha256:data"))


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, start_gateway: StartGateway,
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:  # fmt: skip
    return rest_gateway(request, start_gateway, tmp_path_factory)


@pytest.fixture(scope="module")
def c(gw: Gateway) -> Iterator[Clients]:
    yield from make_clients(gw)


_count = iter(range(10_000))


def _prompt(reg: Registry, versions: int = 3) -> str:
    name = f"team/qa-{next(_count)}"
    for i in range(versions):
        reg.prompts.push(name, f"answer {i} {{{{ q }}}}")
    return name


def _pass(reg: Registry, pin: SuitePin, ref: str) -> str:
    """An eval run that is evidence for ``ref`` (a first version: absolute gates decide)."""
    run = reg.runs.create("eval", name=pin.name, lineage=[LineageEdge("prompt", ref, "input")],
                          params={"suite_digest": pin.digest})  # fmt: skip
    reg.runs.set_status(run.id, "succeeded", metrics={"eval.errors": 0})
    gate = {"gate": "accuracy >= 0.9", "kind": "absolute", "verdict": "pass", "reason": "0.95"}
    reg.runs.tag(run.id, {"verdict": "pass", "gates": [gate]})
    return run.id


def _move(
    client: httpx.Client, name: str, label: str, if_match: str | None, **body: Any
) -> httpx.Response:
    headers = {"if-match": if_match} if if_match is not None else {}
    return client.put(f"/prompts/{name}/labels/{label}", json=body, headers=headers)


# ------------------------------------------------------------------ compare-and-set


def test_a_label_move_is_compare_and_set_with_its_etag(c: Clients) -> None:
    name = _prompt(c.gw.registry)
    got = c["reader"].get(f"/prompts/{name}/labels/production")
    assert got.status_code == 200 and got.headers["etag"] == '"none"'
    assert got.json()["version"] is None
    assert error(_move(c["labeller"], name, "production", None, version=1), 428)["code"] == (
        "precondition_required"
    )
    stale = error(_move(c["labeller"], name, "production", '"v1"', version=1), 412)
    assert stale["code"] == "precondition_failed" and "is unset" in stale["message"]

    first = _move(c["labeller"], name, "production", '"none"', version=1, reason="first")
    assert first.status_code == 200, first.text
    assert first.headers["etag"] == '"v1"' and first.json()["version"] == 1
    assert error(_move(c["labeller"], name, "production", '"none"', version=2), 412)
    second = _move(c["labeller"], name, "production", '"v1"', version=2, reason="better")
    assert second.status_code == 200 and second.headers["etag"] == '"v2"'
    assert error(_move(c["labeller"], name, "production", '"v1"', version=3), 412)
    assert c.gw.registry.labels.of("prompt", name)["production"] == 2

    history = c["reader"].get(f"/prompts/{name}/labels/production/history").json()["data"]
    assert [(m["from_version"], m["to_version"], m["reason"]) for m in history] == [
        (1, 2, "better"), (None, 1, "first"),
    ]  # fmt: skip
    assert history[0]["actor"].startswith(f"api:{c.key_ids['labeller']} (labeller)")
    listed = c["reader"].get(f"/prompts/{name}/labels").json()["data"]
    assert {x["label"]: x["etag"] for x in listed} == {"latest": '"v3"', "production": '"v2"'}
    everything = c["reader"].get(f"/prompts/{name}/history", params={"limit": 1}).json()
    assert len(everything["data"]) == 1 and everything["next_cursor"]


def test_two_writers_that_saw_the_same_state_cannot_both_win(c: Clients) -> None:
    name = _prompt(c.gw.registry, versions=4)
    assert _move(c["labeller"], name, "production", '"none"', version=1).status_code == 200
    barrier, answers = threading.Barrier(3), []

    def writer(version: int) -> None:
        barrier.wait()
        answers.append(_move(c["labeller"], name, "production", '"v1"', version=version))

    threads = [threading.Thread(target=writer, args=(v,)) for v in (2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 412, 412], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200).json()["version"]
    assert c.gw.registry.labels.of("prompt", name)["production"] == winner
    assert len(c.gw.registry.labels.history("prompt", name, "production")) == 2


# ------------------------------------------------------------------ scopes


def test_scopes_read_write_label_approve_admin(c: Clients) -> None:
    name = _prompt(c.gw.registry)
    path = f"/prompts/{name}/labels/production"
    assert error(c["anonymous"].get(path), 401)
    assert error(c["inference"].get(path), 403)
    for who in ("reader", "writer", "approver"):  # registry:write alone never moves a label
        assert "registry:label" in error(_move(c[who], name, "production", '"none"', version=1),
                                         403)["message"]  # fmt: skip
    protect = {"approvals": 1}
    for who in ("labeller", "releaser", "approver"):  # protecting a label is admin's
        assert error(c[who].put(f"{path}/protection", json=protect), 403)
    assert error(c["labeller"].put(f"/prompts/{name}/gates/production", json={}), 403)
    assert c["admin"].put(f"{path}/protection", json=protect).status_code == 200
    pending = _move(c["labeller"], name, "production", '"none"', version=1)
    assert pending.status_code == 202
    rid = pending.json()["request"]["id"]
    for who in ("labeller", "writer", "reader"):  # approving is registry:approve's
        assert error(c[who].post(f"{path}/requests/{rid}/approve"), 403)
        assert error(c[who].post(f"{path}/requests/{rid}/reject"), 403)
    assert c.gw.registry.labels.of("prompt", name).get("production") is None


def test_a_key_is_checked_before_the_body_is_read(c: Clients) -> None:
    name = _prompt(c.gw.registry)
    junk = b"{" * (BODY_CAP * 2)
    headers = {"if-match": '"none"', "content-type": "application/json"}
    got = c["reader"].put(f"/prompts/{name}/labels/production", content=junk, headers=headers)
    assert error(got, 403)


# ------------------------------------------------------------------ gates


def test_a_refused_gate_answers_409_with_every_check(c: Clients) -> None:
    reg, name = c.gw.registry, _prompt(c.gw.registry)
    reg.gates.set_policy("prompt", name, "production", [ACCURACY, SAFETY])
    accuracy_run = _pass(reg, ACCURACY, f"{name}@1")

    preview = c["reader"].get(f"/prompts/{name}/gates/production/checks", params={"version": 1})
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert shown["allowed"] is False and shown["etag"] == '"none"'
    verdicts = {x["name"]: (x["verdict"], x["run_id"]) for x in shown["checks"]}
    assert verdicts == {"suite qa-accuracy": ("pass", accuracy_run),
                        "suite qa-safety": ("inconclusive", None)}  # fmt: skip

    refused = error(_move(c["labeller"], name, "production", '"none"', version=1), 409)
    assert refused["code"] == "gate_failed" and "qa-safety" in refused["message"]
    assert {x["name"]: x["verdict"] for x in refused["checks"]} == {
        "suite qa-accuracy": "pass", "suite qa-safety": "inconclusive",
    }  # fmt: skip
    assert reg.labels.of("prompt", name).get("production") is None

    no_reason = error(_move(c["labeller"], name, "production", '"none"', version=1, force=True),
                      400)  # fmt: skip
    assert no_reason["param"] == "reason"
    forced = _move(c["labeller"], name, "production", '"none"', version=1, force=True,
                   reason="hotfix, safety suite re-run tomorrow")  # fmt: skip
    assert forced.status_code == 200, forced.text
    move = forced.json()["move"]
    assert move["forced"] is True and len(move["checks"]) == 2
    history = c["reader"].get(f"/prompts/{name}/labels/production/history").json()["data"]
    assert history[0]["forced"] and history[0]["reason"].startswith("hotfix")
    assert {x["verdict"] for x in history[0]["checks"]} == {"pass", "inconclusive"}

    _pass(reg, SAFETY, f"{name}@1")  # now version 1 passes everything: the preview says so
    again = c["reader"].get(f"/prompts/{name}/gates/production/checks", params={"version": 1})
    assert again.json()["checks"] == [] and again.json()["allowed"] is True  # holds it already


def test_gate_policies_over_http_name_only_pinned_suites(c: Clients, tmp_path: Path) -> None:
    reg, name = c.gw.registry, _prompt(c.gw.registry)
    reg.gates.set_policy("prompt", name, "staging", [ACCURACY])
    # a real suite file on the server: naming its path pins nothing and reads nothing
    data = tmp_path / "data.jsonl"
    data.write_text('{"q": "x"}\n')
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "evil", "dataset": str(data)}))
    url = f"/prompts/{name}/gates/production"
    for entry in ({"name": str(suite)}, {"name": "../../etc/passwd"}, {"name": "evil"}):
        bad = error(c["admin"].put(url, json={"suites": [entry]}), 400)
        assert bad["param"] == "suites[0]" and "not pinned" in bad["message"]
    unknown = error(c["admin"].put(url, json={"suites": [], "policy": str(suite)}), 400)
    assert unknown["param"] == "policy" and "policy" in unknown["message"]
    nested = error(c["admin"].put(url, json={"suites": [{"name": "x", "path": "/etc"}]}), 400)
    assert "path" in nested["message"]
    assert error(c["reader"].get(url), 404)

    service = {"window_s": 600, "p99_latency_ms": 800, "min_calls": 5}
    done = c["admin"].put(url, json={"suites": [{"name": "qa-accuracy"}], "service": service})
    assert done.status_code == 200, done.text
    policy = c["reader"].get(url).json()
    assert policy["suites"] == [ACCURACY.to_dict()] and policy["service"]["window_s"] == 600
    assert error(c["admin"].put(url, json={"service": {"window_s": 600, "p99": 1}}), 400)
    prompt_drift = error(c["admin"].put(url, json={"drift": {"max_share_drifted": 0.3}}), 400)
    assert prompt_drift["param"] == "drift.reference"
    listed = c["reader"].get(f"/prompts/{name}/gates").json()["data"]
    assert [p["label"] for p in listed] == ["production", "staging"]
    checks = c["reader"].get(f"{url}/checks", params={"version": 2}).json()["checks"]
    assert checks[0]["name"] == "suite qa-accuracy" and len(checks) == 2
    cleared = c["admin"].put(url, json={})
    assert cleared.status_code == 200 and cleared.json()["policy"] is None


# ------------------------------------------------------------------ protected labels


def test_a_protected_label_moves_only_when_another_principal_approves(c: Clients) -> None:
    reg, name = c.gw.registry, _prompt(c.gw.registry)
    base = f"/prompts/{name}/labels/production"
    assert (
        c["admin"].put(f"{base}/protection", json={"approvals": 2}).json()["approvals_needed"] == 2
    )
    asked = _move(c["releaser"], name, "production", '"none"', version=2, reason="ship it")
    assert asked.status_code == 202, asked.text
    request = asked.json()["request"]
    assert (request["status"], request["to_version"], request["from_version"]) == (
        "pending", 2, None,
    )  # fmt: skip
    assert request["requested_by"].startswith(f"api:{c.key_ids['releaser']}")
    assert c["reader"].get(base).json()["version"] is None
    rid = request["id"]
    listed = c["reader"].get(f"{base}/requests").json()["data"]
    assert [r["id"] for r in listed] == [rid]

    own = error(c["releaser"].post(f"{base}/requests/{rid}/approve"), 403)
    assert own["code"] == "not_allowed" and "cannot approve" in own["message"]
    first = c["approver"].post(f"{base}/requests/{rid}/approve")
    assert first.status_code == 200 and first.json()["request"]["status"] == "pending"
    assert error(c["approver"].post(f"{base}/requests/{rid}/approve"), 409)  # counted once
    assert reg.labels.of("prompt", name).get("production") is None
    second = c["approver2"].post(f"{base}/requests/{rid}/approve", json={})
    assert second.status_code == 200, second.text
    assert second.headers["etag"] == '"v2"' and second.json()["request"]["status"] == "approved"
    assert reg.labels.of("prompt", name)["production"] == 2
    moved = reg.labels.history("prompt", name, "production")[-1]
    assert moved.actor == request["requested_by"] and "approved by api:" in moved.reason
    assert error(c["approver"].post(f"{base}/requests/{rid}/reject"), 409)  # decided

    # rejected and stale requests never move the label
    a = _move(c["labeller"], name, "production", '"v2"', version=3).json()["request"]["id"]
    b = _move(c["labeller"], name, "production", '"v2"', version=1).json()["request"]["id"]
    rejected = c["approver"].post(f"{base}/requests/{b}/reject", json={"reason": "no"})
    assert rejected.json()["status"] == "rejected" and rejected.json()["decision"] == "no"
    c2 = _move(c["labeller"], name, "production", '"v2"', version=1).json()["request"]["id"]
    assert c["approver"].post(f"{base}/requests/{a}/approve").status_code == 200
    assert c["approver2"].post(f"{base}/requests/{a}/approve").status_code == 200
    stale = error(c["approver"].post(f"{base}/requests/{c2}/approve"), 409)
    assert "read it again" in stale["message"]
    assert c["reader"].get(f"{base}/requests/{c2}").json()["status"] == "stale"
    assert reg.labels.of("prompt", name)["production"] == 3
    every = c["reader"].get(f"{base}/requests", params={"status": "all"}).json()["data"]
    states = {r["id"]: r["status"] for r in every}
    assert states == {rid: "approved", a: "approved", b: "rejected", c2: "stale"}
    # a stale If-Match is refused before any request is made
    assert error(_move(c["labeller"], name, "production", '"v2"', version=1), 412)


def test_an_approved_move_still_goes_through_the_gate(c: Clients) -> None:
    reg, name = c.gw.registry, _prompt(c.gw.registry)
    reg.labels.protect("prompt", name, "production", 1)
    reg.gates.set_policy("prompt", name, "production", [ACCURACY])
    base = f"/prompts/{name}/labels/production"
    refused = error(_move(c["labeller"], name, "production", '"none"', version=1), 409)
    assert refused["code"] == "gate_failed" and refused["checks"][0]["verdict"] == "inconclusive"
    assert reg.labels.requests("prompt", name) == []  # a refused move asks nobody
    _pass(reg, ACCURACY, f"{name}@1")
    rid = _move(c["labeller"], name, "production", '"none"', version=1).json()["request"]["id"]
    reg.gates.set_policy("prompt", name, "production", [ACCURACY, SAFETY])  # stricter now
    again = error(c["approver"].post(f"{base}/requests/{rid}/approve"), 409)
    assert {x["verdict"] for x in again["checks"]} == {"pass", "inconclusive"}
    assert c["reader"].get(f"{base}/requests/{rid}").json()["approvals"] == []  # not kept
    _pass(reg, SAFETY, f"{name}@1")
    assert c["approver"].post(f"{base}/requests/{rid}/approve").status_code == 200
    assert reg.labels.of("prompt", name)["production"] == 1


def test_the_approval_rule_binds_the_cli(c: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lockgate.gateway.cli import app

    settings = c.gw.registry.settings
    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("LOCKGATE_DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("LOCKGATE_DATABASE_URL", raising=False)
    monkeypatch.delenv("LOCKGATE_CONFIG", raising=False)
    runner = CliRunner()

    def cli(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout + result.stderr

    name = _prompt(c.gw.registry)
    assert cli("prompt", "protect", name, "production", "--approvers", "1")[0] == 0
    code, out = cli("prompt", "label", name, "2", "production", "--reason", "from the shell")
    assert code == 1 and "waits for 1 approver" in out, out
    assert c.gw.registry.labels.of("prompt", name).get("production") is None
    rid = c.gw.registry.labels.requests("prompt", name)[0].id
    code, out = cli("prompt", "requests", name, "--json")
    assert code == 0 and f'"id": {rid}' in out
    code, out = cli("prompt", "approve", name, "production", str(rid))  # the same OS user
    assert code == 2 and "cannot approve" in out
    approved = c["approver"].post(f"/prompts/{name}/labels/production/requests/{rid}/approve")
    assert approved.status_code == 200 and approved.json()["version"] == 2
    # and a request made over HTTP is approved from the CLI by another principal
    asked = _move(c["labeller"], name, "production", '"v2"', version=3).json()["request"]
    code, out = cli("prompt", "approve", name, "production", str(asked["id"]))
    assert code == 0 and "2 -> 3" in out, out
    code, out = cli("prompt", "protect", name, "production", "--approvers", "0")
    assert code == 0 and "no longer protected" in out


def test_model_labels_share_the_rules(c: Clients) -> None:
    reg = c.gw.registry
    reg.models.register("org/bot", "upstream", {"model": "openai/gpt-4o-mini"})
    base = "/models/org/bot/labels/production"
    assert c["reader"].get(base).headers["etag"] == '"none"'
    moved = c["labeller"].put(base, json={"version": 1}, headers={"if-match": '"none"'})
    assert moved.status_code == 200 and moved.headers["etag"] == '"v1"'
    assert error(c["labeller"].put(base, json={"version": 1},
                                   headers={"if-match": '"none"'}), 412)  # fmt: skip
    assert (
        c["reader"].get("/models/org/bot/labels/production/history").json()["data"][0]["to_version"]
        == 1
    )
    assert c["reader"].get("/models/org/bot/gates").json()["data"] == []


# ------------------------------------------------------------------ hostile input


def test_hostile_input_is_a_400_never_a_500(c: Clients) -> None:
    name = _prompt(c.gw.registry)
    base = f"/prompts/{name}/labels/production"
    unknown = error(_move(c["labeller"], name, "production", '"none"', version=1, actor="root",
                          expect="any"), 400)  # fmt: skip
    assert "actor" in unknown["message"] and "expect" in unknown["message"]
    for bad in ({"version": "1"}, {"version": 0}, {"version": 2**40}, {"version": 1, "force": 1},
                {"version": 1, "reason": "x" * 5000}, {}):  # fmt: skip
        assert error(_move(c["labeller"], name, "production", '"none"', **bad), 400)
    for tag in ("*", 'W/"v1"', "v1", '"v1x"', '"' + "9" * 40 + '"'):
        assert error(_move(c["labeller"], name, "production", tag, version=1), 400)
    assert error(c["labeller"].put(base, content=b"[1]", headers={"if-match": '"none"'}), 400)
    big = b'{"version": 1, "reason": "' + b"x" * BODY_CAP + b'"}'
    assert error(c["labeller"].put(base, content=big, headers={"if-match": '"none"'}), 413)
    for path in ("/prompts/%2e%2e%2f%2e%2e%2fetc/labels/production",
                 "/prompts/..%2Fetc%2Fpasswd/labels/production",
                 f"/prompts/{name}/labels/Prod%21", f"/prompts/{name}/labels/production/requests/x",
                 "/prompts/nope/labels/production"):  # fmt: skip
        got = c["reader"].get(path)
        assert got.status_code in (400, 404), (path, got.text)
        assert set(got.json()) == {"error"}
    assert error(c["reader"].get("/prompts/a%0Ab/labels/production"), 404)  # no route at all
    assert error(c["reader"].delete(base), 405)["code"] == "method_not_allowed"
    assert error(c["reader"].get(f"{base}/requests", params={"status": "everything"}), 400)
    assert error(c["approver"].post(f"{base}/requests/999999/approve"), 404)
    assert c.gw.registry.labels.of("prompt", name).get("production") is None
