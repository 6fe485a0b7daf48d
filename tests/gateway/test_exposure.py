"""Open mode (no API keys) is for loopback only (issue 10, findings 8 and 9).

An anonymous caller may call models and nothing else; ``lockgate serve`` refuses to bind
anything but loopback without a key, and refuses an ``admin_key_env`` naming an unset
variable; while open, a web page cannot drive the gateway (a foreign ``Origin``, a foreign
``Host`` after DNS rebinding), and JSON endpoints take JSON only. Real gateway on loopback,
plain httpx as the attacker's browser, the official ``openai`` SDK as the app, and the real
CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from lockgate.registry import Registry, RegistrySettings
from tests.gateway.conftest import Gateway, StartGateway
from tests.gateway.upstream import Upstream

HI = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def open_gw(start_gateway: StartGateway) -> Gateway:
    return start_gateway()


def _chat(gw: Gateway, **kwargs: Any) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", **kwargs)


def test_an_anonymous_caller_holds_inference_only(open_gw: Gateway) -> None:
    client = open_gw.client()
    assert client.chat.completions.create(model="gpt-test", messages=HI).choices
    assert "gpt-test" in [m.id for m in client.models.list()]
    for call in (
        lambda: client.files.list(),
        lambda: client.fine_tuning.jobs.list(),
        lambda: client.files.create(file=("t.jsonl", b"{}\n"), purpose="fine-tune"),
        lambda: client.fine_tuning.jobs.create(model="x", training_file="file-x"),
    ):
        with pytest.raises(openai.AuthenticationError, match="needs an API key") as info:
            call()
        assert "lockgate keys create" in info.value.message


def test_a_page_elsewhere_cannot_drive_an_open_gateway(
    open_gw: Gateway, upstream: Upstream
) -> None:
    """The finding: a text/plain POST (a form or no-cors fetch needs no preflight) from a
    foreign origin was executed. Now refused, and nothing reaches the upstream."""
    body = json.dumps({"model": "gpt-test", "messages": HI})
    time.sleep(0.3)  # earlier calls' records written
    recorded, sent = len(open_gw.registry.calls.list(limit=500)), len(upstream.requests)
    csrf = _chat(
        open_gw,
        content=body,
        headers={"content-type": "text/plain", "origin": "http://evil.example"},
    )
    assert csrf.status_code == 403, csrf.text
    assert csrf.json()["error"]["code"] == "origin_not_loopback"
    assert "evil.example" in csrf.json()["error"]["message"]
    for origin in ("http://evil.example", "null", "https://127.0.0.1.evil.example"):
        refused = _chat(open_gw, content=body, headers={"content-type": "application/json",
                                                        "origin": origin})  # fmt: skip
        assert refused.status_code == 403, (origin, refused.text)
    rebound = _chat(open_gw, content=body, headers={"content-type": "application/json",
                                                    "host": "evil.example:4000"})  # fmt: skip
    assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "host_not_loopback"
    for path in ("/v1/models", "/v1/files", "/metrics"):  # the FastAPI path too
        resp = httpx.get(open_gw.url + path, headers={"host": "rebound.example"})
        assert resp.status_code == 403, (path, resp.text)
    assert len(upstream.requests) == sent  # nothing executed
    time.sleep(0.3)
    assert len(open_gw.registry.calls.list(limit=500)) == recorded

    # loopback callers, and pages served from loopback, go on working
    for host in ("localhost", "127.0.0.1", "[::1]:8080", "localhost:4000"):
        ok = _chat(open_gw, json={"model": "gpt-test", "messages": HI}, headers={"host": host})
        assert ok.status_code == 200, (host, ok.text)
    ok = _chat(open_gw, json={"model": "gpt-test", "messages": HI},
               headers={"origin": "http://localhost:3000"})  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert len(upstream.requests) == sent + 5


def test_json_endpoints_take_json(open_gw: Gateway) -> None:
    body = json.dumps({"model": "gpt-test", "messages": HI})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        resp = _chat(open_gw, content=body, headers={"content-type": content_type})
        assert resp.status_code == 415, (content_type, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "unsupported_media_type" and "application/json" in error["message"]
    resp = httpx.post(open_gw.url + "/v1/fine_tuning/jobs", content=b"{}",
                      headers={"content-type": "text/plain"})  # fmt: skip
    assert resp.status_code == 415
    for content_type in ("application/json", "application/json; charset=utf-8"):
        resp = _chat(open_gw, content=body, headers={"content-type": content_type})
        assert resp.status_code == 200, resp.text


def test_with_keys_any_host_is_served_and_json_is_still_required(
    start_gateway: StartGateway,
) -> None:
    gw = start_gateway()
    secret = gw.registry.keys.create("app").secret
    assert secret is not None
    auth = {"authorization": f"Bearer {secret}"}
    deadline = time.monotonic() + 5  # auto mode sees the key within key_cache_ttl_s
    while _chat(gw, json={"model": "gpt-test", "messages": HI}).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    behind_a_proxy = {**auth, "host": "gateway.internal", "origin": "https://app.example"}
    resp = _chat(gw, json={"model": "gpt-test", "messages": HI}, headers=behind_a_proxy)
    assert resp.status_code == 200, resp.text
    resp = _chat(gw, content=b"{}", headers={**auth, "content-type": "text/plain"})
    assert resp.status_code == 415


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_unset_admin_key_variable_does_not_start_an_open_gateway(
    start_gateway: StartGateway,
) -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        start_gateway(admin_key_env="LOCKGATE_TEST_UNSET_ADMIN_KEY")


# --- lockgate serve --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCKGATE_")}
    environ.update({"LOCKGATE_DATA_DIR": str(data_dir), **(env or {})})
    return subprocess.Popen(
        [sys.executable, "-m", "lockgate.gateway.cli", "serve", *args],
        cwd=ROOT, env=environ, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _data_dir(tmp_path: Path, sqlite_template: Path) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(sqlite_template, data_dir / "registry.db")
    return data_dir


def test_serve_refuses_a_public_bind_without_keys(tmp_path: Path, sqlite_template: Path) -> None:
    data_dir = _data_dir(tmp_path, sqlite_template)
    port = str(_free_port())
    refused = _serve(data_dir, "--host", "0.0.0.0", "--port", port)
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode == 2, out
    assert "refusing to serve on 0.0.0.0" in out and "lockgate keys create" in out
    assert "admin_key_env" in out

    unset = _serve(data_dir, "--port", port,
                   env={"LOCKGATE_GATEWAY__ADMIN_KEY_ENV": "LG_TEST_NO_SUCH_VAR"})  # fmt: skip
    out, _ = unset.communicate(timeout=60)
    assert unset.returncode == 2, out
    assert "LG_TEST_NO_SUCH_VAR" in out and "unset" in out

    disabled = _serve(data_dir, "--host", "0.0.0.0", "--port", port,
                      env={"LOCKGATE_GATEWAY__AUTH": "disabled"})  # fmt: skip
    out, _ = disabled.communicate(timeout=60)
    assert disabled.returncode == 2 and "refusing to serve" in out, out

    # disabled ignores keys, so an admin key does not make a public bind safe
    disabled_with_admin = _serve(data_dir, "--host", "0.0.0.0", "--port", port, env={
        "LOCKGATE_GATEWAY__AUTH": "disabled", "LOCKGATE_GATEWAY__ADMIN_KEY_ENV": "LG_TEST_ADMIN",
        "LG_TEST_ADMIN": "a-long-enough-admin-key-for-the-test"})  # fmt: skip
    out, _ = disabled_with_admin.communicate(timeout=60)
    assert disabled_with_admin.returncode == 2 and "refusing to serve" in out, out


def test_serve_binds_publicly_once_a_key_exists(tmp_path: Path, sqlite_template: Path) -> None:
    data_dir = _data_dir(tmp_path, sqlite_template)
    registry = Registry(RegistrySettings(data_dir=data_dir))
    secret = registry.keys.create("admin", scopes=["admin"]).secret
    registry.close()
    port = _free_port()
    server = _serve(data_dir, "--host", "0.0.0.0", "--port", str(port))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/v1/models",
                                 headers={"authorization": f"Bearer {secret}"})  # fmt: skip
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "lockgate serve did not start"
                time.sleep(0.2)
        assert resp.status_code == 200, resp.text
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
