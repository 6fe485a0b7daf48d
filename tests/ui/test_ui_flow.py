"""The issue's whole "Must show" flow, in order, in one browser session against
``lockgate serve`` on loopback: sign in; create a prompt; add a version with a bad template
(refused inline, at its line) then good ones; diff two versions; try to move ``production``
(refused by a failing gate, with its reasons), then ship a version that passes; a protected
label waits for the approver, who signs in with a ``registry:approve`` key and approves; run
the playground and watch the text stream in; open a version's evidence and the call viewer;
sign out.

The gate's evidence is real: ``lockgate eval run`` (in process, as CI would run it) scores
each version against an arithmetic upstream on loopback, records the run with its
``report.json`` (:func:`evals.report.record_report`), and the evidence page reads the paired
comparison from that artifact. The playground calls the gateway, whose route goes to a fake
OpenAI upstream on loopback that pauses mid-stream.

Every page state is screenshot and checked by axe-core (:func:`check_page`)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from lockgate.gateway.background import ServerThread
from lockgate.registry import Registry
from tests.evals.conftest import CliResult, arithmetic_rows, run_cli, write_jsonl
from tests.evals.upstream import Upstream as ArithmeticUpstream
from tests.gateway.upstream import Upstream, stall
from tests.ui.conftest import (
    check_page,
    launch,
    registry_folder,
    sign_in,
    wait_for_text,
    write_config,
)

NAME = "flow/arith"
T = TypeVar("T")


def chat(system: str, user: str = '"{{ question }}"') -> str:
    """A chat template as the editor takes it: YAML messages."""
    return f"- role: system\n  content: {system}\n- role: user\n  content: {user}\n"


GOOD = chat("Answer with the number only.")
BAD = chat("Answer with the number only.", '"{{ question }"')
WRONG = chat("Answer WRONG on purpose.")
BETTER = chat("Answer with the number only, please.")


@dataclass
class Flow:
    url: str
    registry: Registry
    keys: dict[str, str]
    folder: Path
    arithmetic: ArithmeticUpstream
    upstream: Upstream


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Flow]:
    folder, settings = registry_folder(tmp_path_factory, "ui-flow", sqlite_template)
    seed = Registry(settings, actor="admin")
    keys = {
        "owner": str(seed.keys.create("owner", scopes=[
            "registry:read", "registry:write", "registry:label", "inference"]).secret),
        "approver": str(seed.keys.create("approver", scopes=[
            "registry:read", "registry:approve"]).secret),
    }  # fmt: skip
    seed.close()
    upstream = Upstream()
    up = ServerThread(upstream.app).start()
    config = write_config(folder, settings.data_dir, up.url + "/v1", model="slow-stream")
    url, process = launch(folder, config)
    registry = Registry(settings, actor="admin")
    with ArithmeticUpstream() as arithmetic:
        yield Flow(url, registry, keys, folder, arithmetic, upstream)
    registry.close()
    process.terminate()
    process.communicate(timeout=30)
    up.stop()


def _in_thread(work: Callable[[], T]) -> T:
    """``work()`` on a thread of its own: the eval runner starts an event loop, which the
    thread that drives the browser must not."""
    done: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.append(work())
        except BaseException as exc:  # handed back to the test's thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=300)
    if failed:
        raise failed[0]
    assert done, "the eval run did not finish"
    return done[0]


def _suite(flow: Flow) -> Path:
    """The release suite; the gate pins its content (not the version a run targets)."""
    path = flow.folder / "suite.yaml"
    if not path.exists():
        write_jsonl(flow.folder / "data.jsonl", arithmetic_rows(30))
        path.write_text(yaml.safe_dump({
            "name": "arith-release", "dataset": "data.jsonl", "reference": "answer",
            "target": {"base_url": flow.arithmetic.base_url, "model": "prompt:x@1"},
            "scorers": ["exact_match"],
            "gates": ["exact_match >= 0.9",
                      {"exact_match": {"regression": True, "min_effect": 0.15}}],
        }))  # fmt: skip
    return path


def _eval(flow: Flow, version: int) -> CliResult:
    """``lockgate eval run`` of the release suite on ``NAME@version``, against production."""
    doc = yaml.safe_load(_suite(flow).read_text())
    doc["target"]["model"] = f"prompt:{NAME}@{version}"
    path = flow.folder / f"suite-v{version}.yaml"
    path.write_text(yaml.safe_dump(doc))
    args = ["run", str(path), "--baseline", "label:production", "--cache-dir",
            str(flow.folder / "cache"), "-q"]  # fmt: skip
    return _in_thread(lambda: run_cli(flow.registry, args))


def _save(page: Any, template: str, message: str) -> None:
    page.get_by_label("Chat: a YAML list").check()
    page.get_by_label("Template", exact=True).fill(template)
    page.get_by_label("Message", exact=True).fill(message)
    page.get_by_role("button", name="Save version").click()


def _sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/sign-in\?signed_out=1"))


def _held(flow: Flow) -> dict[str, int]:
    return flow.registry.labels.of("prompt", NAME)


def test_the_whole_flow_in_one_session(page: Any, flow: Flow, artifacts: Path) -> None:
    # sign in: a page without a session goes to the sign-in form first
    page.goto(flow.url + "/ui/prompts")
    assert "/ui/sign-in" in page.url
    check_page(page, artifacts, "flow-01-sign-in")
    sign_in(page, flow, flow.keys["owner"])

    # create a prompt (a chat prompt whose config names the gateway route)
    page.get_by_role("link", name="New prompt").click()
    page.get_by_label("Name", exact=True).fill(NAME)
    page.get_by_label("Model config (YAML, optional)").fill("model: gpt-test\ntemperature: 0")
    _save(page, GOOD, "first answer prompt")
    page.wait_for_url(re.compile(r"/ui/prompts/flow/arith\?saved=1"))
    assert page.get_by_role("status").first.inner_text() == "Saved version 1."
    check_page(page, artifacts, "flow-02-created")

    # a version with a bad template is refused inline, at its message and line
    page.get_by_role("link", name="New version").click()
    _save(page, BAD, "broken")
    error = page.locator("#template-error").inner_text()
    assert "messages[1].content" in error and "line 1" in error, error
    assert page.get_by_label("Template", exact=True).get_attribute("aria-invalid") == "true"
    assert len(flow.registry.prompts.versions(NAME)) == 1
    check_page(page, artifacts, "flow-03-bad-template")
    # then good ones: one that answers wrong on purpose (v2), one that does not (v3)
    _save(page, WRONG, "terser system prompt")
    page.wait_for_url(re.compile(r"\?saved=2"))
    page.get_by_role("link", name="New version").click()
    _save(page, BETTER, "polite system prompt")
    page.wait_for_url(re.compile(r"\?saved=3"))
    assert [v.author for v in flow.registry.prompts.versions(NAME)] == ["owner"] * 3

    # diff two versions
    page.get_by_label("From").select_option("1")
    page.get_by_label("to").select_option("2")
    page.get_by_role("button", name="Show diff").click()
    page.wait_for_url(re.compile(r"/ui/prompt-diff/flow/arith\?a=1&b=2"))
    template = page.get_by_role("region", name=re.compile("^Template:"))
    cells = " ".join(template.locator("tr.changed td.code").all_inner_texts())
    assert "Answer with the number only." in cells and "Answer WRONG on purpose." in cells
    check_page(page, artifacts, "flow-04-diff")

    # CI: the release gate pins the suite; v1 ships first; v2 and v3 are scored against it
    flow.registry.gates.set_policy(
        "prompt", NAME, "production", [flow.registry.gates.pin_suite(_suite(flow))]
    )
    first = _eval(flow, 1)
    assert first.exit_code == 0, first.output + first.error
    flow.registry.labels.set("prompt", NAME, "production", 1, reason="first release")
    assert _eval(flow, 2).exit_code == 1  # a regression
    assert _eval(flow, 3).exit_code == 0
    flow.registry.labels.protect("prompt", NAME, "staging", 1)

    # moving production to v2 is refused by the gate, with its reasons; nothing moves
    page.goto(flow.url + f"/ui/prompts/{NAME}")
    page.get_by_role("link", name="Labels and releases").click()
    page.get_by_label("Candidate version").select_option("2")
    page.get_by_role("button", name="Show the gate's verdict").click()
    assert "refused" in page.locator("#verdict").inner_text()
    check_page(page, artifacts, "flow-05-verdict-fail")
    page.get_by_label("Reason (kept in the history)").fill("ship the terser prompt")
    page.get_by_role("button", name="Move production to v2").click()
    refused = page.locator("#refused").inner_text()
    assert "Refused by the gate" in refused and "suite arith-release" in refused
    assert "fail" in refused and "exact_match" in refused
    assert _held(flow)["production"] == 1
    check_page(page, artifacts, "flow-06-refused")

    # v3 passes: ship it
    page.goto(flow.url + f"/ui/prompt-labels/{NAME}?label=production&version=3")
    assert "pass" in page.locator("#verdict").inner_text()
    page.get_by_label("Reason (kept in the history)").fill("v3 passes the release suite")
    page.get_by_role("button", name="Move production to v3").click()
    assert page.get_by_role("status").first.inner_text() == "Moved production to version 3."
    assert _held(flow)["production"] == 3
    check_page(page, artifacts, "flow-07-shipped")

    # a protected label waits for the approver
    page.goto(flow.url + f"/ui/prompt-labels/{NAME}?label=staging&version=3")
    page.get_by_label("Reason (kept in the history)").fill("stage v3")
    page.get_by_role("button", name="Move staging to v3").click()
    assert "waits for an approver" in page.get_by_role("status").first.inner_text()
    assert "staging" not in _held(flow)
    check_page(page, artifacts, "flow-08-waiting")
    _sign_out(page)
    sign_in(page, flow, flow.keys["approver"])
    page.goto(flow.url + f"/ui/prompt-labels/{NAME}?label=staging")
    check_page(page, artifacts, "flow-09-approver")
    page.get_by_role("button", name=re.compile(r"Approve request \d+")).click()
    assert "Approved request" in page.get_by_role("status").first.inner_text()
    assert _held(flow)["staging"] == 3
    _sign_out(page)
    sign_in(page, flow, flow.keys["owner"])

    # the playground: the answer streams in (the upstream pauses after its first words)
    flow.upstream.script("slow-stream", stall(1.5, after=1))
    page.goto(flow.url + f"/ui/prompts/{NAME}")
    page.get_by_role("link", name="Playground").click()
    page.get_by_label("or label").select_option("production")
    page.get_by_role("button", name="Choose").click()
    assert "Running label production, now version 3" in page.locator("main").inner_text()
    page.get_by_label("question").fill("What is 2+2?")
    page.get_by_role("button", name="Run").click()
    wait_for_text(page, "#answer", lambda text: text == "Hello")  # the first words, ...
    assert page.locator("#run-state").inner_text() != "Done."  # ... before the end
    check_page(page, artifacts, "flow-10-streaming")
    wait_for_text(page, "#run-state", lambda text: text == "Done.")
    assert page.locator("#answer").inner_text() == "Hello world"
    trace = page.locator("#fig-trace").inner_text()
    assert re.fullmatch(r"[0-9a-f]{32}", trace), trace
    check_page(page, artifacts, "flow-11-answered")

    # a version's evidence: the eval runs' paired comparison, read from report.json
    page.goto(flow.url + f"/ui/prompts/{NAME}")
    page.get_by_role("link", name="Evidence for version 2").click()
    run = page.locator("article").first
    assert "fail" in run.inner_text()
    paired = run.locator("table", has_text="Paired change").inner_text()
    assert "the run's report.json" in paired and "mcnemar" in paired and "30" in paired
    flips = run.locator("table", has_text="Examples that flipped").inner_text()
    assert flips.count("worse") == 20  # 30 flipped; the page shows 20
    report = run.get_by_role("link", name="HTML report (report.html)").get_attribute("href")
    opened = page.request.get(flow.url + report)
    assert opened.status == 200 and "sandbox" in opened.headers["content-security-policy"]
    assert "Against the baseline" in opened.text()
    check_page(page, artifacts, "flow-12-evidence-v2")
    page.goto(flow.url + f"/ui/prompt-evidence/{NAME}?version=3")
    assert "No example flipped." in page.locator("article").first.inner_text()
    deadline = time.monotonic() + 15  # the playground's call record is written off the path
    while page.locator("#traffic-total").count() == 0:
        assert time.monotonic() < deadline, "no traffic for version 3"
        time.sleep(0.2)
        page.reload()
    assert page.locator("svg.chart").count() == 5
    check_page(page, artifacts, "flow-13-evidence-v3")

    # the call viewer: the playground's call, with its trace id
    page.goto(flow.url + "/ui/calls")
    page.get_by_label("Prompt").fill(f"{NAME}@3")
    page.get_by_role("button", name="Filter").click()
    row = page.locator("table.calls tbody tr").first
    assert "flow/arith@3" in row.inner_text() and "owner" in row.inner_text()
    check_page(page, artifacts, "flow-14-calls")
    row.get_by_role("link").click()
    assert page.locator("code.trace-id").inner_text() == trace
    check_page(page, artifacts, "flow-15-call")

    # sign out: pages send the browser to sign in again
    _sign_out(page)
    assert page.get_by_text("You are signed out.").is_visible()
    page.goto(flow.url + f"/ui/prompts/{NAME}")
    assert "/ui/sign-in" in page.url
