"""Typed settings of the ``registry`` section of ``lockgate.yaml``, and the one way every
settings object is read.

Sources, highest first: values given in code; ``LOCKGATE_<SECTION>__<KEY>`` environment
variables; the short names below; the configuration file; the defaults. Which file:
:func:`find_config_file` (``--config``, else ``$LOCKGATE_CONFIG``, else ``./lockgate.yaml``
when there is one). :class:`RegistrySettings` reads its section by these sources on its
own, so ``Registry(RegistrySettings())`` in a script opens the registry that the CLI and
the server open; ``gateway.config.LockgateSettings`` reads every section the same way.

=========================  =====================================
``LOCKGATE_DATABASE_URL``  ``registry.database_url``
``LOCKGATE_ARTIFACT_URL``  ``registry.artifact_url``
``LOCKGATE_DATA_DIR``      ``registry.data_dir``
=========================  =====================================

This module is the one place that reads ``LOCKGATE_*`` variables (through pydantic-settings).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import platformdirs
import yaml
from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from lockgate.registry.errors import LockgateError

DEFAULT_CONFIG_FILE = "lockgate.yaml"
ENV_PREFIX = "LOCKGATE_"
CONFIG_ENV = "LOCKGATE_CONFIG"
SHORTCUTS = {
    "LOCKGATE_DATABASE_URL": ("registry", "database_url"),
    "LOCKGATE_ARTIFACT_URL": ("registry", "artifact_url"),
    "LOCKGATE_DATA_DIR": ("registry", "data_dir"),
}


class ConfigError(LockgateError):
    """The configuration file cannot be read, or a setting in it (or in the environment)
    is invalid; the message names the file and the key."""

    code = "config_error"


def default_data_dir() -> Path:
    return platformdirs.user_data_path("lockgate", appauthor=False)


def find_config_file(config_path: Path | None = None) -> Path | None:
    """The configuration file to read: ``config_path`` (``--config``), else
    ``$LOCKGATE_CONFIG``, else ``./lockgate.yaml`` when it exists, else None. A path given
    by the first two must exist (reading it says so); the third is optional."""
    if config_path is not None:
        return config_path
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path.cwd() / DEFAULT_CONFIG_FILE
    return default if default.is_file() else None


# The file chosen by the caller (``--config``) while settings are built; unset: discover it.
# A context variable, not a global: every section built inside :func:`config_file_chosen`
# reads the same file, and nothing outlives the ``with``.
_CHOSEN_FILE: ContextVar[tuple[Path | None] | None] = ContextVar(
    "lockgate_config_file", default=None
)


@contextmanager
def config_file_chosen(path: Path | None) -> Iterator[None]:
    """Settings built inside read ``path`` (None: no file) instead of discovering one."""
    token = _CHOSEN_FILE.set((path,))
    try:
        yield
    finally:
        _CHOSEN_FILE.reset(token)


def current_config_file() -> Path | None:
    """The file settings built now read: the chosen one, else :func:`find_config_file`."""
    chosen = _CHOSEN_FILE.get()
    return chosen[0] if chosen is not None else find_config_file()


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's sections; :class:`ConfigError` when it cannot be read, is not YAML, or is
    not a mapping of sections."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded


class ShortcutSource(PydanticBaseSettingsSource):
    """``LOCKGATE_DATABASE_URL`` and friends, mapped into their section (``section``: the
    settings class reads that one section; None: every section)."""

    def __init__(self, settings_cls: type[BaseSettings], section: str | None) -> None:
        super().__init__(settings_cls)
        self.section = section

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for var, (section, key) in SHORTCUTS.items():
            if var not in os.environ:
                continue
            if self.section is None:
                out.setdefault(section, {})[key] = os.environ[var]
            elif self.section == section:
                out[key] = os.environ[var]
        return out


def config_sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    *,
    section: str | None,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """The sources of every lockgate settings class, highest first: code, ``LOCKGATE_*``
    variables, their short names, the file (its ``section``; None: all of it)."""
    sources: list[PydanticBaseSettingsSource] = [
        init_settings,
        env_settings,
        ShortcutSource(settings_cls, section),
    ]
    path = current_config_file()
    if path is None:
        return tuple(sources)
    data = read_config_file(path)
    if section is not None:
        if data.get(section) is None:
            return tuple(sources)
        if not isinstance(data[section], dict):
            raise ConfigError(f"{path}: the {section} section must be a mapping")
    sources.append(
        YamlConfigSettingsSource(settings_cls, yaml_file=path, yaml_config_section=section)
    )
    return tuple(sources)


def reject_renamed(data: Any, renamed: Mapping[str, str]) -> Any:
    """For a ``mode="before"`` validator: a key renamed in an earlier release is an error
    naming its new key, never silently ignored."""
    if isinstance(data, Mapping):
        for old, new in renamed.items():
            if old in data:
                raise PydanticCustomError(
                    "renamed_key", "`{old}` was renamed: use `{new}`", {"old": old, "new": new}
                )
    return data


class RegistrySettings(BaseSettings):
    """Where the system of record lives (the ``registry`` section).

    ``database_url`` defaults to a SQLite file in ``data_dir``; set it (or
    ``LOCKGATE_DATABASE_URL``) to ``postgresql://…`` for a shared registry.
    ``artifact_url`` is any fsspec URL (``s3://bucket/prefix``); the default is
    ``data_dir/artifacts``.

    ``RegistrySettings()`` reads ``lockgate.yaml`` and the environment as the CLI does;
    values given in code win.
    """

    model_config = SettingsConfigDict(env_prefix=f"{ENV_PREFIX}REGISTRY__", extra="forbid")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Holds the SQLite registry and artifacts unless the URLs below say "
        "otherwise; default: the user data directory (platformdirs).",
        json_schema_extra={"doc_default": "the user data directory"},
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql://… for a shared registry; default: "
        "sqlite:///DATA_DIR/registry.db.",
    )
    artifact_url: str | None = Field(
        default=None, description="fsspec URL of the artifact store; default: DATA_DIR/artifacts."
    )
    auto_migrate: bool = Field(
        default=True,
        description="Apply pending migrations when opening an embedded SQLite registry.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return config_sources(settings_cls, init_settings, env_settings, section="registry")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'registry.db'}"

    def resolved_artifact_url(self) -> str:
        return self.artifact_url or str(self.data_dir / "artifacts")
