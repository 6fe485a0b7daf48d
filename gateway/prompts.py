"""Request-time prompts: a ``prompt`` object in the body or the model ``prompt:NAME@LABEL``.

``{"prompt": {"name": "support", "label": "production", "variables": {"q": "…"}}}`` (the
openai SDK sends it with ``extra_body``) renders the registry prompt strictly: an unknown
prompt or label is a 404, missing or unknown variables a 400 naming them. A chat prompt's
messages come before the request's own; a text prompt becomes one user message (chat) or
the ``prompt`` (completions). The prompt's model config fills what the request leaves out; a
config field that would choose the destination, credentials, headers or client options is
refused like the same field in a body. Rendering is bounded (:mod:`registry.templates`); it
holds the event loop at most :data:`INLINE_RENDER_S`, then moves to a worker thread. A version
outside 1 … 2³¹-1 is a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread

from lockgate.gateway.body import refuse_control_fields
from lockgate.gateway.cache import TTLCache
from lockgate.gateway.clock import SYSTEM_CLOCK, Clock
from lockgate.gateway.errors import InvalidRequest
from lockgate.gateway.schemas import CONTROL_FIELDS
from lockgate.registry.records import PromptVersionInfo, Ref
from lockgate.registry.registry import Registry
from lockgate.registry.templates import RenderTooSlow

PREFIX = "prompt:"
INLINE_RENDER_S = 0.002  # the longest a render may hold the event loop before it moves off
MAX_VERSION = (1 << 31) - 1  # versions are 32-bit integers in the registry


def _out_of_range(version: object, param: str) -> InvalidRequest:
    return InvalidRequest(
        f"version {version} is out of range: versions run from 1 to {MAX_VERSION}", param=param
    )


def parse_ref(text: str, param: str) -> Ref:
    """``NAME[@LABEL|@VERSION]`` from a request, its version one a registry could hold."""
    try:
        ref = Ref.parse(text)
    except ValueError:  # a version of non-ASCII digits, or too many digits to convert
        raise _out_of_range(text.partition("@")[2][:20] + "…", param) from None
    if ref.version is not None and not 1 <= ref.version <= MAX_VERSION:
        raise _out_of_range(ref.version, param)
    return ref


@dataclass(frozen=True, slots=True)
class AppliedPrompt:
    name: str
    version: int


def _reference(spec: Mapping[str, Any], model: Any) -> Ref:
    if isinstance(model, str) and model.startswith(PREFIX):
        return parse_ref(model[len(PREFIX) :], "model")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("prompt.name is required (a registry prompt name)", param="prompt")
    label, version = spec.get("label"), spec.get("version")
    if label is not None and version is not None:
        raise InvalidRequest("give prompt.label or prompt.version, not both", param="prompt")
    if version is not None:
        if isinstance(version, str) and version.lstrip("v").isdecimal():
            digits = version.lstrip("v")
            if len(digits) > 10 or not digits.isascii():
                raise _out_of_range(digits[:20], "prompt.version")
            version = int(digits)
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvalidRequest("prompt.version must be an integer", param="prompt.version")
        if not 1 <= version <= MAX_VERSION:
            raise _out_of_range(version, "prompt.version")
        return Ref.parse(f"{name}@{version}")
    if label is not None and not isinstance(label, str):
        raise InvalidRequest("prompt.label must be a string", param="prompt.label")
    return parse_ref(f"{name}@{label}" if label else name, "prompt.label")


class PromptResolver:
    def __init__(self, registry: Registry, ttl_s: float, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._registry = registry
        self._cache: TTLCache[PromptVersionInfo] = TTLCache(ttl_s, clock=clock)

    async def apply(self, operation: str, body: dict[str, Any]) -> AppliedPrompt | None:
        """Render the prompt the body asks for into it (in place); None when it asks for none."""
        model = body.get("model")
        spec = body.get("prompt")
        by_model = isinstance(model, str) and model.startswith(PREFIX)
        if not by_model and not isinstance(spec, dict):
            if spec is not None and operation == "chat":
                raise InvalidRequest(
                    "prompt must be an object {name, label | version, variables}", param="prompt"
                )
            return None
        if isinstance(spec, dict):
            del body["prompt"]
        else:
            spec = {}
        if operation == "embeddings":
            raise InvalidRequest("registry prompts apply to chat and completions", param="prompt")
        ref = _reference(spec, model)
        variables = spec.get("variables") or {}
        if not isinstance(variables, dict):
            raise InvalidRequest("prompt.variables must be an object", param="prompt.variables")
        key = (ref.name, ref.label, ref.version)
        info = await self._cache.get(key, lambda: self._registry.prompts.get(ref))
        try:  # on the loop while it is quick; a slow template goes to a worker thread
            rendered = self._registry.prompts.render(info, variables, within_s=INLINE_RENDER_S)
        except RenderTooSlow:
            rendered = await anyio.to_thread.run_sync(
                self._registry.prompts.render, info, variables
            )
        if by_model:
            del body["model"]
        if operation == "chat":
            messages = rendered.messages or [{"role": "user", "content": rendered.text}]
            extra = body.get("messages") or []
            if not isinstance(extra, list):
                raise InvalidRequest("messages must be a list", param="messages")
            body["messages"] = [*messages, *extra]
        elif rendered.text is None:
            raise InvalidRequest(
                f"prompt {info.name!r} is a chat prompt: use /v1/chat/completions", param="prompt"
            )
        else:
            body["prompt"] = rendered.text
        if not CONTROL_FIELDS.isdisjoint(rendered.config):
            refuse_control_fields(rendered.config, f"prompt {info.name}@{info.version} config: ")
        for key_, value in rendered.config.items():
            body.setdefault(key_, value)
        if "model" not in body:
            raise InvalidRequest(
                f"prompt {info.name}@{info.version} names no model in its config: "
                "give model in the request",
                param="model",
            )
        return AppliedPrompt(info.name, info.version)
