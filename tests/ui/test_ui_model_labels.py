"""Label control on models, end to end in headless Chromium against ``lockgate serve`` on
loopback: the gate's verdict before a move, a refused move with its reasons, a release that
passes, a forced move with a reason, and a protected label that waits for an approver, on an
LLM route (``upstream``), a LoRA adapter and a scikit-learn model; through the registry's
``Labels.set`` as ``PUT /api/v1/models/NAME/labels/L`` is. A model version's page shows its
eval runs with the paired comparison read from the run's ``report.json``.

Plus the HTTP-level refusals (no CSRF token, a key without the scope) and hostile input: a
model name that is not one, and a ``report.json`` of the wrong shape, are pages, not errors.

Every page visited is screenshot and checked by axe-core (:func:`check_page`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lockgate.registry import LineageEdge, Registry, RegistrySettings
from lockgate.registry.gates import SuitePin, suite_digest
from tests.ui.conftest import (
    CSRF,
    Keys,
    check_page,
    registry_folder,
    sign_in,
    start_serve,
)

BOT, LORA, CHURN = "shop/bot", "shop/qa-lora", "churn"
SUITE = SuitePin("bot-accuracy", suite_digest({"name": "bot-accuracy"}, "sha256:data"))
KEYS = {
    "releaser": ["registry:read", "registry:label"],
    "approver": ["registry:read", "registry:approve"],
    "reader": ["registry:read"],
}
INCONCLUSIVE = ("inconclusive: 12 examples are too few to tell; at least 20 are needed "
                "(accuracy = 0.9, n=12)")  # fmt: skip
REPORT = {
    "comparisons": {
        "accuracy": {
            "baseline": 0.7, "candidate": 0.9, "delta": 0.2, "ci_low": 0.05, "ci_high": 0.35,
            "p_value": 0.031, "test": "mcnemar", "n_paired": 10,
            "flips": [{"key": "q4", "direction": "better", "baseline_output": "no",
                       "candidate_output": "<b>yes</b>"}],
        }
    }
}  # fmt: skip


def _eval_run(reg: Registry, folder: Path, name: str, version: int, verdict: str, reason: str,
              report: Any = None) -> str:  # fmt: skip
    """An eval run of the suite on ``name@version`` (a model) as ``lockgate eval run`` leaves
    it: lineage, verdict tags, and ``report.json`` when given."""
    edge = LineageEdge("model", f"{name}@{version}", "input")
    run = reg.runs.create("eval", name=SUITE.name, params={"suite_digest": SUITE.digest},
                          lineage=[edge])  # fmt: skip
    reg.runs.set_status(run.id, "succeeded", metrics={"eval.errors": 0, "accuracy": 0.9})
    gate = {"gate": "accuracy >= 0.8", "kind": "absolute", "verdict": verdict,
            "reason": reason, "waived": False}  # fmt: skip
    tags: dict[str, Any] = {"verdict": verdict, "gates": [gate], "verdict_reason": reason}
    if report is not None:
        tags |= {"baseline_run": run.id, "baseline": "label:production"}
        path = folder / f"report-{run.id}.json"
        path.write_bytes(report if isinstance(report, bytes) else json.dumps(report).encode())
        reg.runs.log_artifact(run.id, "report.json", path)
    reg.runs.tag(run.id, tags)
    return run.id


def _seed(settings: RegistrySettings, folder: Path) -> dict[str, str]:
    from sklearn.linear_model import LogisticRegression

    seed = Registry(settings, actor="seed")
    try:
        secrets = {n: str(seed.keys.create(n, scopes=s).secret) for n, s in KEYS.items()}
        for model in ("gpt-small", "gpt-large", "gpt-large-2"):
            seed.models.register(BOT, "upstream", {"model": model}, message=f"route {model}")
        seed.labels.set("model", BOT, "production", 1, force=True, reason="first release")
        seed.gates.set_policy("model", BOT, "production", [SUITE])
        _eval_run(seed, folder, BOT, 2, "fail",
                  "accuracy = 0.5 (95% CI 0.3..0.7, n=40), needs >= 0.8")  # fmt: skip
        _eval_run(seed, folder, BOT, 3, "pass", "accuracy = 0.9 (n=40) >= 0.8", REPORT)

        for r in (8, 16):
            adapter = folder / f"adapter-{r}"
            adapter.mkdir()
            (adapter / "adapter_config.json").write_text(json.dumps({"r": r}))
            seed.models.register(LORA, "lora", {"base_model": "registry:tiny@1"}, path=adapter,
                                 message=f"rank {r}")  # fmt: skip
        seed.labels.set("model", LORA, "production", 1, force=True, reason="first adapter")
        seed.gates.set_policy("model", LORA, "production", [SUITE])
        _eval_run(seed, folder, LORA, 2, "inconclusive", INCONCLUSIVE)

        for c in (1.0, 0.1):
            fitted = LogisticRegression(C=c).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
            seed.models.register_sklearn(CHURN, fitted, message=f"C={c}")
        seed.labels.set("model", CHURN, "production", 1, reason="first model")
        seed.labels.protect("model", CHURN, "production", 1)
    finally:
        seed.close()
    return secrets


class Site:
    def __init__(self, url: str, registry: Registry, keys: dict[str, str], folder: Path) -> None:
        self.url, self.registry, self.keys, self.folder = url, registry, keys, folder


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Site]:
    pytest.importorskip("skops", reason="scikit-learn models need the sklearn extra")
    folder, settings = registry_folder(tmp_path_factory, "ui-model-labels", sqlite_template)
    keys = _seed(settings, folder)
    served = start_serve(folder, settings, Keys("", keys["reader"], ""))
    yield Site(served.url, served.registry, keys, folder)
    served.registry.close()
    served.stop()


def _sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/sign-in"))


def _held(site: Site, name: str) -> dict[str, int]:
    return site.registry.labels.of("model", name)


def test_model_labels_move_through_the_gate_by_force_and_by_approval(
    page: Any, site: Site, artifacts: Path
) -> None:
    sign_in(page, site, site.keys["releaser"])

    # an LLM route: the verdict before the move, a refused move, then a release that passes
    page.goto(site.url + f"/ui/models/{BOT}")
    page.get_by_role("link", name="Labels and releases").click()
    page.wait_for_url(re.compile(r"/ui/model-labels/shop/bot"))
    assert page.get_by_role("link", name="Models").first.is_visible()
    page.get_by_label("Candidate version").select_option("2")
    page.get_by_role("button", name="Show the gate's verdict").click()
    assert "refused" in page.locator("#verdict").inner_text()
    row = page.locator("table.checks tbody tr").first
    assert "suite bot-accuracy" in row.inner_text() and "needs >= 0.8" in row.inner_text()
    evidence = row.get_by_role("link").get_attribute("href")
    assert re.search(r"/ui/model-version/shop/bot\?version=2#run-[0-9a-f]+$", evidence), evidence
    check_page(page, artifacts, "model-labels-01-verdict-fail")

    page.get_by_label("Reason (kept in the history)").fill("try the large route")
    with page.expect_response(re.compile("/ui/model-label-move/")) as answer:
        page.get_by_role("button", name="Move production to v2").click()
    assert answer.value.status == 409
    refused = page.locator("#refused").inner_text()
    assert "Refused by the gate" in refused and "fail" in refused and "needs >= 0.8" in refused
    assert _held(site, BOT)["production"] == 1
    check_page(page, artifacts, "model-labels-02-refused")

    page.goto(site.url + f"/ui/model-labels/{BOT}?label=production&version=3")
    assert "pass" in page.locator("#verdict").inner_text()
    assert page.get_by_role("button", name="Force the move").count() == 0
    page.get_by_label("Reason (kept in the history)").fill("v3 passes its suite")
    page.get_by_role("button", name="Move production to v3").click()
    assert page.get_by_role("status").first.inner_text() == "Moved production to version 3."
    assert _held(site, BOT)["production"] == 3
    last = site.registry.labels.history("model", BOT, "production")[-1]
    assert last.reason == "v3 passes its suite" and not last.forced
    assert last.actor.startswith("api:") and last.actor.endswith("(releaser)")
    assert [c.verdict for c in last.checks] == ["pass"]
    assert "v1 → v3" in page.locator("ol.history li").first.inner_text()
    check_page(page, artifacts, "model-labels-03-shipped")

    # a LoRA adapter: inconclusive (with the examples needed); forcing needs a reason
    page.goto(site.url + f"/ui/models/{LORA}")
    page.get_by_role("link", name="Move a label here (version 2)").click()
    page.wait_for_url(re.compile(r"/ui/model-labels/shop/qa-lora\?version=2"))
    checks = page.locator("table.checks").inner_text()
    assert "inconclusive" in checks and "20 examples needed" in checks
    assert "(lora)" in page.get_by_label("Candidate version").inner_text()
    page.get_by_role("button", name="Force the move").click()  # empty reason: not sent
    assert "/model-label-move/" not in page.url and _held(site, LORA)["production"] == 1
    page.get_by_label("Reason for forcing (required)").fill("adapter hotfix; rerun tonight")
    page.get_by_role("button", name="Force the move").click()
    page.wait_for_url(re.compile(r"moved=2"))
    assert _held(site, LORA)["production"] == 2
    forced = site.registry.labels.history("model", LORA, "production")[-1]
    assert forced.forced and forced.reason == "adapter hotfix; rerun tonight"
    assert [c.verdict for c in forced.checks] == ["inconclusive"]
    assert "forced" in page.locator("ol.history li").first.inner_text()
    check_page(page, artifacts, "model-labels-04-lora-forced")

    # a scikit-learn model whose production label needs an approver
    page.goto(site.url + f"/ui/model-labels/{CHURN}?label=production&version=2")
    assert "protected" in page.locator("main").inner_text()
    page.get_by_label("Reason (kept in the history)").fill("retrained churn model")
    page.get_by_role("button", name="Move production to v2").click()
    assert "waits for an approver" in page.get_by_role("status").first.inner_text()
    assert _held(site, CHURN)["production"] == 1
    pending = page.locator("ul.requests li").first.inner_text()
    assert "retrained churn model" in pending and "0 of 1" in pending
    assert "another approver must approve it" in pending
    check_page(page, artifacts, "model-labels-05-sklearn-pending")
    _sign_out(page)

    sign_in(page, site, site.keys["approver"])
    page.goto(site.url + f"/ui/model-labels/{CHURN}?label=production")
    assert page.get_by_role("button", name=re.compile("Move production")).count() == 0
    check_page(page, artifacts, "model-labels-06-approver")
    page.get_by_role("button", name=re.compile(r"Approve request \d+")).click()
    assert "Approved request" in page.get_by_role("status").first.inner_text()
    assert _held(site, CHURN)["production"] == 2
    assert "approved by api:" in page.locator("ol.history li").first.inner_text()
    history = page.goto(site.url + f"/ui/models/{CHURN}")
    assert history is not None and history.status == 200
    assert "production" in page.locator("main").inner_text()


def test_a_model_versions_page_shows_its_eval_runs(page: Any, site: Site, artifacts: Path) -> None:
    sign_in(page, site, site.keys["reader"])
    page.goto(site.url + f"/ui/model-version/{BOT}?version=3")
    run = page.locator("article").first
    assert "pass" in run.inner_text()
    paired = run.locator("table", has_text="Paired change").inner_text()
    assert "the run's report.json" in paired and "mcnemar" in paired and "0.031" in paired
    flips = run.locator("table", has_text="Examples that flipped").inner_text()
    assert "q4" in flips and "<b>yes</b>" in flips  # shown as text
    assert page.get_by_role("link", name="Move a label to v3").is_visible()
    check_page(page, artifacts, "model-labels-07-version-evals")
    # a reader sees the label control without the forms
    page.goto(site.url + f"/ui/model-labels/{BOT}?label=production&version=2")
    assert "lacks the registry:label scope" in page.locator("main").inner_text()
    assert page.get_by_role("button", name=re.compile("Move production")).count() == 0


# ------------------------------------------------------------------ HTTP level


def _session(site: Site, key: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=site.url, timeout=30)
    csrf = CSRF.search(client.get("/ui/sign-in").text)[1]  # type: ignore[index]
    signed = client.post("/ui/sign-in", data={"csrf": csrf, "key": key, "next": "/ui/prompts"})
    assert signed.status_code == 303, signed.text
    token = CSRF.search(client.get(f"/ui/model-labels/{BOT}").text)[1]  # type: ignore[index]
    return client, token


def test_model_label_posts_need_the_token_and_the_scope(site: Site) -> None:
    expect = _held(site, BOT).get("canary")
    move = {"label": "canary", "version": "2", "expect": str(expect or "none"), "reason": "x"}
    client, token = _session(site, site.keys["releaser"])
    try:
        assert client.post(f"/ui/model-label-move/{BOT}", data=move).status_code == 403
        assert "canary" not in _held(site, BOT)
        stale = client.post(f"/ui/model-label-move/{BOT}",
                            data={**move, "csrf": token, "expect": "7"})  # fmt: skip
        assert stale.status_code == 412 and "canary" not in _held(site, BOT)
        forced = client.post(f"/ui/model-label-move/{BOT}",
                             data={**move, "csrf": token, "force": "1", "reason": ""})  # fmt: skip
        assert forced.status_code == 400 and "needs a reason" in forced.text
        moved = client.post(f"/ui/model-label-move/{BOT}", data={**move, "csrf": token})
        assert moved.status_code == 303 and _held(site, BOT)["canary"] == 2
        # a label key cannot approve; the scope is checked before the form is read
        decision = {"csrf": token, "label": "production", "request": "1"}
        approve = client.post(f"/ui/model-label-approve/{CHURN}", data=decision)
        assert approve.status_code == 403 and "registry:approve" in approve.text
        # a prompt's label route does not move a model's label
        wrong = client.post(f"/ui/label-move/{BOT}", data={**move, "csrf": token})
        assert wrong.status_code == 404 and _held(site, BOT)["canary"] == 2
    finally:
        client.close()
    reader, reader_token = _session(site, site.keys["reader"])
    try:
        denied = reader.post(f"/ui/model-label-move/{BOT}",
                             data={**move, "csrf": reader_token, "expect": "2",
                                   "version": "3"})  # fmt: skip
        assert denied.status_code == 403 and "registry:label" in denied.text
        assert _held(site, BOT)["canary"] == 2
        for path in (f"/ui/model-labels/{'x' * 300}", "/ui/model-labels/no-such-model",
                     "/ui/model-labels/..%2F..%2Fetc", "/ui/model-labels/a%00b"):  # fmt: skip
            assert reader.get(path).status_code == 404, path
        for bad in ({"label": "../x"}, {"label": "latest"}, {"version": "-1"},
                    {"version": "9" * 30}):  # fmt: skip
            got = reader.get(f"/ui/model-labels/{BOT}", params=bad)
            assert got.status_code in (200, 400), (bad, got.status_code)
    finally:
        reader.close()


@pytest.mark.parametrize(
    "report",
    [
        b"[1, 2]",
        b'{"comparisons": {"accuracy": 5, "x": {"flips": "no", "n_paired": "99"}}}',
        b'{"comparisons": {"x": {"flips": [7, {"key": {"a": 1}}], "p_value": "0"}}}',
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe not json",
        json.dumps({"comparisons": {"m": {"baseline": 1e400}}}).encode(),
    ],
)
def test_a_hostile_report_json_is_shown_as_data_or_not_at_all(site: Site, report: bytes) -> None:
    """``report.json`` is an artifact anyone with registry:write could attach to a run."""
    run_id = _eval_run(site.registry, site.folder, LORA, 1, "pass", "ok", report)
    reader, _ = _session(site, site.keys["reader"])
    try:
        page = reader.get(f"/ui/model-version/{LORA}?version=1")
        assert page.status_code == 200, page.text[:500]
        assert f'id="run-{run_id}"' in page.text
        assert "<script" not in page.text.split("<main", 1)[1]
    finally:
        reader.close()
