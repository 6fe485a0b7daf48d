"""Bad input, explicitly: oversized and slow bodies, invalid JSON, wrong types, unknown models,
template syntax in prompt variables (rendered as text, never evaluated) and SQL-looking
strings in every name field."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import Gateway, StartGateway

HI = [{"role": "user", "content": "hi"}]
SQL = "x'; DROP TABLE call_records; --"
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def strict(start_gateway: StartGateway) -> Gateway:
    gw = start_gateway(requests={"max_body_bytes": LIMIT, "body_timeout_s": 0.5})
    gw.registry.prompts.push(
        "support", [{"role": "user", "content": "Answer: {{ question }}"}], {"model": "gpt-test"}
    )
    gw.registry.labels.set("prompt", "support", "production", 1)
    return gw


def _post(gw: Gateway, body: Any = None, **kwargs: Any) -> httpx.Response:
    if body is not None:
        kwargs["json"] = body
    return httpx.post(gw.url + "/v1/chat/completions", **kwargs)


def _error(resp: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_oversized_bodies_are_a_413(strict: Gateway) -> None:
    big = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * (LIMIT + 1)}]}
    resp = _post(strict, big)
    assert resp.status_code == 413 and _error(resp)["code"] == "request_too_large"

    def chunks() -> Any:  # no content-length: counted as it arrives
        for _ in range(LIMIT // 1024 + 2):
            yield b" " * 1024

    chunked = _post(strict, content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert _post(strict, {"model": "gpt-test", "messages": HI}).status_code == 200


def test_a_body_that_does_not_arrive_is_a_408(strict: Gateway) -> None:
    host, port = strict.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n"
            b"content-type: application/json\r\ncontent-length: 100\r\n\r\n" + b'{"model": '
        )
        sock.settimeout(5)
        started, answer = time.monotonic(), b""
        while not answer.endswith(b"}}"):  # the headers, then the JSON error body
            part = sock.recv(4096)
            assert part, answer
            answer += part
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5 s" in answer
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'"just a string"', None),
        ({"model": 5, "messages": HI}, "model"),
        ({"model": "gpt-test", "messages": "hi"}, "messages"),
        ({"model": "gpt-test", "messages": [{"content": "no role"}]}, "messages.0.role"),
        ({"model": "gpt-test", "messages": [{"role": "user", "content": 7}]}, "messages.0.content"),
        ({"model": "gpt-test", "messages": HI, "temperature": "hot"}, "temperature"),
        ({"model": "gpt-test", "messages": HI, "max_tokens": "10"}, "max_tokens"),
        ({"model": "gpt-test", "messages": HI, "stream": "yes"}, "stream"),
        ({"model": "gpt-test", "messages": HI, "n": True}, "n"),
        ({"model": "gpt-test", "messages": HI, "stop": [1, 2]}, "stop"),
        ({"model": "gpt-test", "messages": HI, "prompt": "text"}, "prompt"),
        ({"model": "gpt-test", "messages": HI, "prompt": {"name": 3}}, "prompt.name"),
    ],
)
def test_invalid_json_and_wrong_types_are_a_400_naming_the_field(
    strict: Gateway, body: Any, param: str | None
) -> None:
    resp = _post(strict, content=body) if isinstance(body, bytes) else _post(strict, body)
    assert resp.status_code == 400, resp.text
    error = _error(resp)
    assert error["type"] == "invalid_request_error" and error["param"] == param
    if param:
        assert error["message"].startswith(param)


def test_wrong_types_on_embeddings_and_completions(strict: Gateway) -> None:
    resp = httpx.post(strict.url + "/v1/embeddings", json={"model": "gpt-test", "input": 3.5})
    assert resp.status_code == 400 and _error(resp)["param"] == "input"
    resp = httpx.post(strict.url + "/v1/embeddings", json={"model": "gpt-test"})
    assert resp.status_code == 400 and _error(resp)["param"] == "input"
    resp = httpx.post(strict.url + "/v1/completions", json={"model": "gpt-test", "echo": "no"})
    assert resp.status_code == 400 and _error(resp)["param"] == "echo"


def test_unknown_models(strict: Gateway) -> None:
    client = strict.client()
    for model in ("nope", "registry:nope@production", "prompt:nope@production", ""):
        with pytest.raises((openai.NotFoundError, openai.BadRequestError)) as info:
            client.chat.completions.create(model=model, messages=HI)
        assert info.value.param in ("model", "prompt", "label", "name", None)  # type: ignore[attr-defined]


def test_template_syntax_in_variables_is_rendered_as_text(strict: Gateway) -> None:
    sneaky = "{{ 7 * 7 }} {% for x in range(3) %}x{% endfor %} {{ config }} ${HOME} %(name)s"
    resp = strict.client().chat.completions.create(
        model="prompt:support@production",
        messages=[],
        extra_body={"prompt": {"variables": {"question": sneaky}}},
    )
    sent = resp.model_extra["echo"]["messages"][0]["content"]  # type: ignore[index]
    assert sent == f"Answer: {sneaky}"  # as given: nothing evaluated, nothing expanded
    assert "49" not in sent and "xxx" not in sent


def test_sql_looking_strings_in_every_name_field(strict: Gateway) -> None:
    client = strict.client()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=SQL, messages=HI, extra_headers={"x-request-id": SQL})
    for prompt in ({"name": SQL}, {"name": "support", "label": SQL}, {"name": SQL, "version": 1}):
        with pytest.raises((openai.NotFoundError, openai.BadRequestError)):
            client.chat.completions.create(
                model="gpt-test", messages=HI, extra_body={"prompt": prompt}
            )
    with pytest.raises((openai.NotFoundError, openai.BadRequestError)):
        client.chat.completions.create(model=f"registry:{SQL}@production", messages=HI)
    with pytest.raises((openai.NotFoundError, openai.BadRequestError)):
        client.chat.completions.create(model=f"prompt:{SQL}", messages=HI)
    resp = client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": SQL, "name": SQL}],  # type: ignore[misc, list-item]
        user=SQL,
        extra_body={"prompt": {"name": "support", "variables": {"question": SQL}}},
    )
    assert resp.model_extra["echo"]["messages"][0]["content"] == f"Answer: {SQL}"  # type: ignore[index]
    key = strict.registry.keys.create(SQL)  # a key named like an injection is just a name
    assert strict.registry.keys.list()[-1].name == SQL and key.secret
    record = strict.record(SQL)  # the request id, stored as given; the table is still there
    assert record["model"] == SQL and record["status_code"] == 404
    assert len(strict.registry.calls.list(limit=100)) >= 7
