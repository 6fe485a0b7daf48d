"""Request models of the OpenAI-compatible endpoints: field types for validation and OpenAPI.

They describe the fields the OpenAI API defines, loosely (``extra="allow"``: a vendor's own
fields pass through to OpenAI-compatible upstreams) but strictly typed and ranged
(``"temperature": "hot"`` or ``"n": -1`` is a 400 naming the field). :func:`install_openapi`
puts them, and the error shape, into the app's OpenAPI document, which the schemathesis test
runs against.

Two field sets draw the trust boundary of a request body:

- :data:`CONTROL_FIELDS`: names that choose where a call goes, with which credentials, headers
  or client options (litellm reads them as such). A body carrying one is a 400 naming it, on
  every provider path: only ``lockgate.yaml`` chooses those.
- :data:`OPENAI_FIELDS`: per operation, the OpenAI API's request fields; they alone (with the
  deployment's configured ``params``) are passed to litellm, which would otherwise read any
  other keyword as one of its own options.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

_LOOSE = ConfigDict(extra="allow", strict=True)

MAX_N = 128  # the OpenAI API's own limit on choices per request
MAX_TOKENS = 1 << 20  # more output tokens than any model writes in one answer
INT64 = (-(1 << 63), (1 << 63) - 1)

CONTROL_FIELDS: frozenset[str] = frozenset({
    # where the call goes
    "api_base", "base_url", "custom_llm_provider", "api_version", "api_type", "deployment_id",
    "azure_endpoint", "azure_deployment", "organization", "region_name", "aws_region_name",
    "aws_bedrock_runtime_endpoint", "aws_sts_endpoint", "vertex_project", "vertex_location",
    "vertex_ai_project", "vertex_ai_location", "model_list", "fallbacks",
    "context_window_fallback_dict", "use_litellm_proxy", "litellm_params",
    # with which credentials
    "api_key", "azure_ad_token", "azure_ad_token_provider", "azure_username", "azure_password",
    "client_id", "client_secret", "tenant_id", "aws_access_key_id", "aws_secret_access_key",
    "aws_session_token", "aws_profile_name", "aws_role_name", "aws_web_identity_token",
    "vertex_credentials", "vertex_ai_credentials", "litellm_credential_name",
    # with which headers
    "extra_headers", "headers", "default_headers", "extra_query", "extra_body",
    "provider_specific_header",
    # client options
    "timeout", "request_timeout", "stream_timeout", "max_retries", "num_retries", "client",
    "http_client", "shared_session", "ssl_verify", "mock_response", "mock_timeout",
    "mock_tool_calls", "caching", "cache", "logger_fn", "input_cost_per_token",
    "output_cost_per_token", "base_model", "model_info", "litellm_logging_obj",
    "litellm_call_id", "litellm_metadata", "proxy_server_request", "secret_fields",
})  # fmt: skip

_SAMPLING = ("model", "stream", "stream_options", "n", "max_tokens", "temperature", "top_p",
             "frequency_penalty", "presence_penalty", "seed", "stop", "user", "logit_bias",
             "logprobs")  # fmt: skip
_CHAT = ("messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice",
         "parallel_tool_calls", "functions", "function_call", "response_format", "modalities",
         "audio", "prediction", "reasoning_effort", "service_tier", "store", "verbosity",
         "web_search_options", "safety_identifier", "prompt_cache_key")  # fmt: skip
OPENAI_FIELDS: dict[str, frozenset[str]] = {
    "chat": frozenset({*_SAMPLING, *_CHAT}),
    "text_completion": frozenset({*_SAMPLING, "prompt", "best_of", "echo", "suffix"}),
    "embeddings": frozenset({"model", "input", "encoding_format", "dimensions", "user"}),
}


class PromptRef(BaseModel):
    """lockgate's own: render a registry prompt into the request."""

    model_config = _LOOSE
    name: str | None = Field(
        default=None, description="Registry prompt name (or give model prompt:NAME@LABEL)."
    )
    label: str | None = None
    version: int | str | None = None
    variables: dict[str, Any] | None = None


class Message(BaseModel):
    model_config = _LOOSE
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class _Common(BaseModel):
    model_config = _LOOSE
    model: str | None = Field(
        default=None,
        description="A route, registry:NAME@LABEL or prompt:NAME@LABEL "
        "(optional when the prompt's config names one).",
    )
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = Field(default=None, ge=INT64[0], le=INT64[1])
    stop: str | list[str] | None = None
    user: str | None = None


class ChatCompletionRequest(_Common):
    messages: list[Message] | None = Field(
        default=None, description="Required unless a prompt supplies them."
    )
    prompt: PromptRef | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    logit_bias: dict[str, float] | None = None


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]] | PromptRef | None = None
    echo: bool | None = None
    logprobs: int | None = None
    suffix: str | None = None


class EmbeddingRequest(BaseModel):
    model_config = _LOOSE
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: str | None = None
    dimensions: int | None = None
    user: str | None = None


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error the gateway answers, in the OpenAI shape."""

    error: ErrorBody


REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "chat": ChatCompletionRequest,
    "text_completion": CompletionRequest,
    "embeddings": EmbeddingRequest,
}
_BODIES: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
}
_ERRORS = {
    "400": "Invalid JSON, a field of the wrong type or out of range, or a field that would "
    "choose the destination, credentials, headers or client options (param names it).",
    "401": "No API key, or an unknown, revoked or expired one.",
    "403": "The key may not use this model or lacks the scope.",
    "404": "Unknown model, prompt or label.",
    "408": "The request body did not arrive in time.",
    "413": "The request body is too large.",
    "429": "A key's limit or budget, or the upstream's (Retry-After says when to retry).",
    "502": "The upstream failed.",
    "503": "Every deployment failed, or the registry is unreachable.",
    "504": "The upstream did not answer in time.",
}


def install_openapi(app: FastAPI) -> None:
    """Describe the proxy endpoints' bodies and errors (their handlers read raw requests)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        ref = "#/components/schemas/{model}"
        models: list[type[BaseModel]] = [*_BODIES.values(), ErrorResponse]
        for model in models:
            definition = model.model_json_schema(ref_template=ref)
            components.update(definition.pop("$defs", {}))
            components[model.__name__] = definition
        error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for path, model in _BODIES.items():
            operation = schema["paths"][path]["post"]
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                },
            }
            responses = operation.setdefault("responses", {})
            for status, description in _ERRORS.items():
                responses[status] = {
                    "description": description,
                    "content": {"application/json": {"schema": error_ref}},
                }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
