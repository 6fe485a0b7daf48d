"""``/api/v1``: models, datasets, runs, jobs, calls, keys, drift, monitors and events over
real HTTP (a gateway on loopback, auth required, keys with chosen scopes), on records the
registry's own parts wrote. Scopes, paging, hostile input and secrets included."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from lockgate.gateway.api import rest
from lockgate.registry import LineageEdge
from lockgate.registry.calls import NewCall
from tests.gateway.conftest import Gateway, StartGateway

API = "/api/v1"


@pytest.fixture(scope="module")
def gw(start_gateway: StartGateway) -> Gateway:
    return start_gateway(auth="required")


def _key(gw: Gateway, name: str, scopes: list[str]) -> str:
    secret = gw.registry.keys.create(name, scopes=scopes).secret
    assert secret is not None
    return secret


@pytest.fixture(scope="module")
def keys(gw: Gateway) -> dict[str, str]:
    return {
        "admin": _key(gw, "ops", ["admin"]),
        "read": _key(gw, "viewer", ["registry:read"]),
        "write": _key(gw, "release", ["registry:read", "registry:write"]),
        "inference": _key(gw, "app", ["inference"]),
    }


@pytest.fixture(scope="module")
def http(gw: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url + API, timeout=10) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def get(http: httpx.Client, secret: str, path: str, **params: Any) -> httpx.Response:
    return http.get(path, headers=auth(secret), params=params)


def ok(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()


def error(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"}, body
    return body["error"]  # type: ignore[no-any-return]


def walk(http: httpx.Client, secret: str, path: str, limit: int, **params: Any) -> list[Any]:
    """Every item of a list, a page at a time through next_cursor."""
    items: list[Any] = []
    cursor = None
    for _ in range(1000):
        more = {"cursor": cursor} if cursor else {}
        page = ok(get(http, secret, path, limit=limit, **params, **more))
        assert set(page) == {"data", "next_cursor"}
        assert len(page["data"]) <= limit
        items.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging never ended")


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# --- the records every test reads ---------------------------------------------------------


@pytest.fixture(scope="module")
def world(gw: Gateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    reg = gw.registry
    tmp = tmp_path_factory.mktemp("world")
    # models: an LLM route under a name with a slash, and a classic one
    bot1, _ = reg.models.register("org/bot", "upstream", {"model": "openai/gpt-4o-mini"})
    bot2, _ = reg.models.register("org/bot", "upstream", {"model": "openai/gpt-4o"})
    reg.labels.set("model", "org/bot", "production", 1, reason="first")
    clf = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    churn, _ = reg.models.register_sklearn("churn", clf)
    # datasets: two versions of a file, and a folder
    data = tmp / "qa.jsonl"
    data.write_text('{"q": "a", "a": 1}\n')
    qa1, _ = reg.datasets.add("qa", data)
    data.write_text('{"q": "a", "a": 1}\n{"q": "b", "a": 2}\n')
    qa2, _ = reg.datasets.add("qa", data)
    folder = tmp / "folder"
    folder.mkdir()
    (folder / "part.jsonl").write_text('{"x": 1}\n')
    reg.datasets.add("shards", folder)
    # runs: a fine-tune that produced org/bot@2, evals of it, a run that read an eval
    ft = reg.runs.create("finetune", name="ft", lineage=[LineageEdge("dataset", "qa@2", "input")])
    reg.runs.add_lineage(ft.id, [LineageEdge("model", "org/bot@2", "output")])
    for step in range(1, 6):
        reg.runs.log_metrics(ft.id, {"loss": 1.0 / step, "train/lr": 0.1}, step=step)
    evals = []
    for i in range(7):
        run = reg.runs.create(
            "eval", name="suite-a" if i % 2 else "suite-b",
            params={"i": i}, tags={"verdict": "pass"},
            lineage=[LineageEdge("model", "org/bot@2", "input")],
        )  # fmt: skip
        reg.runs.set_status(run.id, "succeeded", metrics={"accuracy": 0.5 + i / 100})
        evals.append(run.id)
    examples = tmp / "examples.jsonl"
    examples.write_text('{"id": 1}\n')
    reg.runs.log_artifact(evals[0], "examples.jsonl", examples)
    page = tmp / "page.html"
    page.write_text("<script>alert(1)</script>")
    reg.runs.log_artifact(evals[0], "notes/page.html", page)
    reg.runs.log_artifact(evals[0], "a-folder", folder)
    merged = reg.runs.create("eval", name="merged", lineage=[LineageEdge("run", evals[0], "input")])
    return {"bot": (bot1, bot2), "churn": churn, "qa": (qa1, qa2), "ft": ft.id,
            "evals": evals, "merged": merged.id, "examples": examples.read_bytes()}  # fmt: skip


# --- auth and scopes ----------------------------------------------------------------------

READ_PATHS = [
    "/models", "/models/org/bot", "/models/org/bot/versions", "/models/org/bot/versions/1",
    "/datasets", "/datasets/qa/versions", "/datasets/qa/versions/1",
    "/datasets/qa/versions/1/content", "/runs", "/runs/x", "/runs/x/metrics/loss",
    "/runs/x/artifacts", "/runs/x/artifacts/examples.jsonl", "/runs/x/lineage", "/jobs",
    "/jobs/x", "/jobs/x/events", "/calls", "/calls/1", "/drift", "/drift/x",
    "/drift/x/report.html", "/monitors", "/monitors/x",
]  # fmt: skip
ADMIN_PATHS = ["/keys", "/events", "/events/1", "/deliveries"]


def test_no_key_is_401_everywhere(gw: Gateway, http: httpx.Client, world: Any) -> None:
    for path in READ_PATHS + ADMIN_PATHS:
        error(http.get(path), 401)
    for path in ("/jobs/x/cancel", "/keys", "/keys/x/revoke"):
        error(http.post(path, content=b"not json at all"), 401)
    error(http.get("/runs", headers=auth("lg-not-a-key-at-all")), 401)


def test_scopes(http: httpx.Client, keys: dict[str, str], world: Any, gw: Gateway) -> None:
    for path in READ_PATHS + ADMIN_PATHS:
        error(get(http, keys["inference"], path), 403)
    for path in ADMIN_PATHS:
        error(get(http, keys["read"], path), 403)
        error(get(http, keys["write"], path), 403)
    job, _ = gw.registry.jobs.create("finetune", {"suffix": "x"})
    # a read-only key cannot cancel; a non-admin cannot create or revoke keys, whatever the body
    error(http.post(f"/jobs/{job.id}/cancel", headers=auth(keys["read"])), 403)
    for key in ("read", "write"):
        error(http.post("/keys", headers=auth(keys[key]), content=b"{broken"), 403)
        error(http.post("/keys/x/revoke", headers=auth(keys[key])), 403)
    assert gw.registry.jobs.get(job.id).status == "queued"
    assert [k.name for k in gw.registry.keys.list()] == ["ops", "viewer", "release", "app"]


def test_every_route_is_in_openapi_with_a_summary(gw: Gateway) -> None:
    schema = httpx.get(gw.url + "/openapi.json").json()
    ours = {path: ops for path, ops in schema["paths"].items() if path.startswith(API)}
    expected = {
        "/models", "/models/{name}", "/models/{name}/versions", "/models/{name}/versions/{version}",
        "/datasets", "/datasets/{name}/versions", "/datasets/{name}/versions/{version}",
        "/datasets/{name}/versions/{version}/content", "/runs", "/runs/{run_id}",
        "/runs/{run_id}/metrics/{key}", "/runs/{run_id}/artifacts",
        "/runs/{run_id}/artifacts/{name}", "/runs/{run_id}/lineage", "/jobs", "/jobs/{job_id}",
        "/jobs/{job_id}/events", "/jobs/{job_id}/cancel", "/calls", "/calls/{call_id}", "/keys",
        "/keys/{key_id}/revoke", "/drift", "/drift/{run_id}", "/drift/{run_id}/report.html",
        "/monitors", "/monitors/{run_id}", "/events", "/events/{event_id}", "/deliveries",
    }  # fmt: skip
    assert {API + p for p in expected} <= set(ours)
    mounted = set()
    for name in rest.MODULES:  # every route of every mounted module, documented
        for route in importlib.import_module(f"{rest.__name__}.{name}").router.routes:
            assert isinstance(route, APIRoute)
            path = API + route.path.replace(":path}", "}")
            mounted |= {(path, method.lower()) for method in route.methods}
    assert mounted == {(p, m) for p, ops in ours.items() for m in ops}
    for path, operations in ours.items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            assert operation["responses"]["200"]["description"], (method, path)
    assert "requestBody" in ours[API + "/keys"]["post"]


# --- models --------------------------------------------------------------------------------


def test_models_versions_labels_and_lineage(
    http: httpx.Client, keys: dict[str, str], world: Any
) -> None:
    key = keys["read"]
    models = {m["name"]: m for m in walk(http, key, "/models", 1)}
    assert set(models) == {"org/bot", "churn"}
    assert models["org/bot"]["labels"] == {"latest": 2, "production": 1}
    one = ok(get(http, key, "/models/org/bot"))
    assert (one["latest_version"], one["flavor"]) == (2, "upstream")
    assert ok(get(http, key, "/models/churn"))["flavor"] == "sklearn"
    versions = walk(http, key, "/models/org/bot/versions", 1)
    assert [(v["version"], v["labels"]) for v in versions] == [(1, ["production"]), (2, ["latest"])]
    assert versions[0]["spec"] == {"model": "openai/gpt-4o-mini"}
    by_label = ok(get(http, key, "/models/org/bot/versions/production"))
    assert by_label["version"] == 1
    v2 = ok(get(http, key, "/models/org/bot/versions/v2"))
    assert [r["id"] for r in v2["lineage"]["produced_by"]] == [world["ft"]]
    assert {r["id"] for r in v2["lineage"]["used_by"]} == set(world["evals"])
    error(get(http, key, "/models/org/bot/versions/9"), 404)
    error(get(http, key, "/models/org/bot/versions/staging"), 404)
    error(get(http, key, "/models/nobody"), 404)
    error(get(http, key, "/models/org/bot/versions/NOT A LABEL"), 400)
    error(get(http, key, "/models/..%2F..%2Fetc/versions"), 400)


# --- datasets ------------------------------------------------------------------------------


def test_datasets_metadata_and_download(
    http: httpx.Client, keys: dict[str, str], world: Any, gw: Gateway, tmp_path: Path
) -> None:
    key = keys["read"]
    listed = {d["name"]: d for d in walk(http, key, "/datasets", 1)}
    assert listed["qa"]["version"] == 2 and listed["qa"]["num_rows"] == 2
    versions = walk(http, key, "/datasets/qa/versions", 1)
    assert [v["version"] for v in versions] == [1, 2]
    one = ok(get(http, key, "/datasets/qa/versions/2"))
    assert (one["format"], one["columns"], one["filename"]) == ("jsonl", ["q", "a"], "qa.jsonl")
    assert str(tmp_path.parent) not in json.dumps(one)  # no server path, only the file name
    assert "source" not in one
    answer = get(http, key, "/datasets/qa/versions/1/content")
    assert answer.status_code == 200
    expected = b'{"q": "a", "a": 1}\n'
    assert answer.content == expected
    assert answer.headers["x-content-sha256"] == hashlib.sha256(expected).hexdigest()
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-disposition"].startswith("attachment")
    latest = get(http, key, "/datasets/qa/versions/latest/content")
    assert latest.content.count(b"\n") == 2
    error(get(http, key, "/datasets/qa/versions/production"), 400)  # datasets have no labels
    error(get(http, key, "/datasets/shards/versions/1/content"), 400)  # a folder
    error(get(http, key, "/datasets/qa/versions/7/content"), 404)
    error(get(http, key, "/datasets/none/versions"), 404)


def test_a_corrupted_blob_is_refused_not_served(
    http: httpx.Client, keys: dict[str, str], gw: Gateway, tmp_path: Path
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"x": 1}\n')
    info, _ = gw.registry.datasets.add("to-corrupt", data)
    blob = Path(gw.registry.artifacts._blob(info.digest))  # type: ignore[attr-defined]
    blob.write_text('{"x": 2}\n')
    answer = get(http, keys["read"], "/datasets/to-corrupt/versions/1/content")
    assert error(answer, 500)["code"] == "artifact_corrupted"
    assert b'{"x": 2}' not in answer.content


# --- runs ----------------------------------------------------------------------------------


def test_runs_filters_and_paging(http: httpx.Client, keys: dict[str, str], world: Any) -> None:
    key = keys["read"]
    every = walk(http, key, "/runs", 2)
    ids = [r["id"] for r in every]
    assert len(ids) == len(set(ids)) == 9
    assert ids[0] == world["merged"]  # newest first
    evals = walk(http, key, "/runs", 3, kind="eval")
    assert {r["id"] for r in evals} == {*world["evals"], world["merged"]}
    named = walk(http, key, "/runs", 1, kind="eval", name="suite-a")
    assert len(named) == 3 and {r["name"] for r in named} == {"suite-a"}
    assert ok(get(http, key, "/runs", kind="drift"))["data"] == []
    error(get(http, key, "/runs", kind="nonsense"), 400)


def test_forged_cursors_and_limits(http: httpx.Client, keys: dict[str, str], world: Any) -> None:
    key = keys["read"]
    for path in ("/runs", "/jobs", "/calls", "/models", "/drift"):
        for limit in (0, -1, 201, 10**30, "many"):
            error(get(http, key, path, limit=limit), 400)
    forged = ["garbage", "!!!", cursor_of("o:1"), cursor_of("k:" + "0" * 32), cursor_of("k:a;b"),
              cursor_of("k:' OR 1=1 --"), cursor_of("x:1"), cursor_of("k:")]  # fmt: skip
    for cursor in forged:
        answer = get(http, key, "/runs", cursor=cursor)
        assert error(answer, 400)["param"] == "cursor"
    for cursor in (cursor_of("k:abc"), cursor_of("k:99999999999999999999999"), "zz"):
        assert error(get(http, key, "/calls", cursor=cursor), 400)["param"] == "cursor"
        error(get(http, key, "/jobs/x/events", cursor=cursor), 400)
    assert error(get(http, key, "/models", cursor=cursor_of("k:1")), 400)["param"] == "cursor"
    error(get(http, key, "/runs", cursor="a" * 201), 400)


def test_one_run_series_artifacts_and_lineage(
    http: httpx.Client, keys: dict[str, str], world: Any
) -> None:
    key = keys["read"]
    ft = ok(get(http, key, f"/runs/{world['ft']}"))
    assert ft["kind"] == "finetune" and ft["series_keys"] == ["loss", "train/lr"]
    assert "series" not in ft
    assert ft["lineage"] == [
        {"subject_type": "dataset", "subject_ref": "qa@2", "role": "input"},
        {"subject_type": "model", "subject_ref": "org/bot@2", "role": "output"},
    ]
    loss = ok(get(http, key, f"/runs/{world['ft']}/metrics/loss"))
    assert [(p["step"], p["value"]) for p in loss["data"]] == [(s, 1.0 / s) for s in range(1, 6)]
    assert len(ok(get(http, key, f"/runs/{world['ft']}/metrics/train/lr"))["data"]) == 5
    error(get(http, key, f"/runs/{world['ft']}/metrics/nope"), 404)
    first = ok(get(http, key, f"/runs/{world['evals'][0]}"))
    assert first["params"] == {"i": 0} and first["tags"] == {"verdict": "pass"}
    assert first["metrics"] == {"accuracy": 0.5} and first["status"] == "succeeded"
    names = [a["name"] for a in ok(get(http, key, f"/runs/{world['evals'][0]}/artifacts"))["data"]]
    assert names == ["a-folder", "examples.jsonl", "notes/page.html"]
    answer = get(http, key, f"/runs/{world['evals'][0]}/artifacts/examples.jsonl")
    assert answer.content == world["examples"]
    assert answer.headers["x-content-sha256"] == hashlib.sha256(world["examples"]).hexdigest()
    # stored HTML goes out as bytes to save, never as a page of the gateway's origin
    page = get(http, key, f"/runs/{world['evals'][0]}/artifacts/notes/page.html")
    assert page.headers["content-type"] == "application/octet-stream"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert 'filename="page.html"' in page.headers["content-disposition"]
    error(get(http, key, f"/runs/{world['evals'][0]}/artifacts/a-folder"), 400)
    lineage = ok(get(http, key, f"/runs/{world['evals'][0]}/lineage"))
    assert [r["id"] for r in lineage["used_by"]] == [world["merged"]]
    assert lineage["inputs"] == [{"subject_type": "model", "subject_ref": "org/bot@2",
                                  "role": "input"}]  # fmt: skip


def test_hostile_run_ids_and_artifact_names(
    http: httpx.Client, keys: dict[str, str], world: Any, gw: Gateway
) -> None:
    key = keys["read"]
    run = world["evals"][0]
    blob = gw.registry.artifacts._blob(gw.registry.runs.artifacts(run)["examples.jsonl"])  # type: ignore[attr-defined]
    hostile = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "/etc/passwd",
               "..%5C..%5Cwindows", "examples.jsonl%00.txt", blob.lstrip("/"), "%2F" + blob,
               "%2e%2e", "examples.jsonl%2F%2e%2e", "EXAMPLES.JSONL",
               "%2e%2e%2fetc%2fpasswd"]  # fmt: skip
    for name in hostile:
        answer = http.get(f"/runs/{run}/artifacts/{name}", headers=auth(key))
        assert answer.status_code in (400, 404), (name, answer.status_code)
        assert b"root:" not in answer.content and world["examples"] not in answer.content
    for run_id in ("x' OR '1'='1", "1; DROP TABLE runs", "%27--", "a" * 64, "%00"):
        for suffix in ("", "/artifacts", "/lineage", "/metrics/loss"):
            answer = http.get(f"/runs/{run_id}{suffix}", headers=auth(key))
            assert answer.status_code in (400, 404), (run_id, suffix, answer.text)
    error(http.get(f"/runs/{'a' * 65}", headers=auth(key)), 400)
    assert len(walk(http, key, "/runs", 50)) == 9  # nothing was dropped


# --- jobs ----------------------------------------------------------------------------------


def test_jobs_events_and_cancel_and_operator_jobs_for_admins_only(
    http: httpx.Client, keys: dict[str, str], gw: Gateway
) -> None:
    """Fine-tuning jobs are registry:read; a retraining (``command``) job runs the operator's
    own program, so its argv and output lines are for admin keys only: to any other key its
    id is unknown (404) and the lists leave it out."""
    reg = gw.registry
    ft, _ = reg.jobs.create("finetune", {"base_model": "org/bot@1"})
    for i in range(6):
        reg.jobs.add_event(ft.id, f"step {i}", data={"step": i})
    cmd, _ = reg.jobs.create("command", {"model": "churn", "entry": ["python", "t.py"]},
                             job_id="rtjob-0123456789abcdef01234567")  # fmt: skip
    reg.jobs.add_event(cmd.id, "secret printed by t.py", data={"stream": "stdout"})
    key, admin = keys["read"], keys["admin"]

    every = walk(http, admin, "/jobs", 2)
    ids = [j["id"] for j in every]
    assert len(ids) == len(set(ids)) and {ft.id, cmd.id} <= set(ids)
    only = walk(http, admin, "/jobs", 5, kind="command")
    assert [j["id"] for j in only] == [cmd.id]
    assert only[0]["spec"]["entry"] == ["python", "t.py"]
    lines = walk(http, admin, f"/jobs/{cmd.id}/events", 5)
    assert "secret printed by t.py" in [e["message"] for e in lines]

    seen = walk(http, key, "/jobs", 2)
    assert {j["kind"] for j in seen} == {"finetune"} and ft.id in {j["id"] for j in seen}
    error(get(http, key, "/jobs", kind="command"), 403)
    for path in (f"/jobs/{cmd.id}", f"/jobs/{cmd.id}/events"):
        answer = get(http, key, path)
        error(answer, 404)
        assert "secret printed" not in answer.text
    error(http.post(f"/jobs/{cmd.id}/cancel", headers=auth(keys["write"])), 404)
    assert reg.jobs.get(cmd.id).status == "queued"

    error(get(http, key, "/jobs", status="bogus"), 400)
    events = walk(http, key, f"/jobs/{ft.id}/events", 2)
    assert [e["message"] for e in events] == ["job created (queued)"] + [
        f"step {i}" for i in range(6)
    ]
    assert len({e["id"] for e in events}) == 7
    error(get(http, key, "/jobs/ftjob-none"), 404)
    error(get(http, key, "/jobs/ftjob-none/events"), 404)
    error(http.post(f"/jobs/{ft.id}/cancel", headers=auth(key)), 403)
    assert ok(get(http, key, f"/jobs/{ft.id}"))["status"] == "queued"
    cancelled = ok(http.post(f"/jobs/{ft.id}/cancel", headers=auth(keys["write"])))
    assert cancelled["status"] == "cancelled" and reg.jobs.get(ft.id).status == "cancelled"
    error(http.post("/jobs/ftjob-none/cancel", headers=auth(keys["write"])), 404)
    cancelled = ok(http.post(f"/jobs/{cmd.id}/cancel", headers=auth(admin)))
    assert cancelled["status"] == "cancelled"


# --- calls ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calls(gw: Gateway, keys: dict[str, str]) -> dict[str, Any]:
    viewer = gw.registry.calls.key_ids("viewer")[0]
    now = datetime.now(UTC)
    records = []
    for i in range(12):
        records.append(NewCall(
            request_id=f"req-rest-{i:03d}", trace_id=f"{i:032x}", operation="chat",
            status_code=(200, 429, 503)[i % 3], latency_ms=10.0 + i,
            created_at=now - timedelta(minutes=60 - i), route="gpt-test" if i < 8 else "other",
            model="stub-model", prompt_name="support" if i % 2 else None,
            prompt_version=(1 + i % 4 // 2) if i % 2 else None,
            key_id=viewer if i < 4 else None,
        ))  # fmt: skip
    gw.registry.calls.record(records)
    return {"now": now, "viewer": viewer}


def test_calls_filters_and_keyset_paging(
    http: httpx.Client, keys: dict[str, str], calls: dict[str, Any]
) -> None:
    key = keys["read"]

    def ids(**params: Any) -> list[str]:
        return [c["request_id"] for c in walk(http, key, "/calls", 5, **params)
                if c["request_id"].startswith("req-rest-")]  # fmt: skip

    every = ids()
    assert every == [f"req-rest-{i:03d}" for i in reversed(range(12))]  # newest first, once each
    assert ids(route="other") == [f"req-rest-{i:03d}" for i in (11, 10, 9, 8)]
    assert len(ids(model="stub-model")) == 12
    assert ids(prompt="support") == [f"req-rest-{i:03d}" for i in (11, 9, 7, 5, 3, 1)]
    assert ids(prompt="support@2") == ids(prompt="support", prompt_version=2)
    assert ids(prompt="support@2") == [f"req-rest-{i:03d}" for i in (11, 7, 3)]
    assert (
        ids(key="viewer") == ids(key=calls["viewer"]) == [f"req-rest-{i:03d}" for i in (3, 2, 1, 0)]
    )
    assert ids(status="5xx") == [f"req-rest-{i:03d}" for i in (11, 8, 5, 2)]
    assert ids(status=["429", "503"]) == [f"req-rest-{i:03d}" for i in (11, 10, 8, 7, 5, 4, 2, 1)]
    since = (calls["now"] - timedelta(minutes=52)).isoformat()
    until = (calls["now"] - timedelta(minutes=50)).isoformat()
    assert ids(since=since, until=until) == ["req-rest-009", "req-rest-008"]
    assert ids(since="30m") == []
    error(get(http, key, "/calls", status="6xx"), 400)
    error(get(http, key, "/calls", since="yesterday"), 400)
    error(get(http, key, "/calls", prompt="support@production"), 400)
    error(get(http, key, "/calls", prompt_version=0), 400)
    error(get(http, key, "/calls", key="no-such-key"), 404)
    one = ok(get(http, key, "/calls/req-rest-005"))
    assert one["status_code"] == 503 and one["trace_id"] == f"{5:032x}"
    assert ok(get(http, key, f"/calls/{one['id']}"))["request_id"] == "req-rest-005"
    error(get(http, key, "/calls/req-rest-999"), 404)
    error(get(http, key, "/calls/' OR 1=1 --"), 404)


# --- keys ----------------------------------------------------------------------------------


def test_keys_create_shows_the_secret_once_and_revoke(
    http: httpx.Client, keys: dict[str, str], gw: Gateway
) -> None:
    admin = auth(keys["admin"])
    body = {"name": "ci", "scopes": ["registry:read"], "rpm": 60,
            "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}  # fmt: skip
    made = ok(http.post("/keys", headers=admin, json=body))
    secret = made["key"]
    assert secret.startswith("lg-") and made["prefix"] == secret[:10]
    assert made["scopes"] == ["registry:read"] and made["rpm"] == 60 and made["active"]
    assert made["created_by"].startswith("api:")
    # the new key works, with its scope only
    assert ok(get(http, secret, "/runs", limit=1))["data"] is not None
    error(get(http, secret, "/keys"), 403)
    listed = walk(http, keys["admin"], "/keys", 2)
    dump = json.dumps(listed)
    for shown in (secret, *keys.values()):
        assert shown not in dump and hashlib.sha256(shown.encode()).hexdigest() not in dump
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert [k["name"] for k in listed if k["id"] == made["id"]] == ["ci"]
    revoked = ok(http.post(f"/keys/{made['id']}/revoke", headers=admin))
    assert revoked["revoked_at"] and not revoked["active"] and "key" not in revoked
    deadline = time.monotonic() + 10
    while get(http, secret, "/runs").status_code != 401:  # refused within key_cache_ttl_s
        assert time.monotonic() < deadline
        time.sleep(0.05)
    error(http.post("/keys/key_none/revoke", headers=admin), 404)


def test_keys_create_refuses_bad_bodies(
    http: httpx.Client, keys: dict[str, str], gw: Gateway
) -> None:
    admin = auth(keys["admin"])
    before = len(gw.registry.keys.list())
    cases = [
        ({"name": "x", "scopes": ["root"]}, "scopes"),
        ({"name": "x", "secret": "lg-chosen-by-the-caller"}, "secret"),
        ({"name": "x", "key_hash": "00"}, "key_hash"),
        ({"name": ""}, "name"),
        ({"name": "x", "rpm": 0}, "rpm"),
        ({"name": "x", "budget_usd": -1}, "budget_usd"),
        ({"name": "x", "expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"scopes": ["admin"]}, "name"),
    ]
    for body, param in cases:
        assert error(http.post("/keys", headers=admin, json=body), 400)["param"] == param, body
    error(http.post("/keys", headers=admin, content=b"[1, 2]"), 400)
    error(http.post("/keys", headers=admin, content=b"{nope"), 400)
    assert len(gw.registry.keys.list()) == before


# --- drift and monitors --------------------------------------------------------------------


@pytest.fixture(scope="module")
def drift_run(gw: Gateway, tmp_path_factory: pytest.TempPathFactory) -> str:
    from lockgate.evals.drift.runs import run_drift_check

    tmp = tmp_path_factory.mktemp("drift")
    column = "<script>alert('x')</script>"
    for name, shift in (("drift-ref", 0.0), ("drift-cur", 30.0)):
        rows = [{column: float(i % 50) + shift, "plan": ("a", "b")[i % 2]} for i in range(200)]
        path = tmp / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        gw.registry.datasets.add(name, path)
    return run_drift_check(gw.registry, "drift-ref@1", "drift-cur@1").run_id


def test_drift_reports(
    http: httpx.Client, keys: dict[str, str], drift_run: str, world: Any
) -> None:
    key = keys["read"]
    listed = walk(http, key, "/drift", 1)
    assert [r["id"] for r in listed] == [drift_run]
    one = ok(get(http, key, f"/drift/{drift_run}"))
    assert one["kind"] == "drift" and one["metrics"]["dataset_drift"] == 1.0
    assert {c["column"] for c in one["report"]["columns"]} == {
        "<script>alert('x')</script>",
        "plan",
    }
    page = get(http, key, f"/drift/{drift_run}/report.html")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-content-type-options"] == "nosniff"
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    error(get(http, key, f"/drift/{world['ft']}"), 404)  # a run, but not a drift run
    error(get(http, key, f"/drift/{world['ft']}/report.html"), 404)


def test_monitor_decisions(http: httpx.Client, keys: dict[str, str], gw: Gateway) -> None:
    reg = gw.registry
    made = []
    for i, decision in enumerate(("quiet", "pending", "fired")):
        run = reg.runs.create("monitor", name="churn-drift", tags={"policy": "churn-drift"})
        reg.runs.tag(run.id, {"decision": decision, "reason": f"share {i}"})
        reg.runs.log_metrics(run.id, {"fired": float(decision == "fired"), "breached": 1.0})
        reg.runs.set_status(run.id, "succeeded")
        made.append(run.id)
    other = reg.runs.create("monitor", name="latency")
    key = keys["read"]
    listed = walk(http, key, "/monitors", 2, policy="churn-drift")
    assert [r["id"] for r in listed] == made[::-1]
    assert [(r["decision"], r["fired"]) for r in listed] == [
        ("fired", True), ("pending", False), ("quiet", False)]  # fmt: skip
    assert {r["id"] for r in walk(http, key, "/monitors", 10)} >= {*made, other.id}
    one = ok(get(http, key, f"/monitors/{made[2]}"))
    assert (one["policy"], one["decision"], one["reason"]) == ("churn-drift", "fired", "share 2")
    assert one["metrics"]["breached"] == 1.0
    error(get(http, key, f"/monitors/{made[0][:8]}"), 404)


# --- events --------------------------------------------------------------------------------


def test_events_and_deliveries(
    http: httpx.Client, keys: dict[str, str], gw: Gateway, world: Any
) -> None:
    reg = gw.registry
    for i in range(4):
        reg.events.record("budget.threshold", f"key:k{i}", {"share": 0.5 + i / 10})
    first = reg.events.list(limit=1)[0]
    reg.events.claim("ops-hook", ["label.moved", "budget.threshold"])
    reg.events.delivered("ops-hook", first.id, status_code=204)
    key = keys["admin"]
    every = walk(http, key, "/events", 2)
    assert [e["id"] for e in every] == sorted({e["id"] for e in every})  # oldest first, once
    assert {"label.moved", "budget.threshold"} <= {e["type"] for e in every}
    budget = walk(http, key, "/events", 3, type="budget.threshold")
    assert [e["subject"] for e in budget] == [f"key:k{i}" for i in range(4)]
    assert (
        walk(http, key, "/events", 3, subject="model:org/bot")[0]["payload"]["label"]
        == "production"
    )
    error(get(http, key, "/events", type="nope"), 400)
    one = ok(get(http, key, f"/events/{first.id}"))
    assert one["deliveries"][0]["webhook"] == "ops-hook"
    assert one["deliveries"][0]["status"] == "delivered"
    error(get(http, key, "/events/999999"), 404)
    error(get(http, key, "/events/not-a-number"), 400)
    deliveries = walk(http, key, "/deliveries", 2, webhook="ops-hook")
    assert len(deliveries) == len(every) and all(d["webhook"] == "ops-hook" for d in deliveries)
    assert len(walk(http, key, "/deliveries", 5, status="pending")) == len(every) - 1
    error(get(http, key, "/deliveries", status="lost"), 400)
