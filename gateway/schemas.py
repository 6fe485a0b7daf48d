"""Request models of the OpenAI-compatible endpoints: field types for validation and OpenAPI.

They describe the fields the OpenAI API defines, loosely (``extra="allow"``: a vendor's own
fields pass through) but strictly typed (``"temperature": "hot"`` is a 400 naming
``temperature``). :func:`install_openapi` puts them, and the error shape, into the app's
OpenAPI document, which the schemathesis test runs against.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

_LOOSE = ConfigDict(extra="allow", strict=True)


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
    n: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None


class ChatCompletionRequest(_Common):
    messages: list[Message] | None = Field(
        default=None, description="Required unless a prompt supplies them."
    )
    prompt: PromptRef | None = None
    max_completion_tokens: int | None = None
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
    "400": "Invalid JSON or a field of the wrong type (param names it).",
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
