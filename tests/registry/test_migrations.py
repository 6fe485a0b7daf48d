"""Alembic migrations: applied automatically for SQLite, by `db upgrade` for PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from lockgate.registry import DatabaseError, Registry, RegistrySettings
from lockgate.registry import db as registry_db
from lockgate.registry.tables import Base
from tests.conftest import scratch_pg_database


def test_embedded_sqlite_is_created_and_migrated(tmp_path: Path) -> None:
    reg = Registry(RegistrySettings(data_dir=tmp_path / "new"))
    assert (tmp_path / "new" / "registry.db").exists()
    assert registry_db.current_revision(reg.db.engine) == registry_db.head_revision()
    assert set(Base.metadata.tables) <= set(inspect(reg.db.engine).get_table_names())
    reg.close()


@pytest.fixture
def empty_pg() -> Iterator[str]:
    with scratch_pg_database("lockgate_mig") as url:
        yield url


@pytest.mark.postgres
def test_postgres_needs_db_upgrade_then_works(empty_pg: str, tmp_path: Path) -> None:
    settings = RegistrySettings(data_dir=tmp_path, database_url=empty_pg)
    with pytest.raises(DatabaseError, match="run `lockgate db upgrade`"):
        Registry(settings)
    engine = registry_db.make_engine(empty_pg)
    registry_db.upgrade(engine)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    registry_db.downgrade(engine, "base")
    assert "prompts" not in inspect(engine).get_table_names()
    registry_db.upgrade(engine)
    engine.dispose()
    reg = Registry(settings)
    assert reg.prompts.push("p", "x {{ y }}")[0].version == 1
    reg.close()


def test_head_constant_matches_the_migration_scripts() -> None:
    assert registry_db.head_revision() == registry_db.HEAD_REVISION


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    settings = RegistrySettings(
        data_dir=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    )
    with pytest.raises(
        DatabaseError,
        match=r"cannot use the database at postgresql\+psycopg://nobody@127.0.0.1:1/none",
    ):
        Registry(settings)


def test_schema_matches_the_tables(tmp_path: Path) -> None:
    """Autogenerate finds nothing to do: the migrations and the models agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    reg = Registry(RegistrySettings(data_dir=tmp_path))
    with reg.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    reg.close()
    assert diff == []


def test_upgrade_refuses_a_schema_from_a_newer_release(tmp_path: Path) -> None:
    """An older lockgate pointed at a database a newer one migrated names both revisions and
    leaves the schema alone (no Alembic traceback, no partial migration)."""
    from sqlalchemy import text

    reg = Registry(RegistrySettings(data_dir=tmp_path))
    engine = reg.db.engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(DatabaseError, match=r"revision 0099, newer than this lockgate knows"):
        registry_db.upgrade(engine)
    assert registry_db.current_revision(engine) == "0099"
    reg.close()
