"""The proxy endpoints have one implementation, however a request reaches them.

:class:`gateway.app.GatewayApp` answers ``POST /v1/chat/completions``, ``/v1/completions``
and ``/v1/embeddings`` straight from the ASGI scope (the fast path); once any middleware is
added, every request goes through FastAPI's middleware stack and router instead. Both end in
:meth:`gateway.app.ProxyRoute.serve`. These tests send the same requests to a gateway of
each kind — sharing one registry and one fake upstream — and compare what comes back:
status, the headers a client reads, and the body.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from lockgate.gateway.app import GatewayApp, create_app
from lockgate.registry import Registry, RegistrySettings
from tests.gateway.conftest import gateway_settings
from tests.gateway.servers import ServerThread
from tests.gateway.upstream import Upstream

HI = [{"role": "user", "content": "hi"}]
# what a client reads; content-length is compared through the body
HEADERS = ("content-type", "cache-control", "retry-after", "x-request-id", "allow")


class PassThrough:
    """A middleware that changes nothing but counts what it saw: its presence sends
    every request through FastAPI's middleware stack and router."""

    seen = 0

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            PassThrough.seen += 1
        await self.app(scope, receive, send)


@dataclass
class Pair:
    fast: str
    routed: str
    keys: dict[str, str]


@pytest.fixture(scope="module")
def pair(
    upstream: Upstream, sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    data_dir = tmp_path_factory.mktemp("proxy-paths")
    shutil.copy(sqlite_template, data_dir / "registry.db")
    registry_settings = RegistrySettings(data_dir=data_dir)
    registry = Registry(registry_settings, actor="tester")
    keys = {
        "full": registry.keys.create("full").secret,
        "read-only": registry.keys.create("read-only", scopes=["registry:read"]).secret,
        "gpt-only": registry.keys.create("gpt-only", models=["gpt-test"]).secret,
    }
    # an rpm limit per gateway process: each gateway counts its own, so give each its key
    limited = {side: registry.keys.create(f"rpm-{side}", rpm=1).secret for side in "fr"}
    settings = gateway_settings(upstream.url, registry_settings)  # type: ignore[attr-defined]
    fast_app = create_app(settings)
    routed_app = create_app(settings)
    routed_app.add_middleware(PassThrough)
    assert isinstance(fast_app, GatewayApp) and not fast_app.user_middleware
    fast, routed = ServerThread(fast_app).start(), ServerThread(routed_app).start()
    try:
        yield Pair(fast.url, routed.url, {**keys, **{f"rpm-{s}": k for s, k in limited.items()}})
    finally:
        fast.stop()
        routed.stop()
        registry.close()


def _normal(body: bytes, content_type: str) -> Any:
    """The body, less what differs from call to call (the upstream's clock)."""
    if not content_type.startswith("application/json"):
        return body
    data = orjson.loads(body)
    if isinstance(data, dict):
        data.pop("created", None)
    return data


def _answer(base: str, path: str, key: str | None, **kwargs: Any) -> tuple[Any, ...]:
    headers = {"x-request-id": "req-same", **kwargs.pop("headers", {})}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    with httpx.Client(base_url=base, timeout=10) as client:
        response = client.post(path, headers=headers, **kwargs)
    kept = {name: response.headers.get(name) for name in HEADERS}
    content_type = response.headers.get("content-type", "")
    return response.status_code, kept, _normal(response.content, content_type)


CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    # name: (path, key, request)
    "chat": ("/v1/chat/completions", "full", {"json": {"model": "gpt-test", "messages": HI}}),
    "chat stream": (
        "/v1/chat/completions", "full",
        {"json": {"model": "gpt-test", "messages": HI, "stream": True}},
    ),
    "completion": ("/v1/completions", "full", {"json": {"model": "gpt-test", "prompt": "hi"}}),
    "embeddings": ("/v1/embeddings", "full", {"json": {"model": "gpt-test", "input": "hi"}}),
    "not json": (
        "/v1/chat/completions", "full",
        {"content": b"{nope", "headers": {"content-type": "application/json"}},
    ),
    "wrong type": (
        "/v1/chat/completions", "full",
        {"json": {"model": "gpt-test", "messages": HI, "temperature": "hot"}},
    ),
    "control field": (
        "/v1/chat/completions", "full",
        {"json": {"model": "gpt-test", "messages": HI, "api_base": "http://elsewhere/v1"}},
    ),
    "not a json body": (
        "/v1/embeddings", "full", {"content": b"hi", "headers": {"content-type": "text/plain"}},
    ),
    "no key": ("/v1/chat/completions", "", {"json": {"model": "gpt-test", "messages": HI}}),
    "unknown key": (
        "/v1/chat/completions", "lg-not-a-key", {"json": {"model": "gpt-test", "messages": HI}},
    ),
    "scope missing": (
        "/v1/chat/completions", "read-only", {"json": {"model": "gpt-test", "messages": HI}},
    ),
    "model not allowed": (
        "/v1/chat/completions", "gpt-only", {"json": {"model": "slow", "messages": HI}},
    ),
    "unknown model": ("/v1/chat/completions", "full", {"json": {"model": "nope", "messages": HI}}),
    "upstream 500": (
        "/v1/chat/completions", "full", {"json": {"model": "fail-500", "messages": HI}},
    ),
    "upstream 429": (
        "/v1/chat/completions", "full", {"json": {"model": "fail-429", "messages": HI}},
    ),
    "upstream text error": (
        "/v1/completions", "full", {"json": {"model": "fail-502-text", "prompt": "hi"}},
    ),
    "upstream down": (
        "/v1/embeddings", "full", {"json": {"model": "down", "input": "hi"}},
    ),
}  # fmt: skip


# refused by GatewayApp itself, before either path (gateway.app.refusal)
REFUSED_FIRST = frozenset({"not a json body"})


def _key(pair: Pair, name: str) -> str | None:
    if name == "":
        return None
    return pair.keys.get(name, name)


@pytest.mark.parametrize("case", list(CASES))
def test_both_paths_answer_alike(pair: Pair, case: str) -> None:
    path, key, request = CASES[case]
    seen = PassThrough.seen
    fast = _answer(pair.fast, path, _key(pair, key), **request)
    assert PassThrough.seen == seen, "the fast path went through the middleware"
    routed = _answer(pair.routed, path, _key(pair, key), **request)
    passed = 0 if case in REFUSED_FIRST else 1
    assert PassThrough.seen == seen + passed, "the routed request did not pass the middleware"
    assert fast == routed
    status, _, body = fast
    if status >= 400:  # the endpoint's own answer in the OpenAI shape, not the router's
        assert set(body) == {"error"}, fast


def test_rate_limits_answer_alike(pair: Pair) -> None:
    """A key over its rpm limit: the same 429, code and Retry-After on both paths."""
    body = {"json": {"model": "gpt-test", "messages": HI}}
    answers = []
    for side, base in (("f", pair.fast), ("r", pair.routed)):
        key = pair.keys[f"rpm-{side}"]
        first = _answer(base, "/v1/chat/completions", key, **body)
        second = _answer(base, "/v1/chat/completions", key, **body)
        assert first[0] == 200 and second[0] == 429, (first, second)
        status, headers, error = second
        message = error["error"]["message"].replace(f"rpm-{side}", "KEY")
        error["error"]["message"] = re.sub(r"after \d+ s", "after N s", message)  # the clock
        answers.append((status, headers["content-type"], headers["x-request-id"],
                        headers["retry-after"] is not None, error))  # fmt: skip
    assert answers[0] == answers[1]


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_other_methods_are_refused_alike(pair: Pair, method: str) -> None:
    answers = []
    for base in (pair.fast, pair.routed):
        with httpx.Client(base_url=base, timeout=10) as client:
            response = client.request(method, "/v1/chat/completions", json={})
        answers.append((response.status_code, response.headers.get("allow"), response.content))
    assert answers[0] == answers[1] and answers[0][0] == 405


def test_the_openapi_document_describes_the_proxy_endpoints(pair: Pair) -> None:
    with httpx.Client(base_url=pair.fast, timeout=10) as client:
        schema = client.get("/openapi.json").json()
    for path, model in (
        ("/v1/chat/completions", "ChatCompletionRequest"),
        ("/v1/completions", "CompletionRequest"),
        ("/v1/embeddings", "EmbeddingRequest"),
    ):
        operation = schema["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}
        assert {"400", "401", "429"} <= set(operation["responses"])
        assert operation["tags"] == ["openai"]
