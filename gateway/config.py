"""The one configuration: ``lockgate.yaml`` with a section per package, overridden by
``LOCKGATE_*`` environment variables.

Which file: ``--config``, else ``$LOCKGATE_CONFIG``, else ``./lockgate.yaml`` (in the
current working directory) when there is one, else none: the built-in defaults. The same
rule serves every CLI command, the server and the Python API (:func:`load_settings`); the
file read is :attr:`LockgateSettings.source_file`.

Read once at start-up into typed settings and passed down; no other module reads the
environment. Nested keys use a double underscore (``LOCKGATE_REGISTRY__DATA_DIR``); the
common ones also have short names:

=========================  =====================================
``LOCKGATE_DATABASE_URL``  ``registry.database_url``
``LOCKGATE_ARTIFACT_URL``  ``registry.artifact_url``
``LOCKGATE_DATA_DIR``      ``registry.data_dir``
=========================  =====================================

The gateway also reads ``OTEL_EXPORTER_OTLP_ENDPOINT`` (when ``gateway.tracing.otlp_endpoint``
is unset) and the API keys that deployments name by ``api_key_env``, here and only here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from lockgate.gateway.settings import GatewaySettings
from lockgate.registry.errors import LockgateError
from lockgate.registry.settings import RegistrySettings

SHORTCUTS = {
    "LOCKGATE_DATABASE_URL": ("registry", "database_url"),
    "LOCKGATE_ARTIFACT_URL": ("registry", "artifact_url"),
    "LOCKGATE_DATA_DIR": ("registry", "data_dir"),
}
DEFAULT_CONFIG_FILE = "lockgate.yaml"


class ConfigError(LockgateError):
    code = "config_error"


class ServerSettings(BaseModel):
    model_config = {"extra": "forbid"}

    host: str = "127.0.0.1"
    port: int = Field(default=4000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    graceful_shutdown_s: float = Field(
        default=10.0, ge=0, description="On SIGTERM, how long in-flight calls (streams) may finish."
    )


class LockgateSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOCKGATE_", env_nested_delimiter="__", extra="forbid"
    )

    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    _source_file: Path | None = PrivateAttr(default=None)

    @property
    def source_file(self) -> Path | None:
        """The ``lockgate.yaml`` these settings were read from; None: defaults and environment."""
        return self._source_file

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ShortcutSource(settings_cls))


class _ShortcutSource(PydanticBaseSettingsSource):
    """``LOCKGATE_DATABASE_URL`` and friends, mapped into their sections."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, dict[str, Any]] = {}
        for var, (section, key) in SHORTCUTS.items():
            if var in os.environ:
                out.setdefault(section, {})[key] = os.environ[var]
        return out


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def find_config_file(config_path: Path | None = None) -> Path | None:
    """The configuration file to read: ``config_path`` (``--config``), else
    ``$LOCKGATE_CONFIG``, else ``./lockgate.yaml`` when it exists, else None. A path given
    by the first two must exist (:func:`load_settings` says so); the third is optional."""
    if config_path is not None:
        return config_path
    if os.environ.get("LOCKGATE_CONFIG"):
        return Path(os.environ["LOCKGATE_CONFIG"])
    default = Path.cwd() / DEFAULT_CONFIG_FILE
    return default if default.is_file() else None


def load_settings(config_path: Path | None = None) -> LockgateSettings:
    """Read the configuration file (:func:`find_config_file`) under the environment's
    overrides; the result remembers the file as ``source_file``."""
    path = find_config_file(config_path)
    file_values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        file_values = loaded
    try:
        from_env = LockgateSettings()
        env_values = from_env.model_dump(exclude_unset=True)
        merged = _deep_merge(file_values, env_values)
        settings = LockgateSettings.model_validate(merged)
    except ValidationError as exc:
        where = f"{path}" if path else "the LOCKGATE_* environment"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration in {where}: {problems}") from exc
    settings = _with_gateway_environment(settings)
    settings._source_file = path.resolve() if path is not None else None
    return settings


def _with_gateway_environment(settings: LockgateSettings) -> LockgateSettings:
    """Resolve deployment API keys and the standard OTLP endpoint from the environment."""
    gateway = settings.gateway.with_secrets(os.environ)
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if gateway.tracing.otlp_endpoint is None and endpoint:
        tracing = gateway.tracing.model_copy(update={"otlp_endpoint": endpoint})
        gateway = gateway.model_copy(update={"tracing": tracing})
    return settings.model_copy(update={"gateway": gateway})
