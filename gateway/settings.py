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
  auth: auto                          # auto | required | disabled (see docs/gateway.md)
  admin_key_env: LOCKGATE_ADMIN_KEY   # a bootstrap admin key, from the environment
  redis_url: redis://redis:6379/0     # per-key limits shared by every replica
  retries: {max_retries: 2, backoff_base_s: 0.2, backoff_max_s: 5}
  breaker: {failures: 5, cooldown_s: 30}
  timeouts: {connect_s: 5, first_token_s: 60, read_s: 600, total_s: 600}
  requests: {max_body_bytes: 4194304, body_timeout_s: 30, max_upload_bytes: 536870912}
```

A route may override ``retries`` and ``timeouts`` and name ``fallbacks`` (other routes tried,
in order, when all of its own deployments fail).

API keys are referenced by environment-variable name; :meth:`GatewaySettings.with_secrets`
resolves them from a mapping (``gateway.config.load_settings`` passes the environment).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

from lockgate.registry.settings import reject_renamed

JUDGE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,100}")

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

    api_base: str | None = Field(
        default=None, description="Base URL of the upstream's API (…/v1 for OpenAI-compatible)."
    )
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


class ProviderSettings(Credentials):
    """A provider's defaults for ``registry:NAME@LABEL`` models, and where its key may go."""

    allowed_api_bases: list[str] = Field(
        default_factory=list,
        description="Other base URLs a registered model of this provider may name (its api_base "
        "or params); the provider's key goes only to these and api_base.",
    )


class PriceSettings(_Strict):
    """A model's price, per token or per million tokens (USD)."""

    input_per_token: float | None = Field(default=None, ge=0, description="USD per input token.")
    output_per_token: float | None = Field(default=None, ge=0, description="USD per output token.")
    input_per_million: float | None = Field(
        default=None, ge=0, description="USD per million input tokens."
    )
    output_per_million: float | None = Field(
        default=None, ge=0, description="USD per million output tokens."
    )

    @model_validator(mode="after")
    def _one_unit(self) -> PriceSettings:
        per_token = (self.input_per_token, self.output_per_token) != (None, None)
        if per_token and (self.input_per_million, self.output_per_million) != (None, None):
            raise ValueError("give prices per token or per million tokens, not both")
        return self

    def per_token(self) -> tuple[float, float]:
        """(input, output) USD per token."""
        if self.input_per_million is not None or self.output_per_million is not None:
            return (self.input_per_million or 0.0) / 1e6, (self.output_per_million or 0.0) / 1e6
        return self.input_per_token or 0.0, self.output_per_token or 0.0


class DeploymentSettings(Credentials):
    """One upstream serving a route."""

    provider: str = Field(default="openai", description="gen_ai.provider.name of the upstream.")
    model: str = Field(description="The model name the upstream expects.")
    name: str | None = Field(default=None, description="Shown in traces; default provider/model.")
    weight: float = Field(
        default=1.0, gt=0, description="Share of the route's traffic, relative to the others."
    )
    via: Literal["openai", "litellm", "local"] | None = Field(
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


class RetrySettings(_Strict):
    """Retries of a failed upstream attempt, only while nothing has reached the client."""

    max_retries: int = Field(
        default=2, ge=0, description="Attempts beyond one per deployment in the chain."
    )
    backoff_base_s: float = Field(default=0.2, ge=0, description="First backoff (doubles).")
    backoff_max_s: float = Field(default=5.0, ge=0, description="Longest backoff.")
    max_retry_after_s: float = Field(
        default=10.0, ge=0,
        description="An upstream Retry-After longer than this moves on instead of waiting.",
    )  # fmt: skip


class TimeoutSettings(_Strict):
    """Per attempt: connecting, the first streamed chunk, the silence between two reads,
    and the whole upstream call. The one place upstream timeouts are set."""

    connect_s: float = Field(default=5.0, gt=0, description="TCP and TLS connection set-up.")
    first_token_s: float = Field(
        default=60.0, gt=0, description="Streams: time to the first chunk of the answer."
    )
    read_s: float = Field(
        default=600.0,
        gt=0,
        description="Silence allowed between two reads of the answer (a stream's chunks); "
        "gateway-wide, not overridden per route.",
    )
    total_s: float = Field(default=600.0, gt=0, description="One attempt, stream included.")


class TimeoutOverrides(_Strict):
    """A route's own timeouts; unset keys keep gateway.timeouts."""

    connect_s: float | None = Field(default=None, gt=0, description="See gateway.timeouts.")
    first_token_s: float | None = Field(default=None, gt=0, description="See gateway.timeouts.")
    total_s: float | None = Field(default=None, gt=0, description="See gateway.timeouts.")


class RouteSettings(_Strict):
    """A public model name and the upstreams serving it."""

    deployments: list[DeploymentSettings] = Field(
        min_length=1, description="Upstreams serving the route, chosen by weight."
    )
    fallbacks: list[str] = Field(
        default_factory=list,
        description="Routes tried in order once every deployment of this one has failed.",
    )
    retries: RetrySettings | None = Field(default=None, description="Default: gateway.retries.")
    timeouts: TimeoutOverrides | None = Field(
        default=None, description="Overrides of gateway.timeouts for this route."
    )


class BreakerSettings(_Strict):
    """A per-deployment circuit breaker: after ``failures`` consecutive failures the
    deployment is skipped for ``cooldown_s``, then one probe call decides."""

    failures: int = Field(default=5, ge=1, description="Consecutive failures that open it.")
    cooldown_s: float = Field(default=30.0, gt=0, description="How long an open one skips.")


class RequestSettings(_Strict):
    """Limits on what a caller sends."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, description="Larger: 413.")
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="Time allowed to receive the request body (408)."
    )
    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="Largest file POST /v1/files takes (the multipart body); larger: 413.",
    )


class UpstreamSettings(_Strict):
    """The pooled HTTP session to OpenAI-compatible upstreams (timeouts: gateway.timeouts)."""

    max_connections: int = Field(default=1000, ge=1, description="Open connections, in all.")
    keepalive_timeout_s: float = Field(
        default=30.0, gt=0, description="How long an idle pooled connection is kept."
    )
    stream_usage: bool = Field(
        default=True,
        description="Ask OpenAI-compatible upstreams for usage in streams (for tokens and cost); "
        "the usage chunk is removed again when the client did not ask for it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return reject_renamed(
            data,
            {
                "connect_timeout_s": "gateway.timeouts.connect_s",
                "read_timeout_s": "gateway.timeouts.read_s",
            },
        )


class TracingSettings(_Strict):
    """One OpenTelemetry span per call, exported over OTLP when an endpoint is set."""

    service_name: str = Field(default="lockgate", description="The service.name resource.")
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP base URL; default: $OTEL_EXPORTER_OTLP_ENDPOINT."
    )
    otlp_headers: dict[str, str] = Field(
        default_factory=dict, description="Headers sent with every export (an API key)."
    )
    export_delay_s: float = Field(
        default=2.0, gt=0, description="Longest wait before a batch of spans is exported."
    )
    capture_content: bool = Field(
        default=False, description="Record prompts and completions on spans (redacted)."
    )
    redact_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REDACTIONS),
        description="Regular expressions replaced in captured content (keys, e-mail addresses).",
    )
    redaction: str = Field(default="[REDACTED]", description="What a redacted match becomes.")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        return reject_renamed(data, {"export_delay_ms": "export_delay_s"})


class CallRecordSettings(_Strict):
    """Call records written to the registry off the hot path (for the UI, SLA gates, drift)."""

    enabled: bool = Field(default=True, description="Write a record of every call.")
    queue_size: int = Field(
        default=10_000, ge=1, description="Records waiting to be written; beyond: dropped, counted."
    )
    batch_size: int = Field(default=500, ge=1, description="Records per database write.")
    flush_interval_s: float = Field(
        default=1.0, gt=0, description="Longest wait before queued records are written."
    )
    compute_cost: bool = Field(
        default=True, description="Cost from litellm's model cost map (loaded in the background)."
    )


class LocalModelSettings(_Strict):
    """Registry ``hf``/``lora`` versions served in process (the ``local`` provider)."""

    cache_dir: Path | None = Field(
        default=None, description="Where model files are materialised; default DATA_DIR/models."
    )


class PredictSettings(_Strict):
    """``POST /v1/models/{NAME@LABEL}:predict``: registry scikit-learn models served in
    process, their inputs bounded and a sample of them kept for drift (docs/gateway.md)."""

    max_rows: int = Field(
        default=10_000, ge=1, description="Rows one :predict request may carry; more: 413."
    )
    max_loaded_models: int = Field(
        default=8, ge=1, description="Model versions kept loaded (least recently used go)."
    )
    sample_rate: float = Field(
        default=0.1, ge=0, le=1,
        description="Share of successful :predict requests whose rows are sampled into the "
        "registry (prediction_samples) for drift; 0 keeps none.",
    )  # fmt: skip
    max_sample_rows_per_request: int = Field(
        default=10, ge=1, description="Rows kept of a sampled request (chosen at random)."
    )
    sample_queue_size: int = Field(
        default=10_000, ge=1,
        description="Sampled rows waiting to be written; beyond: dropped and counted.",
    )  # fmt: skip
    sample_flush_interval_s: float = Field(
        default=1.0, gt=0, description="Longest wait before queued samples are written."
    )


class JudgeSettings(_Strict):
    """An LLM judge scoring a sampled share of the gateway's successful chat and completions
    calls, off the request path (:mod:`gateway.judges`, docs/monitoring.md); its name in
    ``gateway.judges`` is the score's name."""

    prompt: str = Field(
        description="The rubric: a registry prompt NAME@LABEL, as the llm_judge scorer takes; "
        "its variables may be input (the call's messages), question (the last user message) "
        "and output (the answer)."
    )
    model: str = Field(
        description="The route that answers the rubric: a configured route (gateway.routes) "
        "or registry:NAME@LABEL."
    )
    sample_rate: float = Field(
        default=0.05, ge=0, le=1, description="Share of successful calls judged, 0 to 1."
    )
    routes: list[str] = Field(
        default_factory=list,
        description="Judge only calls of these routes (as the gateway resolved them); "
        "default: every route.",
    )
    scale: tuple[float, float] = Field(
        default=(0.0, 1.0), description="The rubric's score range (low, high), mapped to 0-1."
    )
    params: dict[str, Any] = Field(
        default_factory=lambda: {"temperature": 0},
        description="Request fields of the judge's call (the rubric's config fills the rest).",
    )
    max_chars: int = Field(
        default=8000, ge=100,
        description="Characters of the conversation (its end), the question and the answer "
        "handed to the judge, each.",
    )  # fmt: skip
    max_pending: int = Field(
        default=100, ge=1,
        description="Judgments in flight; a call sampled beyond them is not judged (counted).",
    )  # fmt: skip

    @model_validator(mode="after")
    def _check_scale(self) -> JudgeSettings:
        low, high = self.scale
        if not low < high:
            raise ValueError(f"scale must be (low, high) with low < high, not {list(self.scale)}")
        return self


class GatewaySettings(_Strict):
    """The ``gateway`` section: routes, providers, keys, limits, tracing (docs/gateway.md)."""

    routes: dict[str, RouteSettings] = Field(
        default_factory=dict, description="Public model name -> the deployments serving it."
    )
    providers: dict[str, ProviderSettings] = Field(
        default_factory=dict,
        description="Per-provider api_base and key for registry:NAME@LABEL models.",
    )
    prices: dict[str, PriceSettings] = Field(
        default_factory=dict,
        description="Prices by model (as a deployment names it), over litellm's cost map.",
    )
    unpriced: Literal["refuse", "allow"] = Field(
        default="refuse",
        description="A key with a budget calling a model without a price: refuse "
        "(403 model_unpriced) or allow (the call costs nothing against the budget).",
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
    local: LocalModelSettings = Field(default_factory=LocalModelSettings)
    predict: PredictSettings = Field(default_factory=PredictSettings)
    judges: dict[str, JudgeSettings] = Field(
        default_factory=dict,
        description="Name -> an LLM judge scoring a sampled share of the traffic "
        "(docs/monitoring.md); traffic drift compares the scores.",
    )
    auth: Literal["auto", "required", "disabled"] = Field(
        default="auto",
        description="auto: keys are required once an admin key is configured or any key "
        "exists in the registry; required: always; disabled: never (local development).",
    )
    admin_key_env: str | None = Field(
        default=None, description="Environment variable holding a bootstrap admin key."
    )
    admin_key: SecretStr | None = Field(
        default=None, description="Resolved at start-up from admin_key_env; avoid setting it."
    )
    key_cache_ttl_s: float = Field(
        default=5.0, ge=0, description="How long a looked-up key is trusted (revocation delay)."
    )
    redis_url: str | None = Field(
        default=None, description="Redis for limits shared by replicas; default: in process."
    )
    limiter_failure: Literal["open", "closed"] = Field(
        default="open",
        description="When the limiter cannot be reached (Redis down): open admits the request "
        "unlimited, closed refuses it with 503 rate_limiter_unavailable. Either way it is "
        "counted in lockgate_limiter_errors_total.",
    )
    retries: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    requests: RequestSettings = Field(default_factory=RequestSettings)

    @model_validator(mode="after")
    def _check_routes(self) -> GatewaySettings:
        for name, route in self.routes.items():
            for fallback in route.fallbacks:
                if fallback not in self.routes or fallback == name:
                    raise ValueError(
                        f"route {name!r}: fallback {fallback!r} is not another configured route"
                    )
        for name, judge in self.judges.items():
            self._check_judge(name, judge)
        return self

    def _check_judge(self, name: str, judge: JudgeSettings) -> None:
        known = ", ".join(sorted(self.routes)) or "none"
        if not JUDGE_NAME.fullmatch(name):
            raise ValueError(
                f"judge {name!r}: a judge's name is 1 to 100 letters, digits, '_', '-' or '.'"
            )
        for what, route in (("model", judge.model), *(("routes", r) for r in judge.routes)):
            if route not in self.routes and not route.startswith("registry:"):
                raise ValueError(
                    f"judges.{name}.{what}: {route!r} is not a configured route (gateway.routes: "
                    f"{known}) nor registry:NAME@LABEL"
                )

    def route_timeouts(self, route: RouteSettings) -> TimeoutSettings:
        if route.timeouts is None:
            return self.timeouts
        return self.timeouts.model_copy(update=route.timeouts.model_dump(exclude_none=True))

    def with_secrets(self, environ: Mapping[str, str]) -> GatewaySettings:
        """A copy with every ``api_key_env`` resolved from ``environ``."""
        routes = {
            name: route.model_copy(
                update={"deployments": [d.resolved(environ) for d in route.deployments]}
            )
            for name, route in self.routes.items()
        }
        providers = {name: c.resolved(environ) for name, c in self.providers.items()}
        update: dict[str, Any] = {"routes": routes, "providers": providers}
        if self.admin_key is None and self.admin_key_env and environ.get(self.admin_key_env):
            update["admin_key"] = SecretStr(environ[self.admin_key_env])
        return self.model_copy(update=update)
