"""``/api/v1/prompts`` and ``/api/v1/templates/check``: list and search with paging, a prompt
with its versions, one version, new versions (201 new, 200 the same content), render preview,
diff, template check with the error's line; scopes and hostile input. Real gateway on loopback
with auth on, over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.conftest import Gateway, StartGateway
from tests.gateway.rest_support import (
    BACKENDS,
    BODY_CAP,
    Clients,
    error,
    make_clients,
    rest_gateway,
)


@pytest.fixture(scope="module", params=BACKENDS)
def gw(
    request: pytest.FixtureRequest, start_gateway: StartGateway,
    tmp_path_factory: pytest.TempPathFactory,
) -> Gateway:  # fmt: skip
    return rest_gateway(request, start_gateway, tmp_path_factory)


@pytest.fixture(scope="module")
def c(gw: Gateway) -> Iterator[Clients]:
    yield from make_clients(gw)


CHAT = [{"role": "system", "content": "Be {{ tone }}."}, {"role": "user", "content": "{{ q }}"}]


def test_create_versions_over_http(c: Clients) -> None:
    url = "/prompts/support/bot/versions"
    made = c["writer"].post(url, json={"template": CHAT, "config": {"temperature": 0.2},
                                       "message": "first"})  # fmt: skip
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["version"], body["created"], body["variables"]) == (1, True, ["q", "tone"])
    assert made.headers["location"] == "/api/v1/prompts/support/bot/versions/1"
    assert body["author"] == f"api:{c.key_ids['writer']} (writer)"
    same = c["writer"].post(url, json={"template": CHAT, "config": {"temperature": 0.2},
                                       "message": "again"})  # fmt: skip
    assert same.status_code == 200 and same.json()["version"] == 1
    assert same.json()["created"] is False and same.json()["message"] == "first"
    text = c["writer"].post(url, json={"template": "Answer {{ q }}", "message": "plain"})
    assert text.status_code == 201 and text.json()["version"] == 2

    assert error(c["reader"].post(url, json={"template": "x"}), 403)
    assert error(c["anonymous"].post(url, json={"template": "x"}), 401)
    bad = error(c["writer"].post(url, json={"template": "line one\n{% if %}"}), 400)
    assert bad["code"] == "template_syntax_error" and "line 2" in bad["message"]
    unknown = error(c["writer"].post(url, json={"template": "x", "path": "/etc/passwd",
                                                "author": "root"}), 400)  # fmt: skip
    assert "author" in unknown["message"] and "path" in unknown["message"]
    config = error(c["writer"].post(url, json={"template": "x", "config": {"api_base": "h"}}), 400)
    assert "api_base" in config["message"]
    role = error(c["writer"].post(url, json={"template": [{"role": "root", "content": "x"}]}), 400)
    assert "role" in role["param"]


def test_read_prompts_versions_and_diff(c: Clients) -> None:
    reg = c.gw.registry
    reg.prompts.push("faq", "Hello {{ name }}", message="one")
    reg.prompts.push("faq", "Hi {{ name }}!", {"temperature": 0}, message="two")
    reg.labels.set("prompt", "faq", "production", 1)

    prompt = c["reader"].get("/prompts/faq").json()
    assert prompt["labels"] == {"latest": 2, "production": 1} and prompt["latest_version"] == 2
    assert [(v["version"], v["message"], v["labels"]) for v in prompt["versions"]] == [
        (2, "two", ["latest"]), (1, "one", ["production"]),
    ]  # fmt: skip
    assert {"author", "created_at", "content_hash", "variables"} <= set(prompt["versions"][0])
    assert "template" not in prompt["versions"][0]

    one = c["reader"].get("/prompts/faq/versions/production").json()
    assert (one["version"], one["template"], one["labels"]) == (1, "Hello {{ name }}",
                                                                ["production"])  # fmt: skip
    assert c["reader"].get("/prompts/faq/versions/v2").json()["config"] == {"temperature": 0}
    paged = c["reader"].get("/prompts/faq/versions", params={"limit": 1}).json()
    assert [v["version"] for v in paged["data"]] == [2] and paged["next_cursor"]
    rest = c["reader"].get("/prompts/faq/versions", params={"cursor": paged["next_cursor"]})
    assert [v["version"] for v in rest.json()["data"]] == [1]

    diff = c["reader"].get("/prompts/faq/diff", params={"a": "production", "b": "2"}).json()
    assert "-template: Hello {{ name }}" in diff["diff"] and diff["b"]["version"] == 2

    rendered = c["reader"].post("/prompts/faq/versions/1/render",
                                json={"variables": {"name": "{{ 7*7 }}"}})  # fmt: skip
    assert rendered.status_code == 200 and rendered.json()["text"] == "Hello {{ 7*7 }}"
    missing = error(c["reader"].post("/prompts/faq/versions/1/render", json={}), 400)
    assert missing["code"] == "prompt_variables_mismatch"

    assert error(c["reader"].get("/prompts/faq/versions/9"), 404)
    assert error(c["reader"].get("/prompts/faq/versions/staging"), 404)
    assert error(c["reader"].get("/prompts/nothing-here"), 404)
    assert error(c["inference"].get("/prompts/faq"), 403)


def test_list_and_search_prompts_with_paging(c: Clients) -> None:
    reg = c.gw.registry
    for name in ("search/alpha", "search/beta", "search/gamma", "search/a_b", "search/axb"):
        reg.prompts.push(name, f"{name} {{{{ x }}}}", message=f"made {name}")
    first = c["reader"].get("/prompts", params={"q": "SEARCH/", "limit": 2}).json()
    assert [p["name"] for p in first["data"]] == ["search/a_b", "search/alpha"]
    assert first["data"][0]["latest_version"] == 1
    assert first["data"][0]["latest_author"] == "tester" and first["data"][0]["latest_at"]
    assert first["data"][0]["labels"] == {"latest": 1}
    names = [p["name"] for p in first["data"]]
    cursor = first["next_cursor"]
    while cursor:
        page = c["reader"].get("/prompts", params={"q": "search/", "limit": 2, "cursor": cursor})
        names += [p["name"] for p in page.json()["data"]]
        cursor = page.json()["next_cursor"]
    assert names == sorted(names) and len(names) == 5
    # % and _ are characters, not wildcards
    assert [p["name"] for p in c["reader"].get("/prompts", params={"q": "a_b"}).json()["data"]] == [
        "search/a_b"
    ]
    assert c["reader"].get("/prompts", params={"q": "a%b"}).json()["data"] == []
    assert error(c["reader"].get("/prompts", params={"cursor": "bm90LWEtY3Vyc29y"}), 400)
    assert error(c["reader"].get("/prompts", params={"limit": 0}), 400)


def test_template_check_for_the_editor(c: Clients) -> None:
    url = "/templates/check"
    good = c["reader"].post(url, json={"template": "Dear {{ name }}, {{ body }}"}).json()
    assert good == {"valid": True, "kind": "text", "variables": ["body", "name"]}
    chat = c["reader"].post(url, json={"template": CHAT}).json()
    assert chat["valid"] and chat["kind"] == "chat" and chat["variables"] == ["q", "tone"]
    bad = c["reader"].post(url, json={"template": "ok\nok\n{{ broken"}).json()
    assert bad["valid"] is False and bad["error"]["line"] == 3
    assert bad["error"]["code"] == "template_syntax_error"
    config = c["reader"].post(url, json={"template": "x", "config": {"timeout": 1}}).json()
    assert config["valid"] is False and config["error"]["param"] == "config"
    assert error(c["reader"].post(url, json={"template": "x", "file": "/etc/passwd"}), 400)
    assert error(c["anonymous"].post(url, json={"template": "x"}), 401)


def test_hostile_names_and_bodies(c: Clients) -> None:
    for path in ("/prompts/..%2F..%2Fetc%2Fpasswd/versions", "/prompts/%2e%2e/versions",
                 "/prompts/.hidden/versions", "/prompts/a%00b/versions"):  # fmt: skip
        got = c["writer"].post(path, json={"template": "x"})
        assert got.status_code == 400, (path, got.text)
        assert set(got.json()) == {"error"}
    assert c.gw.registry.prompts.list() == [] or all(
        not p.name.startswith(".") for p in c.gw.registry.prompts.list()
    )
    big = b'{"template": "' + b"x" * BODY_CAP + b'"}'
    assert error(c["writer"].post("/prompts/big/versions", content=big), 413)
    assert error(c["writer"].post("/prompts/big/versions", content=b"not json"), 400)
    assert error(c["writer"].post("/prompts/big/versions", json=["template"]), 400)
    long_message = {"template": "x", "message": "m" * 20_000}
    assert error(c["writer"].post("/prompts/big/versions", json=long_message), 400)
    bomb = {"variables": {}}
    c.gw.registry.prompts.push("bomb", "{{ 'a' * 100000000 }}")
    assert error(c["reader"].post("/prompts/bomb/versions/1/render", json=bomb), 400)["code"] == (
        "template_limit"
    )
