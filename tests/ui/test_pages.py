"""The read-only pages (calls, models, jobs, drift reports, monitor decisions): in the
browser (screenshots and axe-core, as tests/ui/test_ui.py) and over HTTP (escaping, bad
filter values, paging, who sees operator jobs)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lockgate.gateway.ui import charts
from lockgate.registry import Registry
from lockgate.registry.calls import NewCall
from lockgate.registry.records import LineageEdge
from tests.ui.conftest import (
    CSRF,
    Keys,
    Served,
    check_page,
    registry_folder,
    sign_in,
    start_serve,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
N_CALLS = 130


@dataclass
class Seeded:
    served: Served
    admin: str
    finetune_job: str
    command_job: str
    drift_run: str
    monitor_run: str
    trace_call: int
    hostile_call: int


def _seed(registry: Registry, folder: Path) -> dict[str, Any]:
    registry.prompts.push("support/greeting", "Hello {{ name }}.", message="first")
    now = datetime.now(UTC)
    calls = []
    for i in range(N_CALLS):
        calls.append(
            NewCall(
                request_id=f"req-{i:04d}",
                operation="chat",
                status_code=(500 if i % 10 == 0 else 200),
                latency_ms=100.0 + i,
                created_at=now - timedelta(minutes=N_CALLS - i),
                route="support" if i % 2 == 0 else "sales",
                model="gpt-small" if i % 3 else "gpt-large",
                prompt_name="support/greeting",
                prompt_version=1,
                input_tokens=10,
                output_tokens=20,
                cost_usd=0.0001,
            )
        )
    calls.append(
        NewCall(
            request_id="req-traced",
            operation="chat",
            status_code=200,
            latency_ms=42.0,
            trace_id=TRACE,
            route="support",
            model="gpt-small",
            created_at=now,
        )
    )
    calls.append(
        NewCall(
            request_id="req-hostile",
            operation="chat",
            status_code=429,
            latency_ms=1.0,
            route=HOSTILE,
            model=HOSTILE,
            error_type=HOSTILE,
            created_at=now,
        )
    )
    registry.calls.record(calls)
    page = registry.calls.query(limit=2)
    hostile_call, trace_call = page.calls[0].id, page.calls[1].id

    # models: versions, labels and their history, lineage
    registry.models.register("chat-bot", "upstream", {"model": "gpt-small"}, message=HOSTILE,
                             author="ana")  # fmt: skip
    registry.models.register("chat-bot", "upstream", {"model": "gpt-large"}, message="bigger")
    registry.labels.set("model", "chat-bot", "production", 1, force=True, reason="first ship")
    registry.labels.set("model", "chat-bot", "production", 2, force=True, reason=HOSTILE)
    registry.models.register("org/churn", "upstream", {"model": "x"}, message="classic stand-in")
    tuning = registry.runs.create(
        "finetune", name="tune-bot", lineage=[LineageEdge("model", "chat-bot@2", "output")]
    )
    registry.runs.create(
        "eval", name="eval-bot", lineage=[LineageEdge("model", "chat-bot@2", "input")]
    )

    # jobs: a fine-tuning job with a loss curve, an operator's retraining job
    job, _ = registry.jobs.create("finetune", {"model": "chat-bot", "base_model": "tiny"})
    for step in range(1, 31):
        registry.jobs.add_event(
            job.id, f"step {step}/30: loss {2.0 / step:.4g}",
            data={"step": step, "total_steps": 30, "loss": 2.0 / step, "learning_rate": 1e-4},
        )  # fmt: skip
    registry.jobs.add_event(job.id, HOSTILE, level="warning")
    command, _ = registry.jobs.create("command", {"argv": ["retrain.sh", "--secret-flag"]})

    # a drift report and a monitor decision that used it
    drift = registry.runs.create("drift", name="churn-drift", params={
        "reference": "dataset:churn-ref@1", "current": "dataset:churn-now@1",
        "subject": "model:org/churn@1"})  # fmt: skip
    report = {
        "drifted": True, "share_drifted": 0.5, "n_drifted": 1, "n_columns": 2,
        "drift_share": 0.5, "n_reference": 100, "n_current": 90, "skipped": {},
        "columns": [
            {"column": "tenure", "kind": "numeric", "test": "ks", "statistic": 0.31,
             "p_value": 0.0004, "score": 0.31, "threshold": 0.05, "drifted": True},
            {"column": HOSTILE, "kind": "categorical", "test": "chisquare", "statistic": 1.2,
             "p_value": 0.55, "score": 0.55, "threshold": 0.05, "drifted": False},
        ],
    }  # fmt: skip
    (folder / "drift.json").write_text(json.dumps(report))
    (folder / "report.html").write_text(
        "<html><body><h1>Drift</h1><script>1</script></body></html>"
    )
    registry.runs.log_artifact(drift.id, "drift.json", folder / "drift.json")
    registry.runs.log_artifact(drift.id, "report.html", folder / "report.html")
    registry.runs.set_status(drift.id, "succeeded", metrics={
        "share_drifted": 0.5, "drifted_columns": 1, "columns": 2, "dataset_drift": 1,
        "n_reference": 100, "n_current": 90})  # fmt: skip
    monitor = registry.runs.create(
        "monitor", name="churn-watch", lineage=[LineageEdge("run", drift.id, "input")],
        tags={"decision": "fired", "reason": "share_drifted 0.5 >= 0.3", "actions": [
            {"action": "webhook", "ok": True}]},
    )  # fmt: skip
    registry.runs.set_status(monitor.id, "succeeded", metrics={"fired": 1, "breached": 1})
    del tuning
    return {
        "finetune_job": job.id, "command_job": command.id, "drift_run": drift.id,
        "monitor_run": monitor.id, "trace_call": trace_call, "hostile_call": hostile_call,
    }  # fmt: skip


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Seeded]:
    folder, settings = registry_folder(tmp_path_factory, "ui-pages", sqlite_template)
    seed = Registry(settings, actor="seed")
    try:
        writer = seed.keys.create("writer", scopes=["registry:read", "registry:write"])
        reader = seed.keys.create("reader", scopes=["registry:read"])
        inference = seed.keys.create("caller", scopes=["inference"])
        admin = seed.keys.create("operator", scopes=["admin"])
        ids = _seed(seed, folder)
    finally:
        seed.close()
    keys = Keys(str(writer.secret), str(reader.secret), str(inference.secret))
    server = start_serve(folder, settings, keys)
    yield Seeded(server, str(admin.secret), **ids)
    server.registry.close()
    server.stop()


def _signed_in(served: Served, key: str) -> httpx.Client:
    client = httpx.Client(base_url=served.url, follow_redirects=False, timeout=10)
    answer = client.get("/ui/sign-in")
    token = CSRF.search(answer.text)
    assert token is not None
    answer = client.post("/ui/sign-in", data={"csrf": token.group(1), "key": key})
    assert answer.status_code == 303, answer.text
    return client


# -- in the browser ----------------------------------------------------------------------


def test_the_read_only_pages_in_the_browser(page: Any, seeded: Seeded, artifacts: Path) -> None:
    served = seeded.served
    sign_in(page, served, served.keys.reader)

    # calls: the newest first, filtered, then one call's details with its trace id
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Calls").click()
    page.wait_for_url(re.compile(r"/ui/calls$"))
    assert page.locator("tbody tr").count() == 50
    check_page(page, artifacts, "20-calls")
    page.get_by_label("Route").fill("support")
    page.get_by_label("Status").fill("5xx")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"route=support.*status=5xx"))
    statuses = page.locator("tbody tr td:nth-child(3) .status").all_inner_texts()
    assert statuses and set(statuses) == {"500"}
    routes = set(page.locator("tbody tr td:nth-child(4)").all_inner_texts())
    assert routes == {"support"}
    check_page(page, artifacts, "21-calls-filtered")
    page.get_by_label("Since").fill("yesterday-ish")
    page.get_by_role("button", name="Filter").click()
    assert "time ago" in page.get_by_role("alert").inner_text()
    assert page.get_by_label("Since").get_attribute("aria-invalid") == "true"
    check_page(page, artifacts, "22-calls-bad-filter")

    page.goto(served.url + "/ui/calls?route=support")
    page.get_by_role("link", name=f"#{seeded.trace_call}", exact=True).click()
    page.wait_for_url(re.compile(rf"/ui/calls/{seeded.trace_call}$"))
    assert page.locator("code.trace-id").inner_text() == TRACE
    check_page(page, artifacts, "23-call-details")

    # models: list, a model's versions with labels and label history, a version's lineage
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    assert "production → v2" in page.locator("tbody tr", has_text="chat-bot").inner_text()
    check_page(page, artifacts, "24-models")
    page.get_by_role("link", name="chat-bot").click()
    assert page.get_by_role("heading", name="Label history").is_visible()
    assert "first ship" in page.locator("main").inner_text()
    check_page(page, artifacts, "25-model")
    page.get_by_role("link", name="v2", exact=True).click()
    assert "tune-bot" in page.locator("#produced-by").inner_text()
    assert "eval-bot" in page.locator("#used-by").inner_text()
    check_page(page, artifacts, "26-model-version")

    # jobs: a fine-tuning job's loss curve (an inline SVG chart) and its events
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
    assert page.get_by_role("link", name=seeded.command_job).count() == 0  # admin only
    check_page(page, artifacts, "27-jobs")
    page.get_by_role("link", name=seeded.finetune_job).click()
    chart = page.get_by_role("img", name=re.compile("Training loss"))
    assert chart.evaluate("e => e.tagName") == "svg"
    assert page.locator("svg.chart polyline[data-series=loss]").count() == 1
    assert "30 points" in (page.locator("svg.chart desc").text_content() or "")
    page.get_by_text("The loss by step, as a table").click()
    assert page.locator("#loss-table tbody tr").count() == 30
    assert "step 30/30" in page.locator("main").inner_text()
    check_page(page, artifacts, "28-job-loss-chart")

    # drift reports and monitor decisions
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Drift").click()
    check_page(page, artifacts, "29-drift-reports")
    page.get_by_role("link", name="churn-drift").click()
    assert "50.0% of columns drifted" in page.locator("main").inner_text()
    assert page.locator("#drift-columns tbody tr").count() == 2
    check_page(page, artifacts, "30-drift-report")
    with page.expect_response(re.compile(r"/report\.html$")) as answer:
        page.get_by_role("link", name="Open the HTML report").click()
    assert answer.value.status == 200
    assert "sandbox" in answer.value.headers["content-security-policy"]
    page.goto(served.url + "/ui/monitors")
    check_page(page, artifacts, "31-monitor-decisions")
    page.locator("tbody tr", has_text="churn-watch").get_by_role("link").click()
    assert "share_drifted 0.5 >= 0.3" in page.locator("main").inner_text()
    check_page(page, artifacts, "32-monitor-decision")

    for path in (f"/ui/calls/{seeded.hostile_call}", "/ui/calls?status=4xx",
                 "/ui/models/chat-bot", f"/ui/drift/{seeded.drift_run}"):  # fmt: skip
        page.goto(served.url + path)
        assert page.evaluate("() => window.pwned === undefined"), path
        assert page.locator("main script, main img").count() == 0, path


def test_an_admin_sees_operator_jobs(page: Any, seeded: Seeded, artifacts: Path) -> None:
    served = seeded.served
    sign_in(page, served, seeded.admin)
    page.goto(served.url + "/ui/jobs?kind=command")
    page.get_by_role("link", name=seeded.command_job).click()
    assert "retrain.sh" in page.locator("main").inner_text()
    check_page(page, artifacts, "33-command-job-admin")


# -- over HTTP ---------------------------------------------------------------------------


def test_pages_need_a_session(seeded: Seeded) -> None:
    with httpx.Client(base_url=seeded.served.url, follow_redirects=False) as client:
        for path in ("/ui/calls", f"/ui/calls/{seeded.trace_call}", "/ui/models",
                     "/ui/models/chat-bot", "/ui/model-version/chat-bot?version=1", "/ui/jobs",
                     f"/ui/jobs/{seeded.finetune_job}", "/ui/drift",
                     f"/ui/drift/{seeded.drift_run}", f"/ui/drift/{seeded.drift_run}/report.html",
                     "/ui/monitors", f"/ui/monitors/{seeded.monitor_run}"):  # fmt: skip
            answer = client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/ui/sign-in"), path


def test_a_read_only_key_cannot_see_operator_jobs(seeded: Seeded) -> None:
    with closing(_signed_in(seeded.served, seeded.served.keys.reader)) as client:
        answer = client.get(f"/ui/jobs/{seeded.command_job}")
        assert answer.status_code == 404
        assert "retrain.sh" not in answer.text and "secret-flag" not in answer.text
        assert client.get("/ui/jobs/ftjob-unknown").status_code == 404  # the same answer
        listing = client.get("/ui/jobs")
        assert seeded.finetune_job in listing.text and seeded.command_job not in listing.text
        answer = client.get("/ui/jobs?kind=command")
        assert answer.status_code == 400 and "admin keys only" in answer.text
        assert seeded.command_job not in answer.text
        assert client.get(f"/ui/jobs/{seeded.finetune_job}").status_code == 200
    with closing(_signed_in(seeded.served, seeded.admin)) as client:
        assert client.get(f"/ui/jobs/{seeded.command_job}").status_code == 200
        assert seeded.command_job in client.get("/ui/jobs").text


def test_hostile_names_are_escaped(seeded: Seeded) -> None:
    with closing(_signed_in(seeded.served, seeded.served.keys.reader)) as client:
        pages = [f"/ui/calls/{seeded.hostile_call}", "/ui/calls?status=429",
                 "/ui/calls?route=" + HOSTILE, "/ui/models/chat-bot",
                 "/ui/model-version/chat-bot?version=1", f"/ui/jobs/{seeded.finetune_job}",
                 f"/ui/drift/{seeded.drift_run}"]  # fmt: skip
        for path in pages:
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert "<script>window.pwned" not in answer.text, path
            assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in answer.text, path
            assert 'onerror="window' not in answer.text, path
            assert answer.headers["content-security-policy"].startswith("default-src 'none'")
        # a prompt/route filter echoes the value escaped into the form
        answer = client.get("/ui/calls", params={"model": '"><script>x</script>'})
        assert '"><script>x' not in answer.text


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ("status=abc", "status", "status code like 429"),
        ("status=6xx", "status", "status code like 429"),
        ("since=not-a-time", "since", "time ago"),
        ("until=2025-13-45", "until", "time ago"),
        ("key=nobody", "key", "no key with id or name"),
        ("prompt=support/greeting@production", "prompt", "NAME@VERSION"),
        ("prompt=%3Cbad%3E", "prompt", "invalid"),
        ("before=12abc", "before", "page link is broken"),
    ],
)
def test_bad_filter_values_get_a_clear_message(
    seeded: Seeded, query: str, field: str, words: str
) -> None:
    with closing(_signed_in(seeded.served, seeded.served.keys.reader)) as client:
        answer = client.get("/ui/calls?" + query)
        assert answer.status_code == 400, answer.text
        assert words in answer.text
        if field != "before":
            assert f'id="f-{field}" name="{field}"' in answer.text
            assert f'id="f-{field}-error"' in answer.text


def test_other_bad_values_are_not_server_errors(seeded: Seeded) -> None:
    with closing(_signed_in(seeded.served, seeded.served.keys.reader)) as client:
        expected = {
            "/ui/calls/abc": 404, "/ui/calls/99999999": 404, "/ui/calls/" + "9" * 40: 404,
            "/ui/models/%3Cscript%3E": 404, "/ui/models/nope": 404,
            "/ui/model-version/chat-bot?version=x": 400,
            "/ui/model-version/chat-bot?version=99": 404, "/ui/jobs?status=bogus": 400,
            "/ui/jobs?after=nope": 400, "/ui/jobs/" + "x" * 300: 404,
            "/ui/drift?after=nope": 400, f"/ui/drift/{seeded.monitor_run}": 404,
            f"/ui/monitors/{seeded.drift_run}": 404, "/ui/monitors/nope": 404,
            f"/ui/drift/{seeded.monitor_run}/report.html": 404,
        }  # fmt: skip
        for path, status in expected.items():
            assert client.get(path).status_code == status, path


def test_calls_are_paged_newest_first_without_gaps(seeded: Seeded) -> None:
    seen: list[int] = []
    with closing(_signed_in(seeded.served, seeded.served.keys.reader)) as client:
        path: str | None = "/ui/calls?model=gpt-small"
        while path is not None:
            answer = client.get(path)
            assert answer.status_code == 200
            seen += [int(n) for n in re.findall(r'href="/ui/calls/(\d+)"', answer.text)]
            more = re.search(r'href="(/ui/calls\?[^"]*before=\d+)" rel="next"', answer.text)
            path = more.group(1).replace("&amp;", "&") if more else None
    expected = [c.id for c in seeded.served.registry.calls.query(
        _filter(model="gpt-small"), limit=1000).calls]  # fmt: skip
    assert seen == expected and len(seen) > 50


def _filter(**kwargs: Any) -> Any:
    from lockgate.registry.calls import CallFilter

    return CallFilter(**kwargs)


def test_the_drift_html_report_is_sandboxed(seeded: Seeded) -> None:
    with closing(_signed_in(seeded.served, seeded.served.keys.reader)) as client:
        answer = client.get(f"/ui/drift/{seeded.drift_run}/report.html")
        assert answer.status_code == 200
        csp = answer.headers["content-security-policy"]
        assert "sandbox" in csp and "script-src" not in csp and "default-src 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"


# -- the chart module --------------------------------------------------------------------


def test_the_chart_escapes_and_describes() -> None:
    svg = charts.line_chart(
        [charts.Series("loss<script>", [(1, 2.0), (2, 1.0), (3, 0.5)])],
        title="<b>t</b>", x_label="step", y_label="loss",
    )  # fmt: skip
    assert "<script>" not in svg and "&lt;b&gt;t&lt;/b&gt;" in svg
    assert 'role="img"' in svg and "3 points" in svg and "lowest 0.5 at x 3" in svg
    assert charts.line_chart([], title="t", x_label="x", y_label="y").count("no data") == 1
    long = [(float(i), float((i * 7919) % 101)) for i in range(20_000)]
    thinned = charts.thin(long)
    assert len(thinned) <= charts.MAX_POINTS + 1 and thinned[-1] == long[-1]
    assert min(p[1] for p in thinned) == 0 and max(p[1] for p in thinned) == 100
    assert charts.ticks(0, 1) == [0, 0.25, 0.5, 0.75, 1.0]
    assert charts.ticks(3, 250) == [50, 100, 150, 200, 250]
