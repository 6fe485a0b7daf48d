"""``lockgate calls list|show`` through the real CLI, on SQLite and PostgreSQL: records written
by a real gateway on loopback, and filters over records written with ``record_calls``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import pytest

from lockgate.registry import Registry, RegistrySettings
from lockgate.registry.calls import NewCall
from tests.conftest import Cli
from tests.gateway.conftest import StartGateway


def _list(cli: Cli, *args: str) -> list[dict[str, Any]]:
    code, out, err = cli("calls", "list", "--json", *args)
    assert code == 0, err
    return json.loads(out)["calls"]  # type: ignore[no-any-return]


def test_calls_from_a_real_gateway(
    cli: Cli, start_gateway: StartGateway, registry_settings: RegistrySettings
) -> None:
    gw = start_gateway(registry_settings)
    gw.registry.prompts.push("greet", [{"role": "user", "content": "hi {{ name }}"}])
    key = gw.registry.keys.create("ci-bot")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key.secret, max_retries=0)
    client.chat.completions.create(
        model="gpt-test",
        messages=[],
        extra_body={"prompt": {"name": "greet", "variables": {"name": "A"}}},
        extra_headers={"x-request-id": "req-greet-1"},
    )
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="fail-500", messages=[], extra_headers={"x-request-id": "req-boom-2"}
        )
    first = gw.record("req-greet-1")
    gw.record("req-boom-2")

    calls = _list(cli)
    assert [c["request_id"] for c in calls] == ["req-boom-2", "req-greet-1"]
    assert [c["request_id"] for c in _list(cli, "--status", "5xx")] == ["req-boom-2"]
    assert [c["request_id"] for c in _list(cli, "--prompt", "greet@1")] == ["req-greet-1"]
    assert len(_list(cli, "--key", "ci-bot", "--route", "gpt-test", "--since", "1h")) == 1

    code, out, err = cli("calls", "show", "req-gree", "--json")
    shown = json.loads(out)
    assert code == 0, err
    assert shown["trace_id"] == first["trace_id"] and len(shown["trace_id"]) == 32
    assert (shown["key_id"], shown["prompt_name"], shown["status_code"]) == (key.id, "greet", 200)
    code, out, _ = cli("calls", "show", str(shown["id"]))
    assert code == 0 and f"trace_id:       {first['trace_id']}" in out
    assert "route:          gpt-test" in out and "request_id:     req-greet-1" in out
    code, out, _ = cli("calls", "show", first["trace_id"][:12], "--json")
    assert json.loads(out)["request_id"] == "req-greet-1"
    code, out, _ = cli("calls", "list", "--route", "gpt-test")
    assert code == 0 and "greet@1" in out and key.id in out, out


def _record(registry: Registry, now: datetime, **over: Any) -> NewCall:
    row = {"request_id": "r", "operation": "chat", "route": "gpt", "model": "m",
           "status_code": 200, "latency_ms": 1.0, "created_at": now}  # fmt: skip
    return NewCall(**{**row, **over})


@pytest.fixture
def filled(registry: Registry) -> dict[str, Any]:
    now = datetime.now(UTC)
    key = registry.keys.create("team-a")
    twin = registry.keys.create("team-a")  # names need not be unique: both count
    other = registry.keys.create("team-b")
    registry.calls.record([
        _record(registry, now - timedelta(days=3), request_id="old-1"),
        _record(registry, now - timedelta(hours=2), request_id="a_%1", key_id=key.id,
                prompt_name="qa", prompt_version=1),
        _record(registry, now - timedelta(hours=1), request_id="abc%2", key_id=twin.id,
                prompt_name="qa", prompt_version=2, status_code=429, error_type="429"),
        _record(registry, now - timedelta(minutes=5), request_id="abcd3", key_id=other.id,
                route="emb", model="e", operation="embeddings", status_code=503),
        _record(registry, now - timedelta(minutes=1), request_id="abcd4", status_code=404),
    ])  # fmt: skip
    return {"now": now, "key": key, "twin": twin, "other": other}


def _ids(calls: list[dict[str, Any]]) -> list[str]:
    return [c["request_id"] for c in calls]


def test_filters(cli: Cli, filled: dict[str, Any]) -> None:
    assert _ids(_list(cli)) == ["abcd4", "abcd3", "abc%2", "a_%1", "old-1"]
    assert _ids(_list(cli, "--route", "emb")) == ["abcd3"]
    assert _ids(_list(cli, "--model", "m", "--since", "1d")) == ["abcd4", "abc%2", "a_%1"]
    assert _ids(_list(cli, "--key", "team-a")) == ["abc%2", "a_%1"]
    assert _ids(_list(cli, "--key", filled["other"].id)) == ["abcd3"]
    assert _ids(_list(cli, "--prompt", "qa")) == ["abc%2", "a_%1"]
    assert _ids(_list(cli, "--prompt", "qa@2")) == ["abc%2"]
    assert _ids(_list(cli, "--status", "4xx")) == ["abcd4", "abc%2"]
    assert _ids(_list(cli, "--status", "429", "--status", "5xx")) == ["abcd3", "abc%2"]
    assert _ids(_list(cli, "--status", "200")) == ["a_%1", "old-1"]
    assert _ids(_list(cli, "--since", "90m", "--until", "30m")) == ["abc%2"]
    since = (filled["now"] - timedelta(days=1)).replace(tzinfo=None).isoformat()
    assert _ids(_list(cli, "--until", since)) == ["old-1"]
    assert _ids(_list(cli, "--since", "1w", "--status", "5xx", "--key", "team-a")) == []


def test_paging(cli: Cli, filled: dict[str, Any]) -> None:
    code, out, _ = cli("calls", "list", "--json", "--limit", "2")
    page = json.loads(out)
    assert _ids(page["calls"]) == ["abcd4", "abcd3"] and page["next_before"] is not None
    code, out, _ = cli("calls", "list", "--json", "--limit", "2", "--before",
                       str(page["next_before"]))  # fmt: skip
    page = json.loads(out)
    assert _ids(page["calls"]) == ["abc%2", "a_%1"]
    code, out, _ = cli("calls", "list", "--limit", "4")
    assert code == 0 and "more: add --before" in out
    code, _, err = cli("calls", "list", "--limit", "0")
    assert code == 2 and "limit must be 1 to 1000" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "5xy"], "--status '5xy'"),
        (["--status", "200 OR 1=1"], "--status '200 OR 1=1'"),
        (["--status", "999"], "--status '999'"),
        (["--since", "yesterday"], "--since 'yesterday'"),
        (["--until", "24x"], "--until '24x'"),
        (["--since", "1h; DROP TABLE call_records"], "--since '1h; DROP TABLE call_records'"),
        (["--prompt", "qa@production"], "give NAME or NAME@VERSION"),
        (["--prompt", "bad name"], "invalid name"),
        (["--key", "nobody"], "no key with id or name 'nobody'"),
    ],
)
def test_garbage_is_exit_2_naming_it(
    cli: Cli, filled: dict[str, Any], args: list[str], message: str
) -> None:
    code, out, err = cli("calls", "list", *args)
    assert code == 2 and message in err and out == ""
    assert len(_list(cli)) == 5  # nothing was harmed


def test_show_by_prefix(cli: Cli, filled: dict[str, Any]) -> None:
    code, _, err = cli("calls", "show", "abcd")
    assert code == 2 and "ambiguous" in err
    code, out, err = cli("calls", "show", "abcd3", "--json")
    assert code == 0 and json.loads(out)["route"] == "emb", err
    # `%` and `_` are characters: `abc%` is one record, `a_%1` another, `a%%%` none
    code, out, err = cli("calls", "show", "abc%", "--json")
    assert code == 0 and json.loads(out)["request_id"] == "abc%2", err
    code, out, err = cli("calls", "show", "a_%1", "--json")
    assert code == 0 and json.loads(out)["request_id"] == "a_%1", err
    code, _, err = cli("calls", "show", "a%%%")
    assert code == 2 and "no call with id 'a%%%'" in err
    code, _, err = cli("calls", "show", "ab")
    assert code == 2 and "too short" in err
    code, _, err = cli("calls", "show", "999")
    assert code == 2 and "no call with id 999" in err
    code, out, _ = cli("calls", "show", "1", "--json")
    assert code == 0 and json.loads(out)["request_id"] == "old-1"


def test_the_cli_page_limit_is_the_registrys() -> None:
    """`lockgate --help` must not import SQLAlchemy, so the CLI keeps its own copy."""
    from lockgate.gateway import calls_cli
    from lockgate.registry import calls

    assert calls_cli.MAX_PAGE == calls.MAX_PAGE
