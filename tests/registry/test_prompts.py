"""Prompts: immutable versions, content dedup, strict sandboxed rendering (both backends)."""

from __future__ import annotations

import pytest

from lockgate.registry import (
    InvalidInput,
    NotFound,
    Registry,
    TemplateSyntaxInvalid,
    VariablesMismatch,
)

CHAT = [
    {"role": "system", "content": "You answer in {{ language }}."},
    {"role": "user", "content": "{{ question }}"},
]


def test_push_numbers_versions_and_extracts_variables(registry: Registry) -> None:
    v1, created1 = registry.prompts.push("qa", "Q: {{ question }}", {"model": "gpt-4o-mini"})
    v2, created2 = registry.prompts.push("qa", CHAT, {"temperature": 0.1}, message="chat form")
    assert (v1.version, created1, v1.kind, v1.variables) == (1, True, "text", ["question"])
    assert (v2.version, created2, v2.kind, v2.variables) == (
        2,
        True,
        "chat",
        ["language", "question"],
    )
    assert v2.message == "chat form" and v2.author == "tester"
    assert v2.created_at.tzinfo is not None
    assert [v.version for v in registry.prompts.versions("qa")] == [1, 2]


def test_identical_content_returns_existing_version(registry: Registry) -> None:
    first, _ = registry.prompts.push("qa", CHAT, {"model": "m"})
    registry.prompts.push("qa", "other {{ x }}")
    again, created = registry.prompts.push("qa", CHAT, {"model": "m"}, message="ignored")
    assert not created
    assert again.version == first.version == 1
    assert len(registry.prompts.versions("qa")) == 2


def test_latest_label_follows_pushes(registry: Registry) -> None:
    registry.prompts.push("qa", "a {{ x }}")
    registry.prompts.push("qa", "b {{ x }}")
    assert registry.prompts.get("qa").version == 2
    assert registry.labels.of("prompt", "qa")["latest"] == 2


def test_render_chat_prompt_fills_every_message(registry: Registry) -> None:
    registry.prompts.push("qa", CHAT, {"model": "gpt-4o-mini"})
    rendered = registry.prompts.render(
        registry.prompts.get("qa@1"), {"language": "French", "question": "2+2?"}
    )
    assert rendered.messages == [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "2+2?"},
    ]
    assert rendered.config == {"model": "gpt-4o-mini"}


def test_missing_and_extra_variables_are_named(registry: Registry) -> None:
    registry.prompts.push("qa", CHAT)
    prompt = registry.prompts.get("qa")
    with pytest.raises(VariablesMismatch) as missing:
        registry.prompts.render(prompt, {"question": "hi"})
    assert "missing variable(s): language" in str(missing.value)
    with pytest.raises(VariablesMismatch) as extra:
        registry.prompts.render(prompt, {"question": "hi", "language": "en", "tone": "dry"})
    assert "unknown variable(s): tone" in str(extra.value)


def test_variable_values_are_text_never_template_code(registry: Registry) -> None:
    registry.prompts.push("echo", "say: {{ text }}")
    hostile = "{{ 7*7 }} {% for x in range(3) %}x{% endfor %} {{ ''.__class__.__mro__ }}"
    rendered = registry.prompts.render(registry.prompts.get("echo"), {"text": hostile})
    assert rendered.text == f"say: {hostile}"


def test_sandbox_blocks_attribute_escapes_in_templates(registry: Registry) -> None:
    registry.prompts.push("evil", "{{ x.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(InvalidInput, match=r"sandbox|unsafe|rendering"):
        registry.prompts.render(registry.prompts.get("evil"), {"x": "s"})


def test_syntax_error_is_rejected_with_its_line_and_nothing_stored(registry: Registry) -> None:
    with pytest.raises(TemplateSyntaxInvalid) as err:
        registry.prompts.push("bad", "line one\nline two {{ x y }}\nline three")
    assert err.value.line == 2
    assert "line 2" in str(err.value)
    with pytest.raises(NotFound):
        registry.prompts.versions("bad")


def test_bad_messages_and_config_are_rejected(registry: Registry) -> None:
    with pytest.raises(InvalidInput, match=r"messages\[0\].role"):
        registry.prompts.push("p", [{"role": "wizard", "content": "x"}])
    with pytest.raises(InvalidInput, match=r"unknown model config key.*temprature"):
        registry.prompts.push("p", "x", {"temprature": 0.2})
    with pytest.raises(InvalidInput, match="invalid prompt name"):
        registry.prompts.push("x'; DROP TABLE prompts; --", "x")
    assert registry.prompts.list() == []


def test_unknown_prompt_version_and_label_are_not_found(registry: Registry) -> None:
    registry.prompts.push("qa", "x {{ y }}")
    with pytest.raises(NotFound, match="no prompt named 'nope'"):
        registry.prompts.get("nope@production")
    with pytest.raises(NotFound, match="no label 'production'"):
        registry.prompts.get("qa@production")
    with pytest.raises(NotFound, match="no version 9"):
        registry.prompts.get("qa@9")


def test_diff_shows_template_and_config_changes(registry: Registry) -> None:
    registry.prompts.push("qa", "Answer: {{ q }}", {"temperature": 0.0})
    registry.prompts.push("qa", "Answer briefly: {{ q }}", {"temperature": 0.7})
    registry.labels.set("prompt", "qa", "production", 1)
    diff = registry.prompts.diff("qa", "production", "2")
    assert diff.startswith("--- qa@1\n+++ qa@2\n")
    assert "-template: 'Answer: {{ q }}'" in diff and "+template: 'Answer briefly: {{ q }}'" in diff
    assert "-  temperature: 0.0" in diff and "+  temperature: 0.7" in diff
