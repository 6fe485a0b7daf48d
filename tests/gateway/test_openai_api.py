"""The official openai SDK against the gateway, with a fake OpenAI upstream on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from tests.gateway.conftest import Gateway
from tests.gateway.upstream import CHUNK_DELAY_S, Upstream


def test_chat_completion(client: openai.OpenAI, upstream: Upstream) -> None:
    resp = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )
    assert resp.choices[0].message.content == "Hello world"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens == 7
    echo = resp.model_extra["echo"]  # type: ignore[index]
    assert echo["model"] == "stub-model"  # the route's upstream model
    assert echo["messages"] == [{"role": "user", "content": "hi"}]
    sent = upstream.requests[-1]
    assert sent["headers"]["authorization"] == "Bearer sk-upstream-0123456789abcdef"
    assert "traceparent" in sent["headers"]


def test_request_fields_pass_through(client: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    resp = client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=tools,  # type: ignore[arg-type]
        tool_choice="auto",
        response_format={"type": "json_object"},
        n=2,
        stop=["\n\n", "END"],
        seed=42,
        temperature=0.3,
        extra_body={"top_k": 5, "repetition_penalty": 1.1, "vendor": {"x": [1, 2]}},
    )
    assert len(resp.choices) == 2
    call = resp.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "weather" and call.function.arguments == '{"city": "Paris"}'
    assert resp.choices[0].finish_reason == "tool_calls"
    echo = resp.model_extra["echo"]  # type: ignore[index]
    assert echo["tools"] == tools and echo["tool_choice"] == "auto"
    assert echo["response_format"] == {"type": "json_object"}
    assert (echo["n"], echo["stop"], echo["seed"], echo["temperature"]) == (
        2,
        ["\n\n", "END"],
        42,
        0.3,
    )
    assert (echo["top_k"], echo["repetition_penalty"], echo["vendor"]) == (5, 1.1, {"x": [1, 2]})


def test_stream_arrives_incrementally(client: openai.OpenAI, upstream: Upstream) -> None:
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="slow", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    arrivals: list[tuple[float, str]] = []
    for chunk in stream:
        for choice in chunk.choices:
            arrivals.append((time.monotonic() - started, choice.delta.content or ""))
    total = time.monotonic() - started
    text = "".join(piece for _, piece in arrivals)
    assert text == "Hello world"
    assert total >= 2 * CHUNK_DELAY_S
    first_word = next(t for t, piece in arrivals if piece == "Hello")
    assert arrivals[0][0] < CHUNK_DELAY_S  # the role chunk, before the upstream's first sleep
    assert first_word < total - CHUNK_DELAY_S / 2  # "Hello" well before the end
    # the gateway asked for usage (for tracing) and removed the usage event again
    assert upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    assert not any(c for c in [] if c)


def test_stream_with_usage_requested(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        n=2,
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: "Hello world", 1: "Hello world"}


def test_stream_without_usage_has_no_usage_event(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completions(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="gpt-test", prompt="Say hi", max_tokens=5, echo=False)
    assert resp.choices[0].text == "Hello world"
    assert resp.model_extra["echo"]["max_tokens"] == 5  # type: ignore[index]


def test_embeddings(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="gpt-test", input=["a", "b"])
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.data[0].embedding == pytest.approx([0.1, 0.2, 0.3])
    assert resp.usage.prompt_tokens == 4


def test_models_lists_routes_and_registry_models(gateway: Gateway, client: openai.OpenAI) -> None:
    gateway.registry.models.register("summariser", "upstream", {"model": "openai/stub-model"})
    gateway.registry.labels.set("model", "summariser", "production", 1)
    ids = [m.id for m in client.models.list()]
    assert "gpt-test" in ids and "claude" in ids
    assert "registry:summariser@production" in ids and "registry:summariser@latest" in ids


def test_models_lists_only_what_the_gateway_can_serve(
    gateway: Gateway, client: openai.OpenAI, tmp_path: Path
) -> None:
    """A scikit-learn model has labels too, but no chat endpoint answers for it."""
    sio = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression

    path = tmp_path / "churn.skops"
    sio.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), path)
    gateway.registry.models.register("churn-clf", "sklearn", path=path)
    gateway.registry.labels.set("model", "churn-clf", "production", 1)
    ids = [m.id for m in client.models.list()]
    assert not [i for i in ids if "churn-clf" in i], ids
    with pytest.raises(openai.BadRequestError):  # and indeed it cannot be called
        client.chat.completions.create(
            model="registry:churn-clf@production", messages=[{"role": "user", "content": "hi"}]
        )


def test_registry_model_resolves_to_its_upstream(gateway: Gateway, client: openai.OpenAI) -> None:
    gateway.registry.models.register(
        "tuned", "upstream", {"model": "openai/stub-model", "params": {"temperature": 0.1}}
    )
    resp = client.chat.completions.create(
        model="registry:tuned@latest", messages=[{"role": "user", "content": "hi"}]
    )
    echo = resp.model_extra["echo"]  # type: ignore[index]
    assert echo["model"] == "stub-model" and echo["temperature"] == 0.1
    with pytest.raises(openai.NotFoundError, match="no label"):
        client.chat.completions.create(
            model="registry:tuned@nope", messages=[{"role": "user", "content": "hi"}]
        )


ERROR_CLASSES = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
    500: openai.InternalServerError,
}


@pytest.mark.parametrize("status", sorted(ERROR_CLASSES))
def test_upstream_errors_raise_the_matching_sdk_class(client: openai.OpenAI, status: int) -> None:
    with pytest.raises(ERROR_CLASSES[status]) as info:
        client.chat.completions.create(
            model=f"fail-{status}", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == status
    assert info.value.code == f"e{status}"
    assert f"upstream says {status}" in info.value.message


@pytest.mark.parametrize("status", [401, 429])
def test_streaming_upstream_errors_raise_before_the_stream(
    client: openai.OpenAI, status: int
) -> None:
    with pytest.raises(ERROR_CLASSES[status]):
        client.chat.completions.create(
            model=f"fail-{status}", messages=[{"role": "user", "content": "hi"}], stream=True
        )


def test_gateway_errors_are_openai_shaped(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found" and info.value.param == "model"
    with pytest.raises(openai.InternalServerError) as info5:
        client.chat.completions.create(model="fail-502-text", messages=[])
    assert info5.value.status_code == 502 and "upstream exploded" in info5.value.message
    with pytest.raises(openai.InternalServerError) as down:
        client.chat.completions.create(model="down", messages=[])
    assert down.value.status_code == 502 and down.value.code == "upstream_unreachable"


def test_invalid_json_is_a_400(gateway: Gateway) -> None:
    import httpx

    resp = httpx.post(gateway.url + "/v1/chat/completions", content=b"{not json")
    assert resp.status_code == 400
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


def test_the_api_is_browsable_at_docs(gateway: Gateway) -> None:
    import httpx

    page = httpx.get(gateway.url + "/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/openapi.json" in page.text
    spec = httpx.get(gateway.url + "/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"]
