"""Fault injection: an upstream on loopback told to misbehave, one test per scenario, each
asserting what the client (the official openai SDK) sees and what the call record says."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import Gateway, StartGateway
from tests.gateway.servers import ResetServer
from tests.gateway.upstream import (
    OK,
    Upstream,
    cut,
    malformed,
    no_done,
    stall,
    status,
)

HI = [{"role": "user", "content": "hi"}]
COOLDOWN_S = 0.6


def _dep(base: str, model: str, **more: Any) -> dict[str, Any]:
    return {"provider": "openai", "model": model, "api_base": base, "api_key": "sk-x", **more}


@pytest.fixture(scope="module")
def resets() -> Iterator[tuple[ResetServer, ResetServer]]:
    once, always = ResetServer(resets=1), ResetServer(resets=10**6)
    yield once, always
    once.stop()
    always.stop()


@pytest.fixture(scope="module")
def faulty(
    start_gateway: StartGateway, upstream: Upstream, resets: tuple[ResetServer, ResetServer]
) -> Gateway:
    v1 = upstream.url + "/v1"  # type: ignore[attr-defined]
    once, always = resets

    def route(model: str, **more: Any) -> dict[str, Any]:
        return {"deployments": [_dep(v1, model)], **more}

    quick = {"total_s": 0.5, "first_token_s": 0.5}
    routes = {
        **{
            f"f-{name}": route(f"f-{name}")
            for name in (
                "429ra",
                "429",
                "429-always",
                "429-long",
                "cut",
                "malformed",
                "nodone",
                "nodone-fin",
                "500",
                "502",
                "503",
                "500-always",
                "502-always",
                "503-always",
                "gone",
                "gone-stream",
            )
        },
        "f-reset-once": {"deployments": [_dep(once.url + "/v1", "reset-model")]},
        "f-reset-always": {"deployments": [_dep(always.url + "/v1", "reset-model")]},
        "f-backup": route("f-backup"),
        "f-stall": route(
            "f-stall", fallbacks=["f-backup"], timeouts=quick, retries={"max_retries": 0}
        ),
        "f-stall-mid": route("f-stall-mid", timeouts=quick),
        "f-flap": route("f-flap", fallbacks=["f-backup"], retries={"max_retries": 0}),
        "f-alldown": {
            "deployments": [_dep(v1, "f-dead"), _dep("http://127.0.0.1:9/v1", "f-refused")],
            "retries": {"max_retries": 1},
        },
    }
    return start_gateway(
        routes=routes, breaker={"failures": 3, "cooldown_s": COOLDOWN_S}, retries={"max_retries": 2}
    )


def _rid() -> str:
    return "f-" + uuid.uuid4().hex[:12]


def _chat(gw: Gateway, model: str, rid: str, **kwargs: Any) -> Any:
    return gw.client().chat.completions.create(
        model=model, messages=HI, extra_headers={"x-request-id": rid}, **kwargs
    )


def _read_stream(stream: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


# -- upstream errors before the answer: retried -----------------------------------------------


def test_429_with_retry_after_is_honoured(faulty: Gateway, upstream: Upstream) -> None:
    upstream.script("f-429ra", status(429, retry_after="1"))
    rid, started = _rid(), time.monotonic()
    resp = _chat(faulty, "f-429ra", rid)
    assert resp.choices[0].message.content == "Hello world"
    assert time.monotonic() - started >= 1.0  # waited as told
    assert upstream.count("f-429ra") == 2
    record = faulty.record(rid)
    assert (record["status_code"], record["error_type"]) == (200, None)


def test_429_without_retry_after_backs_off_then_gives_up(
    faulty: Gateway, upstream: Upstream
) -> None:
    upstream.script("f-429", status(429))
    assert _chat(faulty, "f-429", _rid()).choices  # one retry after a short backoff
    upstream.script("f-429-always", then=status(429))
    rid = _rid()
    with pytest.raises(openai.RateLimitError) as info:
        _chat(faulty, "f-429-always", rid)
    assert info.value.code == "e429"  # the upstream's own error, after 1 + 2 attempts
    assert upstream.count("f-429-always") == 3
    record = faulty.record(rid)
    assert (record["status_code"], record["error_type"]) == (429, "429")
    # a Retry-After beyond retries.max_retry_after_s is passed on instead of waited for
    upstream.script("f-429-long", then=status(429, retry_after="60"))
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as long:
        _chat(faulty, "f-429-long", _rid())
    assert time.monotonic() - started < 2 and upstream.count("f-429-long") == 1
    assert long.value.response.headers["retry-after"] == "60"


@pytest.mark.parametrize("code", [500, 502, 503])
def test_5xx_is_retried_and_passed_on_when_it_persists(
    faulty: Gateway, upstream: Upstream, code: int
) -> None:
    upstream.script(f"f-{code}", status(code), status(code))
    rid = _rid()
    assert _chat(faulty, f"f-{code}", rid).choices[0].message.content == "Hello world"
    assert upstream.count(f"f-{code}") == 3
    assert faulty.record(rid)["status_code"] == 200
    upstream.script(f"f-{code}-always", then=status(code))
    rid = _rid()
    with pytest.raises(openai.InternalServerError) as info:
        _chat(faulty, f"f-{code}-always", rid)
    assert info.value.status_code == code and info.value.code == f"e{code}"
    record = faulty.record(rid)
    assert (record["status_code"], record["error_type"]) == (code, str(code))


def test_tcp_reset_before_the_response(
    faulty: Gateway, resets: tuple[ResetServer, ResetServer]
) -> None:
    rid = _rid()
    resp = _chat(faulty, "f-reset-once", rid)
    assert resp.choices[0].message.content == "after the reset"
    assert resets[0].connections == 2
    assert faulty.record(rid)["status_code"] == 200
    rid = _rid()
    with pytest.raises(openai.InternalServerError) as info:
        _chat(faulty, "f-reset-always", rid)
    assert info.value.status_code == 502 and info.value.code == "upstream_unreachable"
    record = faulty.record(rid)
    assert (record["status_code"], record["error_type"]) == (502, "upstream_unreachable")


# -- timeouts and fallbacks ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_stall_before_the_first_byte_times_out_then_falls_back(
    faulty: Gateway, upstream: Upstream, stream: bool
) -> None:
    upstream.script("f-stall", stall(5))
    rid, started = _rid(), time.monotonic()
    resp = _chat(faulty, "f-stall", rid, stream=stream)
    text = _read_stream(resp) if stream else resp.choices[0].message.content
    assert text == "Hello world"
    assert 0.5 <= time.monotonic() - started < 3
    record = faulty.record(rid)
    assert (record["status_code"], record["route"], record["model"]) == (200, "f-stall", "f-backup")
    deadline = time.monotonic() + 2  # the abandoned attempt was cancelled upstream
    while "f-stall" not in upstream.disconnects:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    upstream.disconnects.remove("f-stall")


def test_stall_mid_stream_ends_with_a_timeout_event(faulty: Gateway, upstream: Upstream) -> None:
    upstream.script("f-stall-mid", stall(3, after=1))
    rid = _rid()
    stream = _chat(faulty, "f-stall-mid", rid, stream=True)
    got: list[str] = []
    with pytest.raises(openai.APIError, match=r"timeouts\.total_s"):
        for chunk in stream:
            got.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(got) == "Hello"
    record = faulty.record(rid)
    assert (record["status_code"], record["error_type"], record["stream"]) == (
        504,
        "upstream_timeout",
        True,
    )


# -- streams that break after they started ------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "fault", "needle", "error_type"),
    [
        ("f-cut", cut(after=1), "broke after it started", "stream_interrupted"),
        ("f-malformed", malformed(after=1), "not JSON", "stream_malformed"),
        ("f-nodone", no_done(), "ended before the answer finished", "stream_incomplete"),
    ],
)
def test_a_broken_stream_ends_with_an_error_event(
    faulty: Gateway, upstream: Upstream, model: str, fault: Any, needle: str, error_type: str
) -> None:
    upstream.script(model, fault)
    rid = _rid()
    got: list[str] = []
    with pytest.raises(openai.APIError, match=needle):
        for chunk in _chat(faulty, model, rid, stream=True):
            got.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(got) in ("Hello", "Hello world")  # what came before the break, no more
    record = faulty.record(rid)
    assert (record["status_code"], record["error_type"], record["stream"]) == (
        502,
        error_type,
        True,
    )


def test_a_finished_stream_without_done_is_completed(faulty: Gateway, upstream: Upstream) -> None:
    upstream.script("f-nodone-fin", no_done(finish=True))
    rid = _rid()
    assert _read_stream(_chat(faulty, "f-nodone-fin", rid, stream=True)) == "Hello world"
    record = faulty.record(rid)
    assert (record["status_code"], record["error_type"]) == (200, None)


# -- circuit breaker and the last resort ---------------------------------------------------------


def test_a_flapping_primary_opens_its_circuit_then_recovers(
    faulty: Gateway, upstream: Upstream
) -> None:
    upstream.script("f-flap", then=status(500))
    ids = [_rid() for _ in range(5)]
    for rid in ids:  # 3 failures open the circuit; then the primary is not even tried
        assert _chat(faulty, "f-flap", rid).choices
    assert upstream.count("f-flap") == 3
    assert all(faulty.record(r)["model"] == "f-backup" for r in ids)
    breakers, flap = faulty.state.breakers, "openai/f-flap " + upstream.url + "/v1"  # type: ignore[attr-defined]
    assert breakers.state(flap) == "open"
    upstream.script("f-flap", then=OK)  # the primary recovers
    deadline = time.monotonic() + COOLDOWN_S + 5
    while breakers.state(flap) == "open":  # the cooldown, on the gateway's clock
        assert time.monotonic() < deadline, "the circuit never became half-open"
        time.sleep(0.02)
    probe, after = _rid(), _rid()
    _chat(faulty, "f-flap", probe)  # half-open: one probe, which succeeds
    _chat(faulty, "f-flap", after)
    assert faulty.record(probe)["model"] == "f-flap" and faulty.record(after)["model"] == "f-flap"
    assert upstream.count("f-flap") == 5


def test_all_deployments_down_is_a_clean_503_with_reasons(
    faulty: Gateway, upstream: Upstream
) -> None:
    upstream.script("f-dead", then=status(503))
    rid = _rid()
    with pytest.raises(openai.InternalServerError) as info:
        _chat(faulty, "f-alldown", rid)
    error = info.value
    assert error.status_code == 503 and error.code == "all_deployments_failed"
    assert "openai/f-dead: HTTP 503: upstream says 503" in error.message
    assert "openai/f-refused: upstream openai/f-refused unreachable" in error.message
    record = faulty.record(rid)
    assert (record["status_code"], record["error_type"]) == (503, "all_deployments_failed")


# -- the client side ---------------------------------------------------------------------------


def test_a_client_that_disconnects_cancels_the_upstream_request(
    faulty: Gateway, upstream: Upstream
) -> None:
    upstream.script("f-gone", stall(5))
    rid = _rid()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            faulty.url + "/v1/chat/completions",
            json={"model": "f-gone", "messages": HI},
            headers={"x-request-id": rid},
            timeout=0.3,
        )
    upstream.script("f-gone-stream", stall(5, after=1))
    stream = _chat(faulty, "f-gone-stream", _rid(), stream=True)
    next(iter(stream))
    stream.close()
    deadline = time.monotonic() + 3
    while not {"f-gone", "f-gone-stream"} <= set(upstream.disconnects):
        assert time.monotonic() < deadline, upstream.disconnects
        time.sleep(0.02)
    record = faulty.record(rid)
    assert (record["status_code"], record["error_type"]) == (499, "client_closed")


def test_graceful_shutdown_drains_in_flight_streams(start_gateway: StartGateway) -> None:
    gw = start_gateway()
    result: dict[str, Any] = {}
    stream = gw.client().chat.completions.create(model="slow", messages=HI, stream=True)
    first = next(iter(stream))
    reader = threading.Thread(target=lambda: result.update(text=_read_stream(stream)))
    reader.start()
    gw.server.server.should_exit = True  # what SIGTERM does
    reader.join(5)
    assert first.choices[0].delta.role == "assistant"
    assert result["text"] == "Hello world"
