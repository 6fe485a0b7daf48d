"""Who is calling: ``Authorization: Bearer <key>`` (or ``api-key: <key>``) to a :class:`Principal`.

Keys live in the registry (``lockgate keys create``), hashed; a bootstrap admin key may come
from configuration (``gateway.admin_key_env``). A looked-up key is trusted for
``gateway.key_cache_ttl_s`` (5 s): a warm request costs a dict look-up, and a revoked key is
refused within that time. When the registry cannot be reached, the last answer for a key is
kept (a stale allow beats failing every request); a key never seen before is then a 503.

``gateway.auth``:

- ``auto`` (default): keys are required once an admin key is configured or any key exists in
  the registry; before that (a fresh local install) calls are let through unauthenticated.
- ``required``: always; with no key at all every call is a 401.
- ``disabled``: never (local development).

Open mode (no key required: ``auto`` before any key exists, or ``disabled``) is for loopback
only. An anonymous caller holds the ``inference`` scope and nothing else: the registry, files
and jobs need a key. ``lockgate serve`` refuses a non-loopback bind in open mode
(:func:`check_exposure`), and the app answers only loopback ``Host`` names and ``Origin`` headers
then (:mod:`gateway.app`), so a web page cannot drive it. A configured ``admin_key_env``
naming an unset variable is a start-up error, never an open gateway.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import anyio.to_thread

from lockgate.gateway.clock import SYSTEM_CLOCK, Clock
from lockgate.gateway.config import ConfigError, LockgateSettings
from lockgate.gateway.errors import AuthenticationFailed, PermissionDenied
from lockgate.gateway.limits import KeyLimits
from lockgate.gateway.settings import GatewaySettings
from lockgate.registry.keys import KeyInfo
from lockgate.registry.registry import Registry

ADMIN_KEY_ID = "admin"
MAX_CACHED_KEYS = 10_000
RETRY_AFTER_ERROR_S = 1.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller; ``key_id`` is None when authentication is off."""

    key_id: str | None
    name: str
    scopes: frozenset[str]
    models: frozenset[str] | None = None
    limits: KeyLimits | None = None
    expires_at: float | None = None  # epoch seconds
    revoked: bool = False

    def has_scope(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def require_scope(self, scope: str) -> None:
        if not self.has_scope(scope):
            if self.key_id is None:
                raise AuthenticationFailed(
                    f"{scope!r} needs an API key: without keys (open mode) callers may only "
                    f"call models; create one with lockgate keys create --name NAME --scopes "
                    f"{scope} and send it as Authorization: Bearer <key>",
                    param="authorization",
                )
            raise PermissionDenied(
                f"key {self.name!r} lacks the {scope!r} scope; create a key with --scopes {scope}",
                param="authorization",
            )

    def require_model(self, model: str) -> None:
        if self.models is not None and model not in self.models:
            allowed = ", ".join(sorted(self.models)) or "none"
            raise PermissionDenied(
                f"key {self.name!r} may not use model {model!r} (it may use: {allowed})",
                param="model",
            )


# open mode: models only, never the registry, files, jobs or admin
ANONYMOUS = Principal(None, "anonymous", frozenset({"inference"}))
ADMIN = Principal(ADMIN_KEY_ID, "admin (configured)", frozenset({"admin"}))


def principal_for(key: KeyInfo) -> Principal:
    limits = KeyLimits(key.id, key.rpm, key.tpm, key.max_parallel, key.budget_usd)
    return Principal(
        key.id, key.name, frozenset(key.scopes),
        None if key.models is None else frozenset(key.models),
        None if limits.unlimited else limits,
        key.expires_at.timestamp() if key.expires_at is not None else None,
        key.revoked_at is not None,
    )  # fmt: skip


def presented_key(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return headers.get("api-key") or None


class _Cache:
    """Answers by key, each with an expiry; a failed refresh keeps serving the old answer."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl = ttl_s
        self.entries: dict[str, tuple[float, Principal | None]] = {}
        self.pending: dict[str, asyncio.Task[Principal | None]] = {}


class Authenticator:
    def __init__(
        self, settings: GatewaySettings, registry: Registry, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        check_admin_key(settings)
        self._monotonic = clock.monotonic
        self._time = clock.time
        self._mode = settings.auth
        admin = settings.admin_key
        self._admin = admin.get_secret_value().encode() if admin is not None else None
        self._registry = registry
        self._cache = _Cache(settings.key_cache_ttl_s)
        self._keys_exist = self._mode == "required" or self._admin is not None
        self._keys_checked = 0.0 if not self._keys_exist else float("inf")
        self._by_id: dict[str, tuple[float, Principal | None]] = {}  # apart from secrets

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        if self._mode == "disabled" or not await self._required():
            return ANONYMOUS
        secret = presented_key(headers)
        if secret is None:
            raise AuthenticationFailed(
                "no API key: send Authorization: Bearer <key> (create one with "
                "lockgate keys create)",
                param="authorization",
            )
        if self._admin is not None and hmac.compare_digest(secret.encode(), self._admin):
            return ADMIN
        principal = await self._lookup(secret)
        if principal is None:
            raise AuthenticationFailed(
                f"unknown API key {secret[:6]}…: check it, or create one with lockgate keys create",
                param="authorization",
            )
        if principal.revoked:
            raise AuthenticationFailed(f"API key {principal.name!r} was revoked")
        if principal.expires_at is not None and principal.expires_at <= self._time():
            raise AuthenticationFailed(f"API key {principal.name!r} has expired")
        return principal

    async def principal_of(self, key_id: str) -> Principal | None:
        """The key with id ``key_id``, still valid, as a principal; None once it is revoked,
        expired or gone (the admin key: while one is configured). For sessions that hold a
        key's id, never its secret (the UI); trusted for ``key_cache_ttl_s`` like a secret."""
        if key_id == ADMIN_KEY_ID:
            return ADMIN if self._admin is not None else None
        now = self._monotonic()
        hit = self._by_id.get(key_id)
        if hit is None or hit[0] <= now:
            info = await anyio.to_thread.run_sync(self._registry.keys.get, key_id)
            if len(self._by_id) >= MAX_CACHED_KEYS:
                _evict(self._by_id, now)
            found = None if info is None else principal_for(info)
            hit = self._by_id[key_id] = (now + self._cache.ttl, found)
        principal = hit[1]
        if principal is None or principal.revoked:
            return None
        if principal.expires_at is not None and principal.expires_at <= self._time():
            return None
        return principal

    @property
    def may_be_open(self) -> bool:
        """False once keys are known to be required (then for good): a cheap first test."""
        return self._mode == "disabled" or not self._keys_exist

    async def is_open(self) -> bool:
        """Whether a call without a key is let through now (open mode)."""
        return self._mode == "disabled" or not await self._required()

    async def _required(self) -> bool:
        """auto mode: whether any key exists yet (checked at most once per TTL, then latched)."""
        if self._keys_exist:
            return True
        now = self._monotonic()
        if now < self._keys_checked:
            return False
        try:
            self._keys_exist = await anyio.to_thread.run_sync(self._registry.keys.exist)
        except Exception:  # boundary: the registry is down; keep the last answer if there was one
            if self._keys_checked == 0.0:
                raise
            self._keys_checked = now + RETRY_AFTER_ERROR_S
            return False
        self._keys_checked = now + self._cache.ttl
        return self._keys_exist

    async def _lookup(self, secret: str) -> Principal | None:
        cache = self._cache
        hit = cache.entries.get(secret)
        now = self._monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        task = cache.pending.get(secret)
        if task is None:  # one look-up per key however many requests wait for it
            task = cache.pending[secret] = asyncio.ensure_future(self._fetch(secret, hit))
            task.add_done_callback(lambda t: _settled(cache.pending, secret, t))
        return await asyncio.shield(task)

    async def _fetch(
        self, secret: str, stale: tuple[float, Principal | None] | None
    ) -> Principal | None:
        cache = self._cache
        try:
            info = await anyio.to_thread.run_sync(self._registry.keys.lookup, secret)
        except Exception:  # boundary: the registry is down; a stale answer is better than none
            if stale is None:
                raise
            cache.entries[secret] = (self._monotonic() + RETRY_AFTER_ERROR_S, stale[1])
            return stale[1]
        principal = None if info is None else principal_for(info)
        if len(cache.entries) >= MAX_CACHED_KEYS:
            _evict(cache.entries, self._monotonic())
        cache.entries[secret] = (self._monotonic() + cache.ttl, principal)
        return principal


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1`` (with or without the brackets)."""
    host = host.lower().rstrip(".")
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_admin_key(settings: GatewaySettings) -> None:
    """A configured ``admin_key_env`` must hold a key: unset, the gateway would be open."""
    var = settings.admin_key_env
    if var and settings.admin_key is None:
        raise ConfigError(
            f"gateway.admin_key_env names {var}, but {var} is unset or empty, so the gateway "
            f"would have no admin key: set it (export {var}=$(openssl rand -hex 32)) or remove "
            "gateway.admin_key_env"
        )


def check_exposure(settings: LockgateSettings, host: str, registry: Registry | None) -> None:
    """Refuse to serve open mode (no key required) on anything but loopback.

    ``registry`` is asked whether any key exists (``auto``); None: open the configured one.
    """
    gateway = settings.gateway
    check_admin_key(gateway)
    if is_loopback(host) or gateway.auth == "required":
        return
    if gateway.auth == "auto" and gateway.admin_key is not None:
        return  # keys are required: the admin key exists (disabled ignores it: still open)
    if gateway.auth == "auto":
        if registry is None:
            registry = Registry(settings.registry, actor="gateway")
            try:
                if registry.keys.exist():
                    return
            finally:
                registry.close()
        elif registry.keys.exist():
            return
    how = (
        "create an admin key first (lockgate keys create --name admin --scopes admin), or "
        "set gateway.admin_key_env to a variable holding one"
    )
    if gateway.auth == "disabled":
        how = "set gateway.auth to auto or required and " + how
    raise ConfigError(
        f"refusing to serve on {host}: this gateway has no API keys (gateway.auth: "
        f"{gateway.auth}), and a gateway without keys is for loopback only (anyone who can "
        f"reach {host} could call it); {how}, or serve on --host 127.0.0.1",
        param="host",
    )


def _settled(pending: dict[str, asyncio.Task[T]], secret: str, task: asyncio.Task[T]) -> None:
    pending.pop(secret, None)
    if not task.cancelled():
        task.exception()  # retrieved: the waiters re-raise it


def _evict(entries: dict[str, tuple[float, T]], now: float) -> None:
    """Drop expired entries, and unknown keys first when that is not enough."""
    for secret in [s for s, (expiry, _) in entries.items() if expiry <= now]:
        del entries[secret]
    if len(entries) >= MAX_CACHED_KEYS:
        for secret in [s for s, (_, value) in entries.items() if value is None]:
            del entries[secret]
    if len(entries) >= MAX_CACHED_KEYS:
        entries.clear()


__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "Authenticator",
    "Principal",
    "check_admin_key",
    "check_exposure",
    "is_loopback",
    "presented_key",
]
