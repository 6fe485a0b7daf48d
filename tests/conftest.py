"""Shared fixtures: a registry on SQLite and on PostgreSQL (127.0.0.1:5432, database ``test``).

Every registry test that takes ``registry`` runs on both backends. PostgreSQL tests use a
database of their own, created for the session and dropped after it; set
``LOCKGATE_TEST_PG`` to point elsewhere. When PostgreSQL is unreachable those tests are
skipped with the reason (``.ci/run`` starts it, so CI never skips them).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lockgate.registry import Registry, RegistrySettings
from lockgate.registry import db as registry_db

PG_ADMIN_URL = os.environ.get("LOCKGATE_TEST_PG", "postgresql://root@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:  # any failure means: skip, and say why
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"


@contextmanager
def scratch_pg_database(prefix: str = "lockgate_test") -> Iterator[str]:
    """An empty PostgreSQL database, dropped afterwards (skips when PostgreSQL is down)."""
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def set_pg_database(url: str, *, up: bool) -> None:
    """Take a PostgreSQL database away (no new connections, the open ones terminated) or
    bring it back: an outage as the registry's clients see one."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if up else "false"}')
        if not up:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


@pytest.fixture
def outage_db() -> Iterator[str]:
    """A migrated PostgreSQL database (its URL) for a test to take away with
    :func:`set_pg_database` and bring back."""
    with scratch_pg_database("lockgate_outage") as url:
        engine = registry_db.make_engine(url)
        registry_db.upgrade(engine)
        engine.dispose()
        try:
            yield url
        finally:
            set_pg_database(url, up=True)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    with scratch_pg_database() as url:
        engine = registry_db.make_engine(url)
        registry_db.upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("template") / "registry.db"
    engine = registry_db.make_engine(f"sqlite:///{path}")
    registry_db.upgrade(engine)
    engine.dispose()
    return path


def _truncate_all(url: str) -> None:
    from sqlalchemy import text

    from lockgate.registry.tables import Base

    engine = registry_db.make_engine(url)
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def registry_settings(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> RegistrySettings:
    """Settings for an empty registry; parametrized over SQLite and PostgreSQL."""
    if request.param == "sqlite":
        shutil.copy(sqlite_template, tmp_path / "registry.db")
        return RegistrySettings(data_dir=tmp_path)
    url = request.getfixturevalue("pg_url")
    _truncate_all(url)
    return RegistrySettings(data_dir=tmp_path, database_url=url)


@pytest.fixture
def registry(registry_settings: RegistrySettings) -> Iterator[Registry]:
    reg = Registry(registry_settings, actor="tester")
    yield reg
    reg.close()


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(registry_settings: RegistrySettings, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``lockgate …`` in process (typer's runner) on the test's registry: (exit code, stdout,
    stderr). The environment names that registry and no configuration file."""
    from typer.testing import CliRunner

    from lockgate.gateway.cli import app

    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(registry_settings.data_dir))
    if registry_settings.database_url:
        monkeypatch.setenv("LOCKGATE_DATABASE_URL", registry_settings.database_url)
    else:
        monkeypatch.delenv("LOCKGATE_DATABASE_URL", raising=False)
    monkeypatch.delenv("LOCKGATE_CONFIG", raising=False)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout, result.stderr

    return run
