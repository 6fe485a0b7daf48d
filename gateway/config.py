"""The one configuration: ``lockgate.yaml`` with a section per package (``registry``,
``server``, ``gateway``, ``finetune``, ``evals``), overridden by ``LOCKGATE_*`` environment
variables.

Which file: ``--config``, else ``$LOCKGATE_CONFIG``, else ``./lockgate.yaml`` (in the
current working directory) when there is one, else none: the built-in defaults. The same
sources (:func:`lockgate.registry.settings.config_sources`: pydantic-settings' environment
and YAML sources) serve every CLI command, the server and the Python API
(:func:`load_settings`, or ``RegistrySettings()`` for the registry alone); the file read is
:attr:`LockgateSettings.source_file`.

Read once at start-up into typed settings and passed down; no other module reads the
environment. Nested keys use a double underscore (``LOCKGATE_GATEWAY__TIMEOUTS__TOTAL_S``);
the registry's common keys also have short names (``LOCKGATE_DATABASE_URL``,
``LOCKGATE_ARTIFACT_URL``, ``LOCKGATE_DATA_DIR``). Precedence, highest first: the
environment, the file, the defaults. docs/configuration.md lists every key (generated from
these models by ``gateway/docgen.py``).

The gateway also reads ``OTEL_EXPORTER_OTLP_ENDPOINT`` (when ``gateway.tracing.otlp_endpoint``
is unset), the API keys that deployments name by ``api_key_env`` and the webhook signing
secrets named by ``secret_env`` and the UI's session secret (``ui.session_secret_env``),
here and only here.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from lockgate.evals.settings import EvalsSettings
from lockgate.finetune.settings import WorkerSettings
from lockgate.gateway.settings import GatewaySettings
from lockgate.gateway.ui.settings import UISettings
from lockgate.gateway.webhooks import WebhookSettings
from lockgate.registry.settings import (
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    ConfigError,
    RegistrySettings,
    config_file_chosen,
    config_sources,
    find_config_file,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ConfigError",
    "LockgateSettings",
    "ServerSettings",
    "find_config_file",
    "load_settings",
]


class ServerSettings(BaseModel):
    """Where ``lockgate serve`` listens (the ``server`` section)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        default="127.0.0.1",
        description="Interface to listen on; anything but loopback needs keys (docs/security.md).",
    )
    port: int = Field(default=4000, ge=1, le=65535, description="TCP port.")
    workers: int = Field(default=1, ge=1, description="Server processes.")
    graceful_shutdown_s: float = Field(
        default=10.0, ge=0, description="On SIGTERM, how long in-flight calls (streams) may finish."
    )
    shutdown_drain_s: float = Field(
        default=0.0, ge=0,
        description="On SIGTERM, how long /readyz answers 503 while every request is still "
        "served (Connection: close), before the server stops accepting: at least the load "
        "balancer's check interval times its fall count (docs/scaling.md). 0: no drain.",
    )  # fmt: skip


class LockgateSettings(BaseSettings):
    """Every section of ``lockgate.yaml``. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    finetune: WorkerSettings = Field(default_factory=WorkerSettings)
    evals: EvalsSettings = Field(default_factory=EvalsSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    ui: UISettings = Field(default_factory=UISettings)
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
        return config_sources(settings_cls, init_settings, env_settings, section=None)


def _problem(error: ErrorDetails) -> str:
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "renamed_key":  # reject_renamed: name the old and the new key in full
        old, new = error["ctx"]["old"], error["ctx"]["new"]
        new = new if "." in new else ".".join(filter(None, [where, new]))
        return f"{'.'.join(filter(None, [where, old]))} was renamed: use {new}"
    return f"{where}: {error['msg']}"


def _problems(exc: ValidationError) -> str:
    return "; ".join(_problem(e) for e in exc.errors())


def load_settings(config_path: Path | None = None) -> LockgateSettings:
    """Read the configuration file (:func:`find_config_file`) under the environment's
    overrides; the result remembers the file as ``source_file``. A file that cannot be
    read, or a key that is unknown, renamed or invalid, is a :class:`ConfigError` naming it."""
    path = find_config_file(config_path)
    try:
        with config_file_chosen(path):
            settings = LockgateSettings()
    except ValidationError as exc:
        where = f"{path}" if path else "the LOCKGATE_* environment"
        raise ConfigError(f"invalid configuration in {where}: {_problems(exc)}") from exc
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
    webhooks = settings.webhooks.with_secrets(os.environ)  # signing secrets by secret_env
    ui = settings.ui.with_secrets(os.environ)  # the session secret by session_secret_env
    return settings.model_copy(update={"gateway": gateway, "webhooks": webhooks, "ui": ui})
