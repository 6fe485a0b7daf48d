"""Finish reasons in call records and LLM judges on a sampled share of the traffic
(``gateway.judges``), through the real gateway on loopback, the official openai SDK as the
client and a scripted OpenAI-compatible upstream on loopback; then ``drift traffic`` over
what was recorded (issue 12: a jump in ``length`` finishes, a drop in judge scores)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lockgate.evals.drift.traffic import run_traffic_drift
from lockgate.gateway.config import ConfigError, load_settings
from lockgate.gateway.judges import conversation
from lockgate.registry.calls import CallFilter, ScoreInfo
from lockgate.registry.tables import utcnow
from tests.gateway.conftest import Gateway, StartGateway
from tests.gateway.servers import ServerThread

RUBRIC = (
    "Rate the answer from 1 (useless) to 5 (complete).\n"
    "Question: {{ question }}\nAnswer: {{ output }}\nReply as Score: N"
)
LONG = "please explain at length "  # the scripted model stops at its token limit on these


class Scripted:
    """The upstream: ``support`` answers a question, cut short (``length``) when the question
    asks for length; ``judge`` scores an answer 1 when it was cut, else 5; ``judge-mute``
    answers without a score; ``judge-down`` fails. ``weird-*`` sends a hostile finish_reason."""

    def __init__(self) -> None:
        self.judge_requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        model = body["model"]
        messages = body.get("messages") or []
        last = str(messages[-1].get("content") if messages else "")
        if model.startswith("judge"):
            self.judge_requests.append(body)
            if model == "judge-down":
                return JSONResponse({"error": {"message": "down"}}, status_code=500)
            if model == "judge-echo":  # quotes the key it was sent
                sent = request.headers.get("authorization", "")
                return JSONResponse({"error": {"message": f"bad key {sent}"}}, status_code=401)
            text = "I like it" if model == "judge-mute" else (
                "Score: 1" if "truncated" in last else "Score: 5")  # fmt: skip
            return JSONResponse(_answer(model, text, "stop"))
        cut = LONG in last
        text = "It depends, and there is much to say, trunc" if cut else "Paris."
        finish: Any = "length" if cut else "stop"
        if model == "weird-number":
            finish = 12345
        elif model == "weird-long":
            finish = "x" * 5000
        if cut:
            text += "ated"  # the judge sees the whole answer, streamed or not
        if body.get("stream"):
            usage = (body.get("stream_options") or {}).get("include_usage")
            return StreamingResponse(
                _stream(model, text, finish, usage), media_type="text/event-stream"
            )
        return JSONResponse(_answer(model, text, finish))


def _answer(model: str, text: str, finish: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-s", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }  # fmt: skip


async def _stream(model: str, text: str, finish: Any, usage: bool) -> AsyncIterator[bytes]:
    base = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": model}

    def event(choices: list[dict[str, Any]], **more: Any) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, **more}).encode() + b"\n\n"

    yield event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                  "finish_reason": None}])  # fmt: skip
    for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
        yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
    yield event([{"index": 0, "delta": {}, "finish_reason": finish}])
    if usage:
        yield event([], usage={"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13})
    yield b"data: [DONE]\n\n"


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    model = Scripted()
    server = ServerThread(model.app).start()
    model.url = server.url  # type: ignore[attr-defined]
    yield model
    server.stop()


def _routes(url: str) -> dict[str, Any]:
    def route(model: str) -> dict[str, Any]:
        return {"deployments": [{"provider": "openai", "model": model, "api_base": url + "/v1",
                                 "api_key": "sk-scripted-0123456789"}]}  # fmt: skip

    names = ("support", "support-plain", "support-mute", "support-down", "support-echo",
             "judge", "judge-mute", "judge-down", "judge-echo", "weird-number",
             "weird-long")  # fmt: skip
    return {name: route(name) for name in names}


JUDGES = {
    "quality": {"prompt": "judge-quality@1", "model": "judge", "sample_rate": 0.5,
                "routes": ["support"], "scale": [1, 5], "max_chars": 300},
    "mute": {"prompt": "judge-quality@1", "model": "judge-mute", "sample_rate": 1.0,
             "routes": ["support-mute"]},
    "broken": {"prompt": "judge-quality@1", "model": "judge-down", "sample_rate": 1.0,
               "routes": ["support-down"]},
    "echo": {"prompt": "judge-quality@1", "model": "judge-echo", "sample_rate": 1.0,
             "routes": ["support-echo"]},
}  # fmt: skip


@pytest.fixture(scope="module")
def judged(start_gateway: StartGateway, scripted: Scripted) -> Gateway:
    gw = start_gateway(routes=_routes(scripted.url), judges=JUDGES)  # type: ignore[attr-defined]
    gw.registry.prompts.push("judge-quality", RUBRIC)
    return gw


def _ask(client: openai.OpenAI, question: str, *, stream: bool, model: str = "support") -> str:
    messages: Any = [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": question}]  # fmt: skip
    if not stream:
        answer = client.chat.completions.create(model=model, messages=messages)
        return answer.choices[0].message.content or ""
    chunks = client.chat.completions.create(model=model, messages=messages, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _settle(gw: Gateway, timeout: float = 20.0) -> None:
    """Wait until every judgment has run and its score is stored, and the records flushed."""
    deadline = time.monotonic() + timeout
    while gw.state.judges.in_flight:
        assert time.monotonic() < deadline, "judgments still in flight"
        time.sleep(0.05)
    time.sleep(0.3)  # the call records' exporter flushes every 50 ms


def _scores(gw: Gateway, **where: Any) -> list[ScoreInfo]:
    return gw.registry.calls.scores(CallFilter(**where), limit=10_000)


def _calls(gw: Gateway, route: str) -> list[Any]:
    return gw.registry.calls.query(CallFilter(route=route), limit=1000).calls


def test_finish_reasons_are_recorded_for_streams_and_answers(judged: Gateway) -> None:
    for stream in (False, True):
        for question, reason in (("capital of France?", "stop"), (LONG + "tax law", "length")):
            rid = f"finish-{stream}-{reason}"
            client = judged.client(default_headers={"x-request-id": rid})
            answer = _ask(client, question, stream=stream, model="support-plain")
            assert answer.endswith("truncated" if reason == "length" else "Paris.")
            record = judged.record(rid)
            assert (record["finish_reason"], record["stream"]) == (reason, stream)
    # the span says the same (GenAI semantic conventions)
    wanted = "finish-True-length"
    spans = [s for s in judged.spans.get_finished_spans()
             if (s.attributes or {}).get("lockgate.request_id") == wanted]  # fmt: skip
    assert spans and spans[0].attributes["gen_ai.response.finish_reasons"] == ("length",)
    # a failed call has none
    failed = judged.client(default_headers={"x-request-id": "finish-failed"})
    with pytest.raises(openai.InternalServerError):
        _ask(failed, "hi", stream=False, model="judge-down")
    assert judged.record("finish-failed")["finish_reason"] is None


def test_a_hostile_finish_reason_is_bounded(judged: Gateway) -> None:
    for model, stream in (("weird-number", False), ("weird-number", True),
                          ("weird-long", False), ("weird-long", True)):  # fmt: skip
        rid = f"weird-{model}-{stream}"
        _ask(judged.client(default_headers={"x-request-id": rid}), "hi", stream=stream,
             model=model)  # fmt: skip
        record = judged.record(rid)
        assert record["status_code"] == 200
        expected = None if model == "weird-number" else "x" * 40
        assert record["finish_reason"] == expected, record


def test_judges_score_a_share_and_traffic_drift_sees_length_and_falling_scores(
    judged: Gateway, scripted: Scripted
) -> None:
    client = judged.client()
    n = 60
    for i in range(n):
        _ask(client, f"capital of country {i}?", stream=i % 2 == 1)
    _settle(judged)
    time.sleep(1.5)  # a gap between the reference traffic and the shifted traffic
    shifted_from = time.time()
    for i in range(n):
        _ask(client, f"{LONG} case {i}", stream=i % 2 == 1)
    _settle(judged)
    until = utcnow()

    scores = _scores(judged, route="support")
    calls = _calls(judged, "support")
    assert {s.judge for s in scores} == {"quality"}
    # about the configured share (0.5) of the 2n calls: 4.5 standard deviations either way
    assert abs(len(scores) - n) <= 4.5 * math.sqrt(2 * n * 0.25), len(scores)
    by_request = {c.request_id: c for c in calls}
    for score in scores:  # each names a call of its own, with that call's filter columns
        call = by_request[score.request_id]
        assert (score.trace_id, score.route, score.model) == (call.trace_id, "support", "support")
        assert abs((score.created_at - call.created_at).total_seconds()) < 1e-3
        assert score.rubric == "judge-quality@1" and score.error is None
        assert (score.raw_score, score.score) in ((5.0, 1.0), (1.0, 0.0))
    # the judges' own calls go through the gateway's route, are recorded and not judged
    judge_calls = _calls(judged, "judge")
    assert len(judge_calls) == len(scores)
    assert all(c.request_id.startswith("judge:quality:") for c in judge_calls)
    assert not _scores(judged, route="judge")
    # the judge saw the answer, streamed or not, and the question, bounded by max_chars
    cut = [r for r in scripted.judge_requests if "truncated" in r["messages"][-1]["content"]]
    assert len(cut) >= 10
    assert all(len(r["messages"][-1]["content"]) <= len(RUBRIC) + 2 * 300 for r in cut)

    window = f"{math.ceil(until.timestamp() - shifted_from)}s"
    run = run_traffic_drift(judged.registry, model="support", current=window,
                            reference="1h", now=until)  # fmt: skip
    report = run.report
    finish = report.column("finish_reason")
    assert finish.drifted and finish.kind == "categorical", finish
    assert (finish.n_reference, finish.n_current) == (n, n)
    quality = report.column("judge:quality")
    assert quality.drifted and quality.kind == "numeric", quality
    details = quality.details
    assert details["judged_reference"] + details["judged_current"] == len(scores)
    assert 0.25 < details["judged_share_current"] < 0.75, details
    assert details["scored_current"] == details["judged_current"]
    assert judged.registry.runs.get(run.run_id).kind == "drift"


def test_a_judge_without_a_score_or_a_route_is_recorded_as_such(judged: Gateway) -> None:
    client = judged.client()
    for i in range(3):
        _ask(client, f"question {i}", stream=i == 1, model="support-mute")
        _ask(client, f"question {i}", stream=i == 1, model="support-down")
    _settle(judged)
    mute = _scores(judged, route="support-mute")
    assert len(mute) == 3 and all(s.judge == "mute" and s.score is None for s in mute)
    assert all("no score" in (s.error or "") for s in mute)
    down = _scores(judged, route="support-down")
    assert len(down) == 3 and all(s.judge == "broken" and s.score is None for s in down)
    # the upstream's 500, or the gateway's 503 once the judge route's circuit opened
    assert all((s.error or "")[:4] in ("500 ", "503 ") for s in down), [s.error for s in down]
    text = httpx.get(judged.url + "/metrics").text
    assert 'lockgate_judgments_total{judge="mute",outcome="no_score"} 3.0' in text
    assert 'lockgate_judgments_total{judge="broken",outcome="failed"} 3.0' in text
    # the call itself was answered whatever its judge did
    assert all(c.status_code == 200 for c in _calls(judged, "support-down"))
    # an upstream quoting the key it was sent: the stored error does not keep it
    _ask(client, "hi", stream=False, model="support-echo")
    _settle(judged)
    (echo,) = _scores(judged, route="support-echo")
    assert echo.error and "[REDACTED]" in echo.error and "sk-scripted" not in echo.error


def test_a_client_cannot_pass_for_a_judge_or_flood_the_judge(
    judged: Gateway, scripted: Scripted
) -> None:
    # a request id or field that looks like a judge's is still an ordinary, sampled call
    rid = "judge:mute:forged"
    client = judged.client(default_headers={"x-request-id": rid})
    client.chat.completions.create(
        model="support-mute", messages=[{"role": "user", "content": "hi"}],
        extra_body={"lockgate.judge": "mute"},
    )  # fmt: skip
    _settle(judged)
    assert [s.request_id for s in _scores(judged, route="support-mute")].count(rid) == 1
    # a huge conversation reaches the judge as bounded text (max_chars: 8000 by default)
    huge = "A" * 100_000
    messages: Any = [
        {"role": "user", "content": [{"type": "text", "text": huge}]},
        {"role": "assistant", "content": huge},
        {"role": "user", "content": huge},
    ]
    judged.client().chat.completions.create(model="support-mute", messages=messages)
    _settle(judged)
    last = scripted.judge_requests[-1]
    assert last["model"] == "judge-mute"
    assert len(last["messages"][-1]["content"]) <= len(RUBRIC) + 2 * 8000
    # shapes no client could send through the API are read as text or left out
    odd: Any = [{"role": "user", "content": [{"type": "text", "text": huge}, 7, None]},
                {"role": 5, "content": {"x": 1}}, "not a message",
                {"role": "user", "content": huge + "?"}]  # fmt: skip
    text, question = conversation({"messages": odd}, 8000)
    assert len(text) == 8000 and len(question) == 8000


def test_the_conversation_keeps_its_end_and_the_question() -> None:
    messages = [{"role": "system", "content": "S" * 50}, {"role": "user", "content": "first"},
                {"role": "assistant", "content": "reply"},
                {"role": "user", "content": [{"type": "text", "text": "second?"}]}]  # fmt: skip
    text, question = conversation({"messages": messages}, 1000)
    assert question == "second?"
    assert text.endswith("user: first\nassistant: reply\nuser: second?")
    text, question = conversation({"messages": messages}, 30)
    assert text == "assistant: reply\nuser: second?" and question == "second?"
    assert conversation({"prompt": "once upon"}, 100) == ("once upon", "once upon")
    assert conversation({"prompt": ["a", "b"]}, 100) == ("a\nb", "a\nb")


def _write_config(path: Path, judges: dict[str, Any]) -> Path:
    config = path / "lockgate.yaml"
    config.write_text(yaml.safe_dump({
        "registry": {"data_dir": str(path / "data")},
        "gateway": {"routes": {"support": {"deployments": [{"model": "m"}]}}, "judges": judges},
    }))  # fmt: skip
    return config


@pytest.mark.parametrize(
    ("judge", "message"),
    [
        ({"sample_rate": 1.5}, "judges.q.sample_rate: Input should be less than or equal to 1"),
        ({"sample_rate": -0.1}, "q.sample_rate: Input should be greater than or equal to 0"),
        ({"model": "nope"}, "judges.q.model: 'nope' is not a configured route (gateway.rou"),
        ({"routes": ["suport"]}, "judges.q.routes: 'suport' is not a configured route"),
        ({"scale": [5, 1]}, "scale must be (low, high) with low < high"),
        ({"rubric": "x"}, "gateway.judges.q.rubric: Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_bad_judge_configuration_is_a_clear_error(
    tmp_path: Path, judge: dict[str, Any], message: str
) -> None:
    base = {"prompt": "rubric@production", "model": "support"}
    config = _write_config(tmp_path, {"q": {**base, **judge}})
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert message in str(caught.value)


def test_bad_judge_name_and_the_serve_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lockgate.gateway.cli import app

    config = _write_config(tmp_path, {"a b": {"prompt": "r@1", "model": "support"}})
    with pytest.raises(ConfigError, match="judge 'a b': a judge's name is 1 to 100"):
        load_settings(config)
    config = _write_config(tmp_path, {"q": {"prompt": "r@1", "model": "support",
                                            "sample_rate": 2}})  # fmt: skip
    result = CliRunner().invoke(app, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert "sample_rate: Input should be less than or equal to 1" in result.stderr
