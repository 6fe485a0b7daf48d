"""UI sessions: a signed cookie that holds a key's id (never its secret) and a CSRF token.

The cookie is ``base64url(JSON payload) "." base64url(HMAC-SHA256(secret, payload))``, the
payload ``{"k": key id or null, "c": CSRF token, "e": expiry (epoch s)}``. A visitor who has
not signed in gets a cookie with no key id, so that the sign-in form carries a CSRF token
too; signing in issues a new cookie with a new token. Nothing else is kept on the server:
the key is checked on every request (:meth:`~gateway.auth.Authenticator.principal_of`), so a
revoked or expired key ends every session made with it within ``gateway.key_cache_ttl_s``.

The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/ui``, ``Secure`` when the page was
served over https, and lasts ``ui.session_ttl_s``. Form posts carry the session's token
(the synchronizer pattern), compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

COOKIE = "lockgate_ui"
COOKIE_PATH = "/ui"
MAX_COOKIE_CHARS = 1024
MIN_SECRET_CHARS = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    """What a session cookie says: the signed-in key's id (None: not signed in), the
    session's CSRF token and when it ends (epoch seconds)."""

    key_id: str | None
    csrf: str
    expires_at: float

    def token_matches(self, sent: str | None) -> bool:
        """Whether a form's token is this session's (constant time)."""
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


class SessionSigner:
    """Makes and reads session cookies with one secret."""

    def __init__(self, secret: bytes, ttl_s: float) -> None:
        self._key = hashlib.sha256(b"lockgate-ui-session\0" + secret).digest()
        self.ttl_s = ttl_s

    def new(self, key_id: str | None, now: float) -> Session:
        return Session(key_id, secrets.token_urlsafe(32), now + self.ttl_s)

    def dumps(self, session: Session) -> str:
        payload = json.dumps(
            {"k": session.key_id, "c": session.csrf, "e": int(session.expires_at)},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def loads(self, cookie: str | None, now: float) -> Session | None:
        """The session in ``cookie``; None when it is missing, forged, malformed or over."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS or cookie.count(".") != 1:
            return None
        body, _, mac = cookie.partition(".")
        try:
            payload, sent_mac = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(sent_mac, self._mac(payload)):
            return None
        try:
            data = json.loads(payload)
            key_id, csrf, expires = data["k"], data["c"], data["e"]
        except (ValueError, KeyError, TypeError):
            return None
        if not (key_id is None or isinstance(key_id, str)) or not isinstance(csrf, str):
            return None
        if not isinstance(expires, int) or expires <= now:
            return None
        return Session(key_id, csrf, float(expires))

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()
