"""Engines for SQLite and PostgreSQL, and schema migrations (Alembic)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from lockgate.registry.errors import DatabaseError, MissingExtra

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest migration; checked against the scripts by a test, so opening a registry need
# not load Alembic just to learn that the schema is current.
HEAD_REVISION = "0010"
# Execution option: on SQLite, a write transaction starts with BEGIN IMMEDIATE so that
# concurrent writers queue on the database lock instead of failing on upgrade.
WRITE = "lockgate_write"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here; say which extra to install when it is absent."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        if importlib.util.find_spec("psycopg") is None:
            raise MissingExtra("a PostgreSQL registry", "postgres")
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() != "sqlite":
        raise DatabaseError(
            f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
            "use sqlite:///PATH or postgresql://HOST/DB"
        )
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database (None for an empty database)."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except OperationalError as exc:
        raise unreachable(engine, exc) from exc


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the schema to ``revision``. A database already at a revision this release does
    not know (written by a newer lockgate) is refused with a DatabaseError naming both
    revisions, never migrated: the way back is the newer release or a restored backup."""
    from alembic import command
    from alembic.util import CommandError

    try:
        with engine.execution_options(**{WRITE: True}).begin() as conn:
            command.upgrade(_alembic_config(conn), revision)
    except OperationalError as exc:
        raise unreachable(engine, exc) from exc
    except CommandError as exc:
        stored = current_revision(engine)
        if stored is not None and not any((MIGRATIONS_DIR / "versions").glob(f"{stored}_*.py")):
            raise DatabaseError(
                f"the database's schema is at revision {stored}, newer than this lockgate "
                f"knows (its newest is {HEAD_REVISION}): run a lockgate release at least as "
                "new as the one that migrated it, or restore a backup"
            ) from exc
        raise DatabaseError(f"cannot migrate the database: {exc}") from exc


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.execution_options(**{WRITE: True}).begin() as conn:
        command.downgrade(_alembic_config(conn), revision)


def unreachable(engine: Engine, exc: Exception) -> DatabaseError:
    shown = engine.url.render_as_string(hide_password=True)
    first = str(exc.args[0] if exc.args else exc).strip().splitlines()[0]
    return DatabaseError(f"cannot use the database at {shown}: {first}")
