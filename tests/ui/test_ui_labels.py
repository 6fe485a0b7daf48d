"""Label control, playground and evidence pages, end to end in headless Chromium against
``lockgate serve`` on loopback (with a fake upstream on loopback for the playground), plus
the HTTP-level refusals: no CSRF token, a read-only key moving a label, a label key approving.

Every page visited is screenshot and checked by axe-core (:func:`check_page`)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from lockgate.gateway.background import ServerThread
from lockgate.registry import LineageEdge, Registry, RegistrySettings
from lockgate.registry.calls import NewCall
from lockgate.registry.gates import SuitePin, suite_digest
from tests.gateway.upstream import Upstream
from tests.ui.conftest import (
    check_page,
    launch,
    registry_folder,
    sign_in,
    wait_for_text,
    write_config,
)

NAME = "shop/answer"
SUITE = SuitePin("shop-accuracy", suite_digest({"name": "shop-accuracy"}, "sha256:data"))
KEYS = {
    "releaser": ["registry:read", "registry:label", "inference"],
    "approver": ["registry:read", "registry:approve"],
    "reader": ["registry:read"],
    "labeller": ["registry:read", "registry:label"],
}
INCONCLUSIVE = ("inconclusive: 12 examples are too few to tell; at least 20 are needed "
                "(accuracy = 0.9, n=12)")  # fmt: skip


def _eval_run(reg: Registry, version: int, verdict: str, gate_verdict: str, reason: str,
              folder: Path, scores: list[float] | None = None,
              baseline_run: str | None = None) -> str:  # fmt: skip
    edge = LineageEdge("prompt", f"{NAME}@{version}", "input")
    run = reg.runs.create("eval", name=SUITE.name, params={"suite_digest": SUITE.digest},
                          lineage=[edge])  # fmt: skip
    metrics = {"eval.errors": 0, "accuracy": sum(scores or [0.9]) / len(scores or [1])}
    reg.runs.set_status(run.id, "succeeded", metrics=metrics)
    gate = {"gate": "accuracy >= 0.8", "kind": "absolute", "verdict": gate_verdict,
            "reason": reason, "waived": False}  # fmt: skip
    tags: dict[str, Any] = {"verdict": verdict, "gates": [gate], "verdict_reason": reason}
    if baseline_run:
        tags |= {"baseline_run": baseline_run, "baseline": f"run:{baseline_run}"}
    reg.runs.tag(run.id, tags)
    if scores is not None:
        path = folder / f"examples-{run.id}.jsonl"
        rows = [{"key": f"q{i}", "scores": {"accuracy": {"value": s}}, "error": None}
                for i, s in enumerate(scores)]  # fmt: skip
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        reg.runs.log_artifact(run.id, "examples.jsonl", path)
        page = folder / "report.html"
        page.write_text("<!doctype html><title>eval report</title><p>report <script>x()</script>")
        reg.runs.log_artifact(run.id, "report.html", page)
    return run.id


def _seed(settings: RegistrySettings, folder: Path) -> dict[str, str]:
    seed = Registry(settings, actor="seed")
    try:
        secrets = {n: str(seed.keys.create(n, scopes=s).secret) for n, s in KEYS.items()}
        for i, text in enumerate(
            [
                "Answer {{ question }}.",
                "Reply {{ question }} now.",
                "Answer {{ question }} kindly.",
                "Answer {{ question }}!",
            ]
        ):
            seed.prompts.push(NAME, text, {"model": "gpt-test"}, message=f"draft {i + 1}",
                              author="ana")  # fmt: skip
        seed.labels.set("prompt", NAME, "production", 1, force=True, reason="first release")
        seed.gates.set_policy("prompt", NAME, "production", [SUITE])
        seed.labels.protect("prompt", NAME, "staging", 1)
        base = _eval_run(seed, 1, "pass", "pass", "accuracy = 0.8", folder,
                         scores=[1, 1, 0, 1, 0, 1, 1, 0, 1, 1])  # fmt: skip
        _eval_run(seed, 2, "fail", "fail", "accuracy = 0.5 (95% CI 0.3..0.7, n=40), needs >= 0.8",
                  folder)  # fmt: skip
        _eval_run(seed, 3, "pass", "pass", "accuracy = 0.9 (n=40) >= 0.8", folder,
                  scores=[1, 1, 1, 1, 0, 1, 1, 1, 1, 1], baseline_run=base)  # fmt: skip
        _eval_run(seed, 4, "inconclusive", "inconclusive", INCONCLUSIVE, folder)
        now = datetime.now(UTC)
        seed.calls.record([
            NewCall(request_id=f"seed-{i}", operation="chat", latency_ms=100.0 + i * 7,
                    status_code=500 if i % 10 == 0 else 200,
                    created_at=now - timedelta(hours=i), prompt_name=NAME, prompt_version=3,
                    input_tokens=20, output_tokens=5 + i, cost_usd=0.0001 * i)
            for i in range(30)
        ])  # fmt: skip
    finally:
        seed.close()
    return secrets


class Site:
    def __init__(self, url: str, registry: Registry, keys: dict[str, str]) -> None:
        self.url, self.registry, self.keys = url, registry, keys


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Site]:
    folder, settings = registry_folder(tmp_path_factory, "ui-labels", sqlite_template)
    data = settings.data_dir
    keys = _seed(settings, folder)
    upstream = Upstream()
    up = ServerThread(upstream.app).start()
    config = write_config(folder, data, up.url + "/v1")
    url, process = launch(folder, config)
    registry = Registry(settings, actor="tester")
    yield Site(url, registry, keys)
    registry.close()
    process.terminate()
    process.communicate(timeout=30)
    up.stop()


def sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/sign-in"))


def test_a_refused_gate_then_a_release_an_approval_and_a_forced_move(
    page: Any, site: Site, artifacts: Path
) -> None:
    sign_in(page, site, site.keys["releaser"])
    page.goto(site.url + f"/ui/prompts/{NAME}")
    page.get_by_role("link", name="Labels and releases").click()
    page.wait_for_url(re.compile(r"/ui/prompt-labels/shop/answer"))

    # the verdict before the move: version 2's suite run failed
    page.get_by_label("Candidate version").select_option("2")
    page.get_by_role("button", name="Show the gate's verdict").click()
    verdict = page.locator("#verdict")
    assert "refused" in verdict.inner_text()
    row = page.locator("table.checks tbody tr").first
    assert "suite shop-accuracy" in row.inner_text() and "fail" in row.inner_text()
    assert "needs >= 0.8" in row.inner_text()
    assert (
        row.get_by_role("link")
        .get_attribute("href")
        .endswith("/ui/prompt-evidence/shop/answer?version=2#run-" + _run_of(site, 2))
    )
    check_page(page, artifacts, "labels-01-verdict-fail")

    # moving anyway is refused by the gate, with every check shown; nothing moves
    page.get_by_label("Reason (kept in the history)").fill("try v2")
    page.get_by_role("button", name="Move production to v2").click()
    refused = page.locator("#refused")
    assert "Refused by the gate" in refused.inner_text()
    assert "suite shop-accuracy" in refused.inner_text() and "fail" in refused.inner_text()
    assert site.registry.labels.of("prompt", NAME)["production"] == 1
    check_page(page, artifacts, "labels-02-refused")

    # inconclusive shows the examples needed
    page.goto(site.url + f"/ui/prompt-labels/{NAME}?label=production&version=4")
    assert "20 examples needed" in page.locator("table.checks").inner_text()
    assert "inconclusive" in page.locator("table.checks").inner_text()

    # a forced move asks for a reason: the browser will not send the form without one
    force = page.get_by_label("Reason for forcing (required)")
    assert force.get_attribute("required") is not None
    page.get_by_role("button", name="Force the move").click()
    assert "/label-move/" not in page.url
    assert site.registry.labels.of("prompt", NAME)["production"] == 1
    check_page(page, artifacts, "labels-03-inconclusive-force")

    # version 3 passes: ship it (compare-and-set from the version the page showed)
    page.goto(site.url + f"/ui/prompt-labels/{NAME}?label=production&version=3")
    assert "pass" in page.locator("#verdict").inner_text()
    assert page.get_by_role("button", name="Force the move").count() == 0
    page.get_by_label("Reason (kept in the history)").fill("v3 passes its suite")
    page.get_by_role("button", name="Move production to v3").click()
    assert page.get_by_role("status").first.inner_text() == "Moved production to version 3."
    assert site.registry.labels.of("prompt", NAME)["production"] == 3
    history = page.locator("ol.history li").first
    assert "v1 → v3" in history.inner_text() and "v3 passes its suite" in history.inner_text()
    assert "api:" in history.inner_text() and "(releaser)" in history.inner_text()
    check_page(page, artifacts, "labels-04-shipped")

    # a forced move with a reason is recorded as forced, with the checks it overrode
    page.goto(site.url + f"/ui/prompt-labels/{NAME}?label=production&version=4")
    page.get_by_label("Reason for forcing (required)").fill("hotfix, eval rerun tonight")
    page.get_by_role("button", name="Force the move").click()
    assert site.registry.labels.of("prompt", NAME)["production"] == 4
    last = site.registry.labels.history("prompt", NAME, "production")[-1]
    assert last.forced and last.reason == "hotfix, eval rerun tonight"
    assert [c.verdict for c in last.checks] == ["inconclusive"]
    assert "forced" in page.locator("ol.history li").first.inner_text()

    # a protected label waits for an approver
    page.goto(site.url + f"/ui/prompt-labels/{NAME}?label=staging&version=3")
    page.get_by_label("Reason (kept in the history)").fill("stage v3")
    page.get_by_role("button", name="Move staging to v3").click()
    assert "waits for an approver" in page.get_by_role("status").first.inner_text()
    assert "staging" not in site.registry.labels.of("prompt", NAME)
    pending = page.locator("ul.requests li").first
    assert "stage v3" in pending.inner_text() and "0 of 1" in pending.inner_text()
    assert "another approver must approve it" in pending.inner_text()
    check_page(page, artifacts, "labels-05-pending")
    sign_out(page)

    sign_in(page, site, site.keys["approver"])
    page.goto(site.url + f"/ui/prompt-labels/{NAME}?label=staging")
    assert page.get_by_role("button", name=re.compile(r"Move staging")).count() == 0
    check_page(page, artifacts, "labels-06-approver")
    page.get_by_role("button", name=re.compile(r"Approve request \d+")).click()
    assert "Approved request" in page.get_by_role("status").first.inner_text()
    assert site.registry.labels.of("prompt", NAME)["staging"] == 3
    assert "approved by api:" in page.locator("ol.history li").first.inner_text()


def _run_of(site: Site, version: int) -> str:
    runs = [r for r in site.registry.runs.list("eval", limit=50)
            if any(e.subject_ref == f"{NAME}@{version}" for e in
                   site.registry.runs.get(r.id).lineage)]  # fmt: skip
    return runs[0].id


def test_the_playground_streams_the_answer(page: Any, site: Site, artifacts: Path) -> None:
    sign_in(page, site, site.keys["releaser"])
    page.goto(site.url + f"/ui/prompts/{NAME}")
    page.get_by_role("link", name="Playground").click()
    page.wait_for_url(re.compile(r"/ui/prompt-playground/"))
    page.get_by_label("Version", exact=True).select_option("1")
    page.get_by_role("button", name="Choose").click()
    assert page.get_by_label("Model (a gateway route; the prompt's config names gpt-test)") \
        .input_value() == "gpt-test"  # fmt: skip
    page.get_by_label("question").fill("Where is my parcel?")
    check_page(page, artifacts, "playground-01-form")
    page.get_by_role("button", name="Run").click()
    wait_for_text(page, "#run-state", lambda text: text == "Done.")
    assert page.locator("#answer").inner_text() == "Hello world"
    assert page.locator("#fig-tokens").inner_text() != ""
    trace = page.locator("#fig-trace").inner_text()
    assert re.fullmatch(r"[0-9a-f]{32}", trace), trace
    assert page.locator("#fig-cost").inner_text().startswith("$")
    assert "ms" in page.locator("#fig-latency").inner_text()
    assert site.keys["releaser"] not in page.content()  # the key's secret is never in the page
    check_page(page, artifacts, "playground-02-answer")
    # the call went through the gateway as the signed-in key, rendered from version 1
    request_id = page.locator("#fig-request").inner_text()
    deadline = time.monotonic() + 10
    while not (found := [c for c in site.registry.calls.list(limit=100)
                         if c["request_id"] == request_id]):  # fmt: skip
        assert time.monotonic() < deadline, "no call record"
        time.sleep(0.05)
    assert found[0]["prompt_name"] == NAME and found[0]["prompt_version"] == 1
    releaser = next(k for k in site.registry.keys.list() if k.name == "releaser")
    assert found[0]["key_id"] == releaser.id

    # by label, and a key without the inference scope is refused by the gateway itself
    page.goto(site.url + f"/ui/prompt-playground/{NAME}?label=production")
    assert "Running label production" in page.locator("main").inner_text()
    sign_out(page)
    sign_in(page, site, site.keys["reader"])
    page.goto(site.url + f"/ui/prompt-playground/{NAME}?version=2")
    assert "lacks the inference scope" in page.get_by_role("status").first.inner_text()
    page.get_by_label("question").fill("hi")
    page.get_by_role("button", name="Run").click()
    wait_for_text(page, "#run-state", lambda text: text.startswith("Error"))
    assert "inference" in page.locator("#run-state").inner_text()


def test_a_versions_evidence(page: Any, site: Site, artifacts: Path) -> None:
    sign_in(page, site, site.keys["reader"])
    page.goto(site.url + f"/ui/prompts/{NAME}")
    page.get_by_role("link", name="Evidence for version 3").click()
    page.wait_for_url(re.compile(r"/ui/prompt-evidence/shop/answer\?version=3"))
    run = page.locator("article").first
    text = run.inner_text()
    assert "pass" in text and "accuracy" in text
    paired = run.locator("table", has_text="Paired change")
    assert "mcnemar" in paired.inner_text() and "10" in paired.inner_text()  # 10 paired
    flips = run.locator("table", has_text="Examples that flipped").inner_text()
    assert "q2" in flips and "better" in flips and "q4" not in flips
    traffic = page.locator("#traffic-total").inner_text()
    assert "30" in traffic and "10.0%" in traffic  # 3 of 30 calls failed
    assert page.locator("svg.chart").count() == 5
    check_page(page, artifacts, "evidence-01-version-3")
    # the HTML report opens sandboxed: its script cannot run on the UI's origin
    link = run.get_by_role("link", name=re.compile("HTML report")).get_attribute("href")
    response = page.request.get(site.url + link)
    assert response.status == 200 and "sandbox" in response.headers["content-security-policy"]
    page.goto(site.url + f"/ui/prompt-evidence/{NAME}?version=2")
    assert "fail" in page.locator("article").first.inner_text()
    assert "No call record" in page.locator("main").inner_text()
    check_page(page, artifacts, "evidence-02-version-2")


# ------------------------------------------------------------------ HTTP level


def _session(site: Site, key: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=site.url, timeout=30)
    form = client.get("/ui/sign-in").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)[1]  # type: ignore[index]
    signed = client.post("/ui/sign-in", data={"csrf": csrf, "key": key, "next": "/ui/prompts"})
    assert signed.status_code == 303, signed.text
    page = client.get(f"/ui/prompt-labels/{NAME}?label=staging").text
    token = re.search(r'name="csrf" value="([^"]+)"', page)[1]  # type: ignore[index]
    return client, token


def test_posts_need_the_token_and_the_scope(site: Site) -> None:
    current = site.registry.labels.of("prompt", NAME).get("canary")
    expect = str(current) if current else "none"
    move = {"label": "canary", "version": "2", "expect": expect, "reason": "x"}
    client, token = _session(site, site.keys["labeller"])
    try:
        # no CSRF token, another session's token: refused, nothing moves
        assert client.post(f"/ui/label-move/{NAME}", data=move).status_code == 403
        other, other_token = _session(site, site.keys["releaser"])
        other.close()
        refused = client.post(f"/ui/label-move/{NAME}", data={**move, "csrf": other_token})
        assert refused.status_code == 403
        assert "canary" not in site.registry.labels.of("prompt", NAME)
        assert (
            client.post(
                f"/ui/playground-run/{NAME}", data={"version": "1", "var:question": "x"}
            ).status_code
            == 403
        )
        # a stale expectation is a 412 (compare-and-set), nothing moves
        stale = client.post(f"/ui/label-move/{NAME}",
                            data={**move, "csrf": token, "expect": "7"})  # fmt: skip
        assert stale.status_code == 412 and "expected" in stale.text
        # a forced move without a reason: 400, naming it
        forced = client.post(
            f"/ui/label-move/{NAME}", data={**move, "csrf": token, "force": "1", "reason": " "}
        )
        assert forced.status_code == 400 and "needs a reason" in forced.text
        # the label key moves; it cannot approve (registry:approve)
        moved = client.post(f"/ui/label-move/{NAME}", data={**move, "csrf": token})
        assert moved.status_code == 303
        assert site.registry.labels.of("prompt", NAME)["canary"] == 2
        request_id = "1"  # the scope is checked before the form is read
        approve = client.post(
            f"/ui/label-approve/{NAME}",
            data={"csrf": token, "label": "staging", "request": request_id},
        )
        assert approve.status_code == 403 and "registry:approve" in approve.text
    finally:
        client.close()
    reader, reader_token = _session(site, site.keys["reader"])
    try:
        page = reader.get(f"/ui/prompt-labels/{NAME}?label=production&version=2").text
        assert "Move production" not in page and "lacks the registry:label scope" in page
        denied = reader.post(
            f"/ui/label-move/{NAME}", data={**move, "csrf": reader_token, "expect": "2"}
        )
        assert denied.status_code == 403 and "registry:label" in denied.text
        assert site.registry.labels.of("prompt", NAME)["canary"] == 2
        # hostile input is a page, never a 500
        for bad in ({"label": "../x"}, {"version": "-1"}, {"version": "9" * 30}):
            got = reader.get(f"/ui/prompt-labels/{NAME}", params=bad)
            assert got.status_code in (200, 400), got.text
        assert reader.get("/ui/prompt-evidence/nope?version=1").status_code == 404
        assert reader.get(f"/ui/prompt-evidence/{NAME}?version=abc").status_code == 400
        missing = reader.get("/ui/run-artifact/nope/report.html")
        assert missing.status_code == 404
    finally:
        reader.close()
