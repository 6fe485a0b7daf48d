"""Virtual keys at the gateway: 401 without a valid key, 403 for a model or scope it lacks,
the key in the span and the call record, the admin key from configuration, and upstream
secrets that never leave the gateway."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from lockgate.gateway.settings import GatewaySettings
from lockgate.registry import Registry
from tests.gateway.conftest import Gateway, StartGateway
from tests.gateway.test_call_records import _wait_calls
from tests.gateway.upstream import ECHO_KEY, Upstream

UPSTREAM_KEY = "sk-upstream-0123456789abcdef"
HI = [{"role": "user", "content": "hi"}]


def _client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


def _until(check: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _refused(client: openai.OpenAI) -> bool:
    try:
        client.chat.completions.create(model="gpt-test", messages=HI)
    except openai.AuthenticationError:
        return True
    return False


def test_keys_become_required_once_one_exists(start_gateway: StartGateway) -> None:
    gw = start_gateway()
    anyone = _client(gw, "anything")
    assert anyone.chat.completions.create(model="gpt-test", messages=HI).choices  # auto: open
    key = gw.registry.keys.create("ci", rpm=1000)
    assert key.secret is not None
    _until(lambda: _refused(anyone))  # within key_cache_ttl_s
    with pytest.raises(openai.AuthenticationError) as info:
        anyone.chat.completions.create(model="gpt-test", messages=HI)
    assert info.value.code == "invalid_api_key" and "unknown API key" in info.value.message
    resp = httpx.post(gw.url + "/v1/chat/completions", json={"model": "gpt-test"})
    assert resp.status_code == 401
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert resp.json()["error"]["type"] == "authentication_error"

    gw.spans.clear()
    ok = _client(gw, key.secret).chat.completions.create(
        model="gpt-test", messages=HI, extra_headers={"x-request-id": "with-key"}
    )
    assert ok.choices[0].message.content == "Hello world"
    by_header = httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"api-key": key.secret},
        json={"model": "gpt-test", "messages": HI},
    )
    assert by_header.status_code == 200
    span = next(
        s for s in gw.wait_spans(2) if s.attributes.get("lockgate.request_id") == "with-key"
    )  # type: ignore[union-attr]
    assert span.attributes["lockgate.key.id"] == key.id  # type: ignore[index]
    record = gw.record("with-key")
    assert record["key_id"] == key.id

    gw.registry.keys.revoke(key.id)
    _until(lambda: _refused(_client(gw, key.secret)))  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        _client(gw, key.secret).chat.completions.create(model="gpt-test", messages=HI)


def test_expired_model_and_scope(start_gateway: StartGateway) -> None:
    gw = start_gateway()
    past = datetime.now(UTC) - timedelta(seconds=1)
    expired = gw.registry.keys.create("old", expires_at=past).secret
    narrow = gw.registry.keys.create("narrow", models=["gpt-test"]).secret
    reader = gw.registry.keys.create("reader", scopes=["registry:read"]).secret
    assert expired and narrow and reader
    with pytest.raises(openai.AuthenticationError, match="expired"):
        _client(gw, expired).chat.completions.create(model="gpt-test", messages=HI)
    client = _client(gw, narrow)
    assert client.chat.completions.create(model="gpt-test", messages=HI).choices
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="slow", messages=HI)
    assert info.value.status_code == 403 and info.value.param == "model"  # type: ignore[attr-defined]
    assert "may not use model 'slow'" in info.value.message
    assert [m.id for m in client.models.list()] == ["gpt-test"]
    with pytest.raises(openai.PermissionDeniedError, match="'inference' scope"):
        _client(gw, reader).chat.completions.create(model="gpt-test", messages=HI)
    records = _wait_calls(gw.registry, 4)
    assert sorted(r["status_code"] for r in records) == [200, 401, 403, 403]
    assert {r["error_type"] for r in records} >= {"invalid_api_key", "permission_denied"}


def test_admin_key_from_configuration(start_gateway: StartGateway) -> None:
    resolved = GatewaySettings(admin_key_env="LG_ADMIN").with_secrets({"LG_ADMIN": "lg-admin-1"})
    assert resolved.admin_key is not None and resolved.admin_key.get_secret_value() == "lg-admin-1"
    assert "lg-admin-1" not in repr(resolved)
    gw = start_gateway(admin_key="lg-admin-secret-value")
    with pytest.raises(openai.AuthenticationError):  # an admin key makes keys required at once
        _client(gw, "sk-nope").chat.completions.create(model="gpt-test", messages=HI)
    _client(gw, "lg-admin-secret-value").chat.completions.create(
        model="gpt-test", messages=HI, extra_headers={"x-request-id": "admin-call"}
    )
    record = gw.record("admin-call")
    assert record["key_id"] == "admin"


def test_auth_modes(start_gateway: StartGateway) -> None:
    required = start_gateway(auth="required")
    with pytest.raises(openai.AuthenticationError, match="lockgate keys create"):
        _client(required, "x").chat.completions.create(model="gpt-test", messages=HI)
    assert httpx.get(required.url + "/healthz").status_code == 200  # probes stay open
    assert httpx.get(required.url + "/metrics").status_code == 200
    disabled = start_gateway(auth="disabled")
    disabled.registry.keys.create("ignored")
    time.sleep(0.3)
    assert _client(disabled, "x").chat.completions.create(model="gpt-test", messages=HI).choices


def test_upstream_secrets_never_leave_the_gateway(
    start_gateway: StartGateway, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """The upstream key reaches the upstream, and nothing else: not the client (even when the
    upstream quotes it in an error), not a span attribute, not a call record, not a log line."""
    caplog.set_level(logging.DEBUG)
    base = upstream.url + "/v1"  # type: ignore[attr-defined]
    leaky = {"provider": "openai", "model": "leaky-model", "api_base": base,
             "api_key": UPSTREAM_KEY}  # fmt: skip
    gw = start_gateway(
        routes={"leaky": {"deployments": [leaky]}},
        tracing={"capture_content": True},
        retries={"max_retries": 0},
    )
    upstream.script("leaky-model", ECHO_KEY, ECHO_KEY)
    client = gw.client()
    seen: list[str] = []
    for stream in (False, True):
        with pytest.raises(openai.AuthenticationError) as info:
            client.chat.completions.create(model="leaky", messages=HI, stream=stream)
        seen.append(info.value.response.text)
    assert "Incorrect API key provided: Bearer [REDACTED]" in seen[0]
    seen.append(client.chat.completions.create(model="leaky", messages=HI).model_dump_json())
    seen.append("".join(c.model_dump_json() for c in client.chat.completions.create(
        model="leaky", messages=HI, stream=True)))  # fmt: skip
    for bad in ("nope", "down", "fail-500"):
        seen.append(httpx.post(gw.url + "/v1/chat/completions",
                               json={"model": bad, "messages": HI}).text)  # fmt: skip
    assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"
    spans = gw.wait_spans(7)
    seen += [json.dumps(dict(s.attributes or {}), default=str) for s in spans]
    seen += [str(s.status.description) for s in spans]
    seen += [json.dumps(r, default=str) for r in _wait_calls(gw.registry, 7)]
    seen += [r.getMessage() + str(r.exc_text or "") for r in caplog.records]
    seen.append(httpx.get(gw.url + "/metrics").text)
    assert len(spans) >= 7
    leaked = [text for text in seen if UPSTREAM_KEY in text or UPSTREAM_KEY[:12] in text]
    assert leaked == []


def test_open_mode_and_key_answers_last_one_ttl_on_the_gateway_clock(registry: Registry) -> None:
    """auto mode notices the first key, and a revoked key is refused, one cache TTL later:
    not before (one registry read per TTL), not after."""
    from lockgate.gateway.auth import Authenticator
    from lockgate.gateway.clock import ManualClock
    from lockgate.gateway.errors import AuthenticationFailed

    clock = ManualClock()
    auth = Authenticator(GatewaySettings(auth="auto", key_cache_ttl_s=5), registry, clock=clock)

    async def scenario() -> None:
        assert await auth.is_open()
        key = registry.keys.create("ci")
        assert key.secret is not None
        clock.advance(4.9)
        assert await auth.is_open()  # the answer is cached for the TTL
        clock.advance(0.2)
        assert not await auth.is_open()
        headers = {"authorization": f"Bearer {key.secret}"}
        assert (await auth.authenticate(headers)).name == "ci"
        registry.keys.revoke(key.id)
        clock.advance(4.9)
        assert (await auth.authenticate(headers)).name == "ci"  # still the cached answer
        clock.advance(0.2)
        with pytest.raises(AuthenticationFailed, match="revoked"):
            await auth.authenticate(headers)

    asyncio.run(scenario())
