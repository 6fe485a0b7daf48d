"""Typed settings of the registry section of ``lockgate.yaml``."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import BaseModel, Field


def default_data_dir() -> Path:
    return platformdirs.user_data_path("lockgate", appauthor=False)


class RegistrySettings(BaseModel):
    """Where the system of record lives.

    ``database_url`` defaults to a SQLite file in ``data_dir``; set it (or
    ``LOCKGATE_DATABASE_URL``) to ``postgresql://…`` for a shared registry.
    ``artifact_url`` is any fsspec URL (``s3://bucket/prefix``); the default is
    ``data_dir/artifacts``.
    """

    model_config = {"extra": "forbid"}

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    artifact_url: str | None = None
    auto_migrate: bool = Field(
        default=True,
        description="Apply pending migrations when opening an embedded SQLite registry.",
    )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'registry.db'}"

    def resolved_artifact_url(self) -> str:
        return self.artifact_url or str(self.data_dir / "artifacts")
