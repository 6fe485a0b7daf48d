"""What an inference request may choose, and what it may not.

- No body field picks a destination, a credential, a header or a client option: each is a 400
  naming it, on every provider path; what reaches litellm is the OpenAI API's fields only; a
  request refused for its own fault never counts against a deployment's circuit breaker.
- A registry model naming a host its provider is not configured for is refused, when it is
  registered (the CLI) and when it is called.
- ``max_parallel`` counts requests the gateway numbers itself, not client request ids.
- Prompt templates render bounded and off the event loop; out-of-range numbers, n and
  max_tokens, and JSON nested past what can be re-encoded, are 400s.
- Budgets fail closed: a budgeted key calling an unpriced model is refused (model_unpriced)
  unless gateway.prices prices it or gateway.unpriced allows it.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import Gateway, StartGateway
from tests.gateway.test_key_limits import _closed_port
from tests.gateway.test_limits import REDIS_URL, _redis_reason
from tests.gateway.upstream import Upstream, stall

HI = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).resolve().parents[2]
ANTHROPIC_KEY = "sk-ant-test"  # what the fake Anthropic upstream accepts
OPENAI_KEY = "sk-upstream-0123456789abcdef"  # the conftest's upstream key


class Listener:
    """An attacker's HTTP listener on loopback: keeps every request it gets (path, headers)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                listener.requests.append((self.path, dict(self.headers)))
                body = b'{"error": {"message": "gotcha", "type": "x"}}'
                self.send_response(500)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET = _any

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def attacker() -> Any:
    listener = Listener()
    yield listener
    listener.close()


def _bad_request(call: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as info:
        call()
    return info.value


# -- 1. control fields ------------------------------------------------------------------------

CONTROL = ["api_base", "base_url", "api_key", "api_version", "extra_headers",
           "custom_llm_provider", "timeout", "mock_response", "fallbacks"]  # fmt: skip


@pytest.mark.parametrize("route", ["claude", "gpt-test"])
@pytest.mark.parametrize("field", CONTROL)
def test_a_body_field_never_picks_the_destination(
    gateway: Gateway, attacker: Listener, upstream: Upstream, route: str, field: str
) -> None:
    value: Any = attacker.url + "/v1"
    if field == "extra_headers":
        value = {"x-api-key": "sk-attacker"}
    elif field in ("timeout",):
        value = 0.001
    elif field == "fallbacks":
        value = [{"model": "anthropic/claude", "api_base": attacker.url}]
    before = len(upstream.requests)
    error = _bad_request(
        lambda: gateway.client().chat.completions.create(
            model=route, messages=HI, max_tokens=5, extra_body={field: value}
        )
    )
    assert error.param == field and field in error.message
    assert attacker.requests == []
    assert len(upstream.requests) == before  # refused before anything was sent


def test_the_route_key_goes_only_to_the_route(
    gateway: Gateway, attacker: Listener, upstream: Upstream
) -> None:
    client = gateway.client()
    for field in ("api_base", "base_url"):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model="claude", messages=HI, max_tokens=5, extra_body={field: attacker.url}
            )
        with pytest.raises(openai.BadRequestError):  # streams too
            client.chat.completions.create(
                model="claude", messages=HI, stream=True, extra_body={field: attacker.url}
            )
    assert attacker.requests == []
    resp = client.chat.completions.create(model="claude", messages=HI, max_tokens=5)
    assert resp.choices[0].message.content == "Bonjour"
    assert upstream.requests[-1]["headers"]["x-api-key"] == ANTHROPIC_KEY


def test_litellm_gets_only_the_openai_fields(gateway: Gateway, upstream: Upstream) -> None:
    client = gateway.client()
    resp = client.chat.completions.create(
        model="claude", messages=HI, max_tokens=5, temperature=0.5,
        extra_body={"safety_settings": [{"x": 1}], "aws_region": "x", "lockgate_x": 1},
    )  # fmt: skip
    assert resp.choices[0].message.content == "Bonjour"
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["body"]["temperature"] == 0.5 and sent["body"]["max_tokens"] == 5
    assert not {"safety_settings", "aws_region", "lockgate_x"} & set(sent["body"])


def test_requests_refused_for_their_own_fault_do_not_open_the_breaker(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    gw = start_gateway(breaker={"failures": 2, "cooldown_s": 60})
    client = gw.client()
    closed = f"http://127.0.0.1:{_closed_port()}"
    for field in ("api_base", "base_url"):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model="claude", messages=HI, max_tokens=5, extra_body={field: closed}
            )
    deep: Any = "x"
    for _ in range(300):  # nested deeper than the body can be re-encoded: the request's fault
        deep = [deep]
    for route in ("claude", "gpt-test", "claude", "gpt-test"):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model=route, messages=HI, max_tokens=5, extra_body={"metadata_x": deep}
            )
    for _ in range(2):  # upstream 400s: the deployment answered; the request was wrong
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="fail-400", messages=HI)
    breakers = gw.state.breakers
    assert all(state == "closed" for state in map(breakers.state, _keys(gw))), _keys(gw)
    assert client.chat.completions.create(model="claude", messages=HI, max_tokens=5).choices
    assert client.chat.completions.create(model="gpt-test", messages=HI).choices


def _keys(gw: Gateway) -> list[str]:
    router = gw.state.router
    return [t.key for name in router.route_names for t in router._routes[name].targets]


# -- 2. registry models and their hosts ------------------------------------------------------


def test_a_registry_model_cannot_send_the_provider_key_elsewhere(
    start_gateway: StartGateway, attacker: Listener, upstream: Upstream
) -> None:
    gw = start_gateway()
    reg = gw.registry
    reg.models.register(
        "evil-base", "upstream", {"model": "openai/gpt-x", "api_base": attacker.url}
    )
    reg.models.register("evil-param", "upstream",
                       {"model": "openai/gpt-x", "params": {"base_url": attacker.url}})  # fmt: skip
    claude = {"model": "anthropic/claude-3", "params": {"api_base": attacker.url}}
    reg.models.register("evil-claude", "upstream", claude)
    reg.models.register("evil-key", "upstream",
                       {"model": "openai/gpt-x", "params": {"api_key": "sk-mine"}})  # fmt: skip
    reg.models.register("fine", "upstream", {"model": "openai/stub-model"})
    client = gw.client()
    for name in ("evil-base", "evil-param", "evil-claude"):
        with pytest.raises(openai.PermissionDeniedError) as info:
            client.chat.completions.create(model=f"registry:{name}", messages=HI)
        assert info.value.code == "upstream_host_not_allowed", name
        assert attacker.url in info.value.message and "allowed_api_bases" in info.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="registry:evil-key", messages=HI)
    assert "api_key" in bad.value.message
    assert attacker.requests == []
    resp = client.chat.completions.create(model="registry:fine", messages=HI)
    assert resp.choices and upstream.requests[-1]["headers"]["authorization"].endswith(OPENAI_KEY)


def test_a_host_the_configuration_allows_is_served(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    second = Upstream()
    from tests.gateway.servers import ServerThread

    server = ServerThread(second.app).start()
    try:
        openai_defaults = {"api_base": upstream.url + "/v1", "api_key": OPENAI_KEY,  # type: ignore[attr-defined]
                           "allowed_api_bases": [server.url + "/v1"]}  # fmt: skip
        gw = start_gateway(providers={"openai": openai_defaults})
        gw.registry.models.register(
            "other", "upstream", {"model": "openai/stub-model", "api_base": server.url + "/v1"}
        )
        assert gw.client().chat.completions.create(model="registry:other", messages=HI).choices
        assert second.requests[-1]["headers"]["authorization"] == f"Bearer {OPENAI_KEY}"
    finally:
        server.stop()


def test_the_cli_refuses_to_register_a_model_naming_another_host(
    tmp_path: Path, attacker: Listener
) -> None:
    config = tmp_path / "lockgate.yaml"
    config.write_text(json.dumps({
        "registry": {"data_dir": str(tmp_path / "data")},
        "gateway": {"providers": {"openai": {"api_base": "https://api.openai.com/v1"}}},
    }))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LOCKGATE_DATABASE_URL", None)
    base = [sys.executable, "-m", "lockgate.gateway.cli", "-c", str(config), "model", "register"]
    refused = subprocess.run(
        [*base, "evil", "--flavor", "upstream", "--model", "openai/gpt-4o-mini",
         "--param", f"api_base={attacker.url}"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert attacker.url in refused.stderr and "allowed_api_bases" in refused.stderr
    ok = subprocess.run(
        [*base, "good", "--flavor", "upstream", "--model", "openai/gpt-4o-mini",
         "--param", "temperature=0"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr


# -- 10. max_parallel counts the gateway's own request numbers --------------------------------


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_one_client_request_id_does_not_share_a_slot(
    start_gateway: StartGateway, upstream: Upstream, backend: str
) -> None:
    over: dict[str, Any] = {}
    if backend == "redis":
        if reason := _redis_reason():
            pytest.skip(reason)
        over["redis_url"] = REDIS_URL
    model = f"held-{backend}"
    upstream.script(model, then=stall(1.0))
    deployment = {"provider": "openai", "model": model, "api_base": upstream.url + "/v1"}  # type: ignore[attr-defined]
    gw = start_gateway(routes={"held": {"deployments": [deployment]}}, **over)
    secret = gw.registry.keys.create(f"two-{backend}", max_parallel=2).secret
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    go = threading.Barrier(6)

    def call() -> None:
        go.wait()
        resp = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "held", "messages": HI},
            headers={"authorization": f"Bearer {secret}", "x-request-id": "same-id"},
            timeout=30,
        )
        with lock:
            statuses[resp.status_code] += 1

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == {200: 2, 429: 4}, statuses


def test_echoed_request_ids_are_capped(gateway: Gateway) -> None:
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt-test", "messages": HI},
        headers={"x-request-id": "r" * 5000},
    )
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == "r" * 64


# -- 12. bounded templates and numbers --------------------------------------------------------


@pytest.fixture(scope="module")
def heavy(start_gateway: StartGateway) -> Gateway:
    gw = start_gateway()
    reg = gw.registry
    templates = {
        "loops": "{% for i in range(7000) %}{% for j in range(7000) %}{% endfor %}{% endfor %}"
        "{{ q }}",
        "big": "{{ 'a' * 10**8 }}{{ q }}",
        "range": "{% for i in range(10**9) %}{% endfor %}{{ q }}",
        "power": "{{ 10 ** (10 ** 8) }}{{ q }}",
        "plain": "Answer: {{ q }}",
    }
    for name, template in templates.items():
        reg.prompts.push(name, [{"role": "user", "content": template}], {"model": "gpt-test"})
    return gw


def _prompt(gw: Gateway, name: str, **spec: Any) -> httpx.Response:
    body = {"prompt": {"name": name, "variables": {"q": "hi"}, **spec}}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=60)


def test_a_heavy_template_does_not_stall_other_requests(heavy: Gateway) -> None:
    assert _prompt(heavy, "plain").status_code == 200
    answers: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answers.append(_prompt(heavy, "loops")))
    worker.start()
    time.sleep(0.05)
    started = time.perf_counter()
    plain = httpx.post(
        heavy.url + "/v1/chat/completions", json={"model": "gpt-test", "messages": HI}, timeout=60
    )
    took = time.perf_counter() - started
    worker.join()
    assert plain.status_code == 200
    assert took < 0.5, f"a plain request took {took:.2f} s beside a heavy template"
    (loops,) = answers
    assert loops.status_code == 400, loops.text
    assert loops.json()["error"]["code"] == "template_limit"


@pytest.mark.parametrize("name", ["big", "range", "power"])
def test_templates_that_would_exhaust_the_process_are_400s(heavy: Gateway, name: str) -> None:
    started = time.perf_counter()
    resp = _prompt(heavy, name)
    assert resp.status_code == 400, resp.text[:300]
    error = resp.json()["error"]
    assert error["code"] == "template_limit"
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("version", [10**23, -1, 0, "v" + "9" * 30])
def test_out_of_range_versions_are_400s(heavy: Gateway, version: Any) -> None:
    resp = _prompt(heavy, "plain", version=version)
    assert resp.status_code == 400, resp.text[:300]
    assert resp.json()["error"]["param"] == "prompt.version"


@pytest.mark.parametrize(
    "model", ["prompt:plain@" + "9" * 30, "registry:x@" + "9" * 30, "prompt:plain@v" + "9" * 25]
)
def test_out_of_range_versions_in_model_strings_are_400s(heavy: Gateway, model: str) -> None:
    resp = httpx.post(
        heavy.url + "/v1/chat/completions",
        json={"model": model, "messages": HI, "prompt": None},
    )
    assert resp.status_code == 400, resp.text[:300]
    assert resp.json()["error"]["param"] == "model"


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", -1), ("n", 0), ("n", 10**30), ("n", 10**6), ("max_tokens", -5), ("max_tokens", 10**30),
     ("max_tokens", 10**12), ("max_completion_tokens", -1), ("seed", 10**30)],
)  # fmt: skip
def test_n_and_max_tokens_out_of_range_are_400s(gateway: Gateway, field: str, value: int) -> None:
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "gpt-test", "messages": HI, field: value},
    )
    assert resp.status_code == 400, resp.text[:300]
    assert resp.json()["error"]["param"] == field


@pytest.mark.parametrize("depth", [300, 1000, 10_000])
@pytest.mark.parametrize("route", ["gpt-test", "claude"])
def test_json_nested_too_deep_is_a_400(gateway: Gateway, depth: int, route: str) -> None:
    nested = "[" * depth + "]" * depth
    raw = json.dumps({"model": route, "messages": HI, "x": "@"}).replace('"@"', nested)
    resp = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=raw.encode(),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400, resp.text[:300]
    assert "nested" in resp.json()["error"]["message"]


# -- 13. budgets fail closed ------------------------------------------------------------------


def _keyed(gw: Gateway, secret: str | None) -> openai.OpenAI:
    assert secret is not None
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0)


def _route(upstream: Upstream, model: str) -> dict[str, Any]:
    deployment = {"provider": "openai", "model": model, "api_base": upstream.url + "/v1"}  # type: ignore[attr-defined]
    return {"deployments": [deployment]}


def test_a_budgeted_key_is_refused_an_unpriced_model(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    gw = start_gateway(routes={"unpriced": _route(upstream, "stub-model")})
    budgeted = _keyed(gw, gw.registry.keys.create("budgeted", budget_usd=1.0).secret)
    with pytest.raises(openai.PermissionDeniedError) as info:
        budgeted.chat.completions.create(model="unpriced", messages=HI)
    assert info.value.code == "model_unpriced"
    assert "stub-model" in info.value.message and "gateway.prices" in info.value.message
    free = _keyed(gw, gw.registry.keys.create("unbudgeted").secret)
    assert free.chat.completions.create(model="unpriced", messages=HI).choices


def test_configured_prices_make_a_budget_bind(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    gw = start_gateway(
        routes={"house": _route(upstream, "house-model")},
        prices={"house-model": {"input_per_million": 10_000, "output_per_million": 10_000}},
    )
    key = gw.registry.keys.create("capped", budget_usd=0.1)  # 9 tokens a call: $0.09
    client = _keyed(gw, key.secret)
    client.chat.completions.create(model="house", messages=HI)
    time.sleep(0.2)
    client.chat.completions.create(model="house", messages=HI)  # $0.09 spent: under $0.1
    time.sleep(0.2)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="house", messages=HI)
    assert info.value.code == "budget_exceeded"
    assert gw.registry.keys.spend(key.id) == pytest.approx(0.18)


def test_embeddings_spend_a_budget(start_gateway: StartGateway, upstream: Upstream) -> None:
    """An embeddings answer has input tokens only; they still cost."""
    gw = start_gateway(
        routes={"embed": _route(upstream, "house-embed")},
        prices={"house-embed": {"input_per_million": 10_000}},
    )
    key = gw.registry.keys.create("embedder", budget_usd=0.05)  # 4 tokens a call: $0.04
    client = _keyed(gw, key.secret)
    client.embeddings.create(model="embed", input="hello")
    time.sleep(0.2)
    with pytest.raises(openai.RateLimitError) as info:
        client.embeddings.create(model="embed", input="hello")  # $0.04 spent, then $0.08
        time.sleep(0.2)
        client.embeddings.create(model="embed", input="hello")
    assert info.value.code == "budget_exceeded"
    assert gw.registry.keys.spend(key.id) == pytest.approx(0.08)


def test_unpriced_allow_lets_a_budgeted_key_through(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    gw = start_gateway(routes={"unpriced": _route(upstream, "stub-model")}, unpriced="allow")
    client = _keyed(gw, gw.registry.keys.create("lenient", budget_usd=1.0).secret)
    assert client.chat.completions.create(model="unpriced", messages=HI).choices


def test_a_budget_binds_without_call_records(
    start_gateway: StartGateway, upstream: Upstream
) -> None:
    """Costs come from prices loaded before the first budgeted call, call records or not."""
    gw = start_gateway(
        routes={"priced": _route(upstream, "gpt-4o-mini")}, call_records={"enabled": False}
    )
    client = _keyed(gw, gw.registry.keys.create("tiny", budget_usd=0.000003).secret)
    client.chat.completions.create(model="priced", messages=HI)  # $0.00000225
    time.sleep(0.2)
    client.chat.completions.create(model="priced", messages=HI)
    time.sleep(0.2)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="priced", messages=HI)
    assert info.value.code == "budget_exceeded"
