"""Registry prompts at request time: via the body's ``prompt`` object and ``prompt:NAME@LABEL``."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from tests.gateway.conftest import Gateway

SUPPORT = [
    {"role": "system", "content": "You answer questions about {{ product }}."},
    {"role": "user", "content": "{{ question }}"},
]


@pytest.fixture(scope="module")
def prompts(gateway: Gateway) -> Gateway:
    reg = gateway.registry
    reg.prompts.push("support", SUPPORT, {"model": "gpt-test", "temperature": 0.2, "seed": 7})
    reg.labels.set("prompt", "support", "production", 1)
    reg.prompts.push("haiku", "Write a haiku about {{ topic }}.", {"model": "gpt-test"})
    return gateway


def _echo(resp: Any) -> dict[str, Any]:
    echo: dict[str, Any] = resp.model_extra["echo"]
    return echo


def test_prompt_object_via_extra_body(prompts: Gateway, client: openai.OpenAI) -> None:
    variables = {"product": "lockgate", "question": "What is {{ 7*7 }}?"}
    resp = client.chat.completions.create(
        model="gpt-test",
        messages=[{"role": "user", "content": "and one more thing"}],
        temperature=0.9,
        extra_body={"prompt": {"name": "support", "label": "production", "variables": variables}},
    )
    echo = _echo(resp)
    assert echo["messages"] == [
        {"role": "system", "content": "You answer questions about lockgate."},
        {"role": "user", "content": "What is {{ 7*7 }}?"},  # inserted as text, never evaluated
        {"role": "user", "content": "and one more thing"},
    ]
    assert echo["temperature"] == 0.9  # the request wins
    assert echo["seed"] == 7  # the prompt's config fills the rest
    assert "prompt" not in echo


def test_prompt_model_string(prompts: Gateway, client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="prompt:support@production",
        messages=[],
        extra_body={"prompt": {"variables": {"product": "tea", "question": "hot?"}}},
    )
    echo = _echo(resp)
    assert echo["model"] == "stub-model"  # the prompt's model, routed
    assert echo["messages"][0]["content"] == "You answer questions about tea."
    assert echo["temperature"] == 0.2


def test_text_prompt_on_completions_by_version(prompts: Gateway, client: openai.OpenAI) -> None:
    resp = client.completions.create(
        model="gpt-test",
        prompt="",
        extra_body={"prompt": {"name": "haiku", "version": 1, "variables": {"topic": "rain"}}},
    )
    assert _echo(resp)["prompt"] == "Write a haiku about rain."


@pytest.mark.parametrize(
    ("prompt", "error", "needle"),
    [
        ({"name": "nope", "label": "production"}, openai.NotFoundError, "no prompt named 'nope'"),
        ({"name": "support", "label": "staging"}, openai.NotFoundError, "no label 'staging'"),
        (
            {"name": "support", "label": "production", "variables": {"product": "x"}},
            openai.BadRequestError,
            "missing variable(s): question",
        ),
        (
            {"name": "support", "variables": {"product": "x", "question": "y", "extra": 1}},
            openai.BadRequestError,
            "unknown variable(s): extra",
        ),
    ],
)
def test_prompt_errors_name_the_problem(
    prompts: Gateway, client: openai.OpenAI, prompt: dict[str, Any], error: type, needle: str
) -> None:
    with pytest.raises(error) as info:
        client.chat.completions.create(model="gpt-test", messages=[], extra_body={"prompt": prompt})
    assert needle in info.value.message  # type: ignore[attr-defined]


def test_a_label_move_is_seen_within_the_cache_ttl(prompts: Gateway, client: openai.OpenAI) -> None:
    def ask() -> str:
        resp = client.chat.completions.create(
            model="prompt:support@production",
            messages=[],
            extra_body={"prompt": {"variables": {"product": "p", "question": "q"}}},
        )
        return str(_echo(resp)["messages"][0]["content"])

    assert ask().startswith("You answer")
    reg = prompts.registry
    reg.prompts.push(
        "support",
        [{"role": "system", "content": "v2 on {{ product }} {{ question }}"}],
        {"model": "gpt-test"},
    )
    reg.labels.set("prompt", "support", "production", 2)
    ttl = prompts.settings.gateway.prompt_cache_ttl_s

    def seen(answer: str) -> None:  # polled: the TTL runs on the gateway's clock
        deadline = time.monotonic() + ttl + 2.0  # slack for a loaded machine
        while not ask().startswith(answer):
            assert time.monotonic() < deadline, f"{answer!r} not seen within the cache TTL"
            time.sleep(0.02)

    seen("v2 on p q")
    reg.labels.set("prompt", "support", "production", 1)
    seen("You answer")
