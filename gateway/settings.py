"""Typed settings of the ``gateway`` section of ``lockgate.yaml``.

```yaml
gateway:
  routes:
    gpt-4o-mini:                      # the public model name apps ask for
      deployments:
        - provider: openai            # gen_ai.provider.name; OpenAI-compatible -> fast path
          model: gpt-4o-mini          # the upstream model
          api_base: https://api.openai.com/v1
          api_key_env: OPENAI_API_KEY # resolved once at start-up, never logged
          weight: 1
    claude:
      deployments:
        - {provider: anthropic, model: anthropic/claude-3-5-haiku-latest,
           api_key_env: ANTHROPIC_API_KEY}          # through litellm
  providers:                          # defaults for registry:NAME@LABEL models
    openai: {api_key_env: OPENAI_API_KEY}
  prompt_cache_ttl_s: 5
  tracing: {capture_content: false}
  call_records: {queue_size: 10000}
```

API keys are referenced by environment-variable name; :meth:`GatewaySettings.with_secrets`
resolves them from a mapping (``gateway.config.load_settings`` passes the environment).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr

# Providers spoken to over the OpenAI protocol by the fast path unless ``via`` says otherwise.
OPENAI_COMPATIBLE = frozenset(
    {"openai", "openai_compatible", "vllm", "ollama", "lmstudio", "tgi", "azure.ai.openai"}
)
DEFAULT_API_BASES = {"openai": "https://api.openai.com/v1"}
DEFAULT_REDACTIONS = [
    r"sk-[A-Za-z0-9_\-]{16,}",  # OpenAI / Anthropic style secret keys
    r"(?i:bearer)\s+[A-Za-z0-9._\-]{16,}",  # bearer tokens
    r"AKIA[0-9A-Z]{16}",  # AWS access key ids
    r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}",  # e-mail addresses
]


class _Strict(BaseModel):
    model_config = {"extra": "forbid"}


class Credentials(_Strict):
    """Where an upstream lives and the key to use (by environment-variable name)."""

    api_base: str | None = None
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key."
    )
    api_key: SecretStr | None = Field(
        default=None, description="Resolved at start-up from api_key_env; avoid setting it."
    )

    def resolved(self, environ: Mapping[str, str]) -> Any:
        if self.api_key is None and self.api_key_env and environ.get(self.api_key_env):
            return self.model_copy(update={"api_key": SecretStr(environ[self.api_key_env])})
        return self


class DeploymentSettings(Credentials):
    """One upstream serving a route."""

    provider: str = Field(default="openai", description="gen_ai.provider.name of the upstream.")
    model: str = Field(description="The model name the upstream expects.")
    name: str | None = Field(default=None, description="Shown in traces; default provider/model.")
    weight: float = Field(default=1.0, gt=0)
    via: Literal["openai", "litellm"] | None = Field(
        default=None,
        description="Provider implementation; default: openai for OpenAI-compatible providers.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Request defaults (the request wins)."
    )

    @property
    def implementation(self) -> str:
        if self.via is not None:
            return self.via
        return "openai" if self.provider in OPENAI_COMPATIBLE else "litellm"

    @property
    def label(self) -> str:
        return self.name or f"{self.provider}/{self.model}"


class RouteSettings(_Strict):
    deployments: list[DeploymentSettings] = Field(min_length=1)


class UpstreamSettings(_Strict):
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=600.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    keepalive_timeout_s: float = Field(default=30.0, gt=0)
    stream_usage: bool = Field(
        default=True,
        description="Ask OpenAI-compatible upstreams for usage in streams (for tokens and cost); "
        "the usage chunk is removed again when the client did not ask for it.",
    )


class TracingSettings(_Strict):
    service_name: str = "lockgate"
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP base URL; default: $OTEL_EXPORTER_OTLP_ENDPOINT."
    )
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    export_delay_ms: int = Field(default=2000, ge=1)
    capture_content: bool = Field(
        default=False, description="Record prompts and completions on spans (redacted)."
    )
    redact_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_REDACTIONS))
    redaction: str = "[REDACTED]"


class CallRecordSettings(_Strict):
    enabled: bool = True
    queue_size: int = Field(default=10_000, ge=1)
    batch_size: int = Field(default=500, ge=1)
    flush_interval_s: float = Field(default=1.0, gt=0)
    compute_cost: bool = Field(
        default=True, description="Cost from litellm's model cost map (loaded in the background)."
    )


class GatewaySettings(_Strict):
    routes: dict[str, RouteSettings] = Field(default_factory=dict)
    providers: dict[str, Credentials] = Field(
        default_factory=dict,
        description="Per-provider api_base and key for registry:NAME@LABEL models.",
    )
    prompt_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a resolved prompt or registry model is reused."
    )
    litellm_local_cost_map: bool = Field(
        default=True, description="Use litellm's bundled cost map instead of fetching it."
    )
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    call_records: CallRecordSettings = Field(default_factory=CallRecordSettings)

    def with_secrets(self, environ: Mapping[str, str]) -> GatewaySettings:
        """A copy with every ``api_key_env`` resolved from ``environ``."""
        routes = {
            name: route.model_copy(
                update={"deployments": [d.resolved(environ) for d in route.deployments]}
            )
            for name, route in self.routes.items()
        }
        providers = {name: c.resolved(environ) for name, c in self.providers.items()}
        return self.model_copy(update={"routes": routes, "providers": providers})
