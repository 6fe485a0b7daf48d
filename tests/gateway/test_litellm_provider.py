"""The litellm provider against an Anthropic-protocol server on loopback, in the OpenAI shape."""

from __future__ import annotations

import openai
import pytest

from tests.gateway.conftest import Gateway
from tests.gateway.upstream import Upstream


def test_chat_through_litellm(gateway: Gateway, client: openai.OpenAI, upstream: Upstream) -> None:
    resp = client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Say hello in French"}], max_tokens=20
    )
    assert resp.choices[0].message.content == "Bonjour"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (11, 3)
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["model"] == "claude-3-5-haiku-20241022"
    assert "Say hello in French" in str(sent["body"]["messages"])
    assert "traceparent" in sent["headers"]
    (span,) = gateway.wait_spans(1)
    assert span.name == "chat claude-3-5-haiku-20241022"
    assert span.attributes is not None
    assert span.attributes["gen_ai.provider.name"] == "anthropic"
    assert span.attributes["gen_ai.usage.output_tokens"] == 3


def test_stream_through_litellm(gateway: Gateway, client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=20,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Bonjour"
    assert any(c.usage is not None and c.usage.completion_tokens == 3 for c in chunks)
    (span,) = gateway.wait_spans(1)
    assert span.attributes is not None and span.attributes["lockgate.stream"] is True


def test_litellm_errors_keep_their_status(client: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(
            model="claude-badkey", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    assert "x-api-key" in info.value.message
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="claude-badkey", messages=[{"role": "user", "content": "hi"}], stream=True
        )
