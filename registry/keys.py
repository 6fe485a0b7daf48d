"""Virtual API keys: hashed at rest, shown once, scoped, limited and budgeted.

A key looks like ``lg-<40 random url-safe characters>``. The registry keeps its sha256
(keys are random, so an unsalted hash is safe and allows lookup by hash) and the first
characters in clear, so a key can be recognised in a list without being recoverable.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from lockgate.registry._core import Part
from lockgate.registry.errors import InvalidInput, NotFound
from lockgate.registry.records import _Record
from lockgate.registry.tables import ApiKey, CallRecord, utcnow

# registry:label moves labels (a job's gate-and-label step included); registry:write alone
# does not. registry:approve approves a move of a protected label (registry/approvals.py).
# admin holds every scope.
SCOPES = frozenset(
    {"inference", "registry:read", "registry:write", "registry:label", "registry:approve", "admin"}
)
KEY_PREFIX = "lg-"
SHOWN_PREFIX = 10


MAX_LIMIT = 2**31 - 1
"""The largest rpm, tpm or max_parallel a key stores (a 32-bit integer column everywhere)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo(_Record):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    models: list[str] | None
    rpm: int | None
    tpm: int | None
    max_parallel: int | None
    budget_usd: float | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_by: str
    created_at: datetime
    spent_usd: float = 0.0
    secret: str | None = field(default=None, repr=False)  # only when just created

    def active(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def allows_model(self, model: str) -> bool:
        return self.models is None or model in self.models

    def has_scope(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes


def _info(row: ApiKey, spent: float = 0.0, secret: str | None = None) -> KeyInfo:
    return KeyInfo(
        row.id, row.name, row.prefix, list(row.scopes),
        None if row.models is None else list(row.models), row.rpm, row.tpm, row.max_parallel,
        row.budget_usd, row.expires_at, row.revoked_at, row.created_by, row.created_at,
        spent, secret,
    )  # fmt: skip


class Keys(Part):
    def create(
        self,
        name: str,
        *,
        scopes: Iterable[str] = ("inference",),
        models: Iterable[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        max_parallel: int | None = None,
        budget_usd: float | None = None,
        expires_at: datetime | None = None,
        secret: str | None = None,
        created_by: str | None = None,
    ) -> KeyInfo:
        """Create a key; the returned ``secret`` is the only time the key is visible.
        ``created_by`` (default: this registry's actor) names who asked, e.g. an admin key."""
        if not name or len(name) > 200:
            raise InvalidInput("a key needs a name of at most 200 characters", param="name")
        scope_list = sorted(set(scopes))
        unknown = set(scope_list) - SCOPES
        if unknown or not scope_list:
            raise InvalidInput(
                f"unknown scope(s) {', '.join(sorted(unknown)) or '(none given)'}; "
                f"use {', '.join(sorted(SCOPES))}",
                param="scopes",
            )
        for what, value in (("rpm", rpm), ("tpm", tpm), ("max_parallel", max_parallel)):
            if value is not None and not 1 <= value <= MAX_LIMIT:
                raise InvalidInput(f"{what} must be between 1 and {MAX_LIMIT}", param=what)
        if budget_usd is not None and budget_usd <= 0:
            raise InvalidInput("budget_usd must be positive", param="budget_usd")
        if expires_at is not None and expires_at.tzinfo is None:
            raise InvalidInput("expires_at must carry a time zone", param="expires_at")
        key = secret or KEY_PREFIX + secrets.token_urlsafe(30)
        row = ApiKey(
            id="key_" + uuid.uuid4().hex[:12], name=name, prefix=key[:SHOWN_PREFIX],
            key_hash=hash_key(key), scopes=scope_list,
            models=None if models is None else sorted(set(models)), rpm=rpm, tpm=tpm,
            max_parallel=max_parallel, budget_usd=budget_usd, expires_at=expires_at,
            created_by=(created_by or self.db.actor)[:200], created_at=utcnow(),
        )  # fmt: skip
        with self.db.write() as session:
            session.add(row)
        return _info(row, secret=key)

    def lookup(self, key: str) -> KeyInfo | None:
        """The key with this secret (revoked and expired ones included), or None."""
        with self.db.read() as session:
            row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
            return None if row is None else _info(row)

    def get(self, key_id: str) -> KeyInfo | None:
        """The key with this id (revoked and expired ones included), or None; for sessions
        that hold a key's id, never its secret (the UI)."""
        with self.db.read() as session:
            row = session.get(ApiKey, key_id)
            return None if row is None else _info(row)

    def exist(self) -> bool:
        """Whether any key was ever created (revoked and expired ones count)."""
        with self.db.read() as session:
            return session.scalar(select(ApiKey.id).limit(1)) is not None

    def list(self) -> builtins.list[KeyInfo]:
        with self.db.read() as session:
            spent = dict(
                session.execute(
                    select(CallRecord.key_id, func.sum(CallRecord.cost_usd))
                    .where(CallRecord.key_id.is_not(None))
                    .group_by(CallRecord.key_id)
                ).all()
            )
            rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at))
            return [_info(r, float(spent.get(r.id) or 0.0)) for r in rows]

    def spend(self, key_id: str) -> float:
        """USD spent by a key so far, from its call records."""
        with self.db.read() as session:
            total = session.scalar(
                select(func.sum(CallRecord.cost_usd)).where(CallRecord.key_id == key_id)
            )
            return float(total or 0.0)

    def revoke(self, key_id_or_prefix: str) -> KeyInfo:
        with self.db.write() as session:
            rows = session.scalars(
                select(ApiKey).where(
                    (ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix)
                )
            ).all()
            if not rows:
                raise NotFound(f"no key with id or prefix {key_id_or_prefix!r}", param="key")
            if len(rows) > 1:
                raise InvalidInput(
                    f"{key_id_or_prefix!r} matches {len(rows)} keys; give the key id", param="key"
                )
            row = rows[0]
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _info(row)
