"""UI sessions and form checks over real HTTP (no browser): what an attacker could try."""

from __future__ import annotations

import base64
import json
import re
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from lockgate.gateway.app import create_app
from lockgate.gateway.background import ServerThread
from lockgate.gateway.config import ConfigError, LockgateSettings
from lockgate.gateway.ui.sessions import COOKIE, Session, SessionSigner
from lockgate.gateway.ui.settings import UISettings
from lockgate.registry import RegistrySettings
from tests.ui.conftest import CSRF, SESSION_SECRET, Served


def _client(served: Served, **kwargs: object) -> httpx.Client:
    return httpx.Client(base_url=served.url, follow_redirects=False, timeout=10, **kwargs)  # type: ignore[arg-type]


def _token(client: httpx.Client, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, answer.text
    found = CSRF.search(answer.text)
    assert found is not None
    return found.group(1)


def _signed_in(served: Served, key: str) -> tuple[httpx.Client, str]:
    client = _client(served)
    token = _token(client, "/ui/sign-in")
    answer = client.post("/ui/sign-in", data={"csrf": token, "key": key})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/prompts"
    return client, _token(client, "/ui/prompt-editor/summarise")


def _payload(cookie: str) -> dict[str, object]:
    body = cookie.partition(".")[0]
    data: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return data


def test_pages_without_a_session_redirect_and_posts_are_refused(served: Served) -> None:
    with _client(served) as client:
        assert client.get("/ui").headers["location"] == "/ui/prompts"
        pages = ["/ui/prompts", "/ui/prompts/summarise", "/ui/new-prompt",
                 "/ui/prompt-diff/summarise?a=1&b=1", "/ui/prompt-editor/summarise"]  # fmt: skip
        for path in pages:
            answer = client.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/ui/sign-in"), path
        assert client.get("/ui/prompts?q=x").headers["location"] == (
            "/ui/sign-in?next=/ui/prompts%3Fq%3Dx"
        )
        client.cookies.clear()
        form = {"template": "x", "action": "save"}
        answer = client.post("/ui/prompt-editor/summarise", data=form)
        assert answer.status_code == 403
        assert client.post("/ui/sign-in", data={"key": served.keys.writer}).status_code == 403


def test_the_cookie_holds_the_key_id_never_the_secret(served: Served) -> None:
    client, _ = _signed_in(served, served.keys.writer)
    with closing(client):
        cookie = client.cookies[COOKIE]
        assert served.keys.writer not in cookie
        data = _payload(cookie)
        writer = next(k for k in served.registry.keys.list() if k.name == "writer")
        assert data["k"] == writer.id
        assert served.keys.writer[3:20] not in json.dumps(data)


def test_cookie_attributes(served: Served) -> None:
    with _client(served) as client:
        header = client.get("/ui/sign-in").headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=strict" in header and "path=/ui" in header
        assert "secure" not in header
        assert int(re.search(r"max-age=(\d+)", header).group(1)) <= 3600  # type: ignore[union-attr]
        # behind a TLS proxy on loopback (X-Forwarded-Proto, trusted by uvicorn): Secure
        header = client.get("/ui/sign-in", headers={"x-forwarded-proto": "https"}).headers[
            "set-cookie"
        ]
        assert "secure" in header.lower()
        answer = client.get("/ui/sign-in")
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert answer.headers["cache-control"] == "no-store"


def test_forged_tampered_and_expired_cookies_are_no_session(served: Served) -> None:
    writer = next(k for k in served.registry.keys.list() if k.name == "writer")
    signer = SessionSigner(SESSION_SECRET.encode(), 3600)
    good = signer.dumps(Session(writer.id, "t" * 43, 4_000_000_000))
    other = SessionSigner(b"another secret of the right length, really", 3600)
    mac = good.partition(".")[2]
    admin = base64.urlsafe_b64encode(b'{"k":"admin","c":"x","e":4000000000}').decode().rstrip("=")
    cookies = {
        "forged": other.dumps(Session(writer.id, "t" * 43, 4_000_000_000)),
        "tampered": f"{admin}.{mac}",
        "expired": signer.dumps(Session(writer.id, "t" * 43, 1_000)),
        "unknown key": signer.dumps(Session("key_000000000000", "t" * 43, 4_000_000_000)),
        "garbage": "not-a-cookie",
        "huge": "a" * 4000 + "." + mac,
    }
    with _client(served) as client:
        client.cookies.set(COOKIE, good)
        assert client.get("/ui/prompts").status_code == 200  # the secret is the server's
        for what, cookie in cookies.items():
            client.cookies.clear()
            client.cookies.set(COOKIE, cookie)
            answer = client.get("/ui/prompts")
            assert answer.status_code == 303, what
            assert answer.headers["location"].startswith("/ui/sign-in"), what


def test_csrf_token_is_bound_to_its_session(served: Served) -> None:
    alice, alice_token = _signed_in(served, served.keys.writer)
    bob, bob_token = _signed_in(served, served.keys.writer)
    form = {"kind": "text", "template": "Hi {{ text }}", "action": "save"}
    with closing(alice), closing(bob):
        assert alice_token != bob_token
        for token in (None, "", bob_token, alice_token[:-1], alice_token + "x"):
            data = form if token is None else {**form, "csrf": token}
            answer = alice.post("/ui/prompt-editor/summarise", data=data)
            assert answer.status_code == 403, token
        # the token of the sign-in form (before the session had a key) is not the session's
        pre = httpx.Client(base_url=served.url, follow_redirects=False, timeout=10)
        with pre:
            pre_token = _token(pre, "/ui/sign-in")
            pre.post("/ui/sign-in", data={"csrf": pre_token, "key": served.keys.writer})
            answer = pre.post("/ui/prompt-editor/summarise", data={**form, "csrf": pre_token})
            assert answer.status_code == 403
    assert len(served.registry.prompts.versions("summarise")) == 1


def test_forms_must_come_from_this_site_url_encoded_and_bounded(served: Served) -> None:
    client, token = _signed_in(served, served.keys.writer)
    form = {"csrf": token, "kind": "text", "template": "Hi {{ text }}", "action": "check"}
    with closing(client):
        answer = client.post("/ui/prompt-editor/summarise", data=form)
        assert answer.status_code == 200
        answer = client.post(
            "/ui/prompt-editor/summarise", data=form, headers={"origin": "https://evil.example"}
        )
        assert answer.status_code == 403
        answer = client.post("/ui/prompt-editor/summarise", json=form)
        assert answer.status_code == 415
        big = {**form, "template": "x" * (4 * 1024 * 1024 + 10)}
        answer = client.post("/ui/prompt-editor/summarise", data=big)
        assert answer.status_code == 413


def test_sign_in_goes_back_only_to_ui_pages(served: Served) -> None:
    for target, expected in [
        ("/ui/prompts/summarise", "/ui/prompts/summarise"),
        ("//evil.example/ui/x", "/ui/prompts"),
        ("https://evil.example/", "/ui/prompts"),
        ("/ui/..//evil.example", "/ui/prompts"),
        ("/ui\\@evil.example", "/ui/prompts"),
        ("/api/v1/keys", "/ui/prompts"),
    ]:
        with _client(served) as client:
            token = _token(client, "/ui/sign-in")
            answer = client.post(
                "/ui/sign-in", data={"csrf": token, "key": served.keys.reader, "next": target}
            )
            assert answer.headers["location"] == expected, target


def test_sign_out_needs_the_token_and_ends_the_session(served: Served) -> None:
    client, token = _signed_in(served, served.keys.reader)
    with closing(client):
        assert client.post("/ui/sign-out", data={"csrf": ""}).status_code == 403
        assert client.get("/ui/prompts").status_code == 200
        answer = client.post("/ui/sign-out", data={"csrf": token})
        assert answer.headers["location"] == "/ui/sign-in?signed_out=1"
        assert _payload(client.cookies[COOKIE])["k"] is None
        assert client.get("/ui/prompts").status_code == 303


def test_open_mode_has_no_ui_until_a_key_exists(tmp_path: Path, sqlite_template: Path) -> None:
    """Without keys (open mode) nobody can sign in: the page says how to create a key."""
    (tmp_path / "registry.db").write_bytes(sqlite_template.read_bytes())
    settings = LockgateSettings(registry=RegistrySettings(data_dir=tmp_path))
    server = ServerThread(create_app(settings)).start()
    try:
        with httpx.Client(base_url=server.url, follow_redirects=False, timeout=10) as client:
            page = client.get("/ui/sign-in")
            assert "no API keys yet (open mode)" in page.text
            token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
            answer = client.post("/ui/sign-in", data={"csrf": token, "key": "anything"})
            assert answer.status_code == 403
            assert "the UI needs one" in answer.text
            assert client.get("/ui/prompts").status_code == 303
    finally:
        server.stop()


def test_session_secret_settings(tmp_path: Path) -> None:
    registry = RegistrySettings(data_dir=tmp_path)
    unset = UISettings(session_secret_env="LOCKGATE_TEST_UNSET_SECRET").with_secrets({})
    with pytest.raises(ConfigError, match="LOCKGATE_TEST_UNSET_SECRET"):
        create_app(LockgateSettings(registry=registry, ui=unset))
    short = UISettings(session_secret_env="S").with_secrets({"S": "short"})
    with pytest.raises(ConfigError, match="at least 32"):
        create_app(LockgateSettings(registry=registry, ui=short))
    off = create_app(LockgateSettings(registry=registry, ui=UISettings(enabled=False)))
    assert not any(getattr(r, "path", "").startswith("/ui") for r in off.routes)


def test_signer_rejects_what_it_did_not_sign() -> None:
    signer = SessionSigner(b"k" * 32, 60)
    session = signer.new("key_1", now=1000.0)
    cookie = signer.dumps(session)
    assert signer.loads(cookie, now=1001.0) == Session("key_1", session.csrf, 1060.0)
    assert signer.loads(cookie, now=1060.0) is None  # over
    assert SessionSigner(b"j" * 32, 60).loads(cookie, now=1001.0) is None
    body, _, mac = cookie.partition(".")
    assert signer.loads(body + "." + mac[:-2] + "AA", now=1001.0) is None
    assert signer.loads(cookie + ".x", now=1001.0) is None
    assert signer.loads("", now=1001.0) is None
    assert session.token_matches(session.csrf) and not session.token_matches(None)
    assert not session.token_matches(session.csrf[:-1])
