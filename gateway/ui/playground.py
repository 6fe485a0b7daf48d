"""The playground: run a prompt version (or the version a label points at) with its variables
through the gateway, and watch the answer stream in.

Design (docs/ui.md, "Playground"): the page's form posts, URL-encoded with the session's CSRF
token, to ``POST /ui/playground-run/NAME`` on the same origin. That endpoint checks the
session, the key behind it and the token like every UI form, then hands a chat request
(``{"model", "stream": true, "prompt": {"name", "version"|"label", "variables"}}``) to the
gateway's own proxy **in process** (:meth:`gateway.proxy.Proxy.handle`, the code behind
``/v1/chat/completions``) with the signed-in key's principal in the ASGI scope
(:data:`gateway.proxy.SCOPE_PRINCIPAL`, which no client can set): the key's scopes
(``inference``), model allow-list, rate limits and budget apply, and the call is recorded
like any other. The key's secret is never in the page or the session. The answer is the
gateway's own SSE stream, then one ``event: summary`` with latency, tokens, cost, request id
and trace id; errors are ``event: error``. A small script (``static/playground.js``: fetch
and a ReadableStream) shows the text as it arrives; the page's CSP allows ``connect-src
'self'`` for it and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message

from lockgate.gateway.proxy import in_process_chat
from lockgate.gateway.relay import RelayResponse
from lockgate.gateway.state import GatewayState
from lockgate.gateway.ui.queries import prompt_versions
from lockgate.gateway.ui.routes import PREFIX, SECURITY_HEADERS, UIDep, UIError
from lockgate.registry.errors import InvalidInput, LockgateError
from lockgate.registry.records import PromptVersionInfo, check_label

router = APIRouter(prefix=PREFIX, include_in_schema=False)
MAX_VALUE = 20_000  # characters in one variable
PAGE_CSP = SECURITY_HEADERS["content-security-policy"] + "; connect-src 'self'"


def _state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


def _choice(raw_version: str | None, raw_label: str | None) -> tuple[int | None, str | None]:
    label = (raw_label or "").strip()[:64] or None
    version = None
    if raw_version and raw_version.strip().isdigit() and len(raw_version.strip()) <= 10:
        version = int(raw_version)
        if not 1 <= version <= 2**31 - 1:
            version = None
    if label is not None:
        try:
            check_label(label)
        except InvalidInput as exc:
            raise UIError(400, "Bad label", str(exc)) from None
    return version, label


def _resolve(state: GatewayState, name: str, version: int | None, label: str | None) -> Any:
    registry = state.registry
    versions = prompt_versions(registry, name)
    labels = registry.labels.of("prompt", name)
    chosen: PromptVersionInfo
    if label is not None:
        chosen = registry.prompts.get(f"{name}@{label}")
    elif version is not None:
        chosen = registry.prompts.get(f"{name}@{version}")
    else:
        chosen = versions[-1]
    return chosen, list(reversed(versions)), labels


@router.get("/prompt-playground/{name:path}")
async def playground(request: Request, name: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    params = request.query_params
    version, label = _choice(params.get("version"), params.get("label"))
    chosen, versions, labels = await ui.call(_resolve, _state(request), name, version, label)
    model = chosen.config.get("model") if isinstance(chosen.config.get("model"), str) else ""
    response = ui.page(
        request, "playground.html", viewer=viewer, name=name, chosen=chosen, versions=versions,
        labels=labels, label=label or "", model=model,
        can_call=viewer.principal.has_scope("inference"),
    )  # fmt: skip
    response.headers["content-security-policy"] = PAGE_CSP
    return response


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


@router.post("/playground-run/{name:path}")
async def run(request: Request, name: str, ui: UIDep) -> Response:
    viewer = await ui.viewer(request)
    fields = await ui.form(request, viewer.session)
    version, label = _choice(fields.get("version"), fields.get("label"))
    if version is None and label is None:
        raise UIError(400, "Bad form", "Choose a version or a label to run.")
    variables = {
        key[4:]: value[:MAX_VALUE] for key, value in fields.items() if key.startswith("var:")
    }
    spec: dict[str, Any] = {"name": name, "variables": variables}
    spec["label" if label is not None else "version"] = label if label is not None else version
    body: dict[str, Any] = {
        "stream": True, "stream_options": {"include_usage": True}, "prompt": spec,
        "messages": [],
    }  # fmt: skip
    model = fields.get("model", "").strip()[:200]
    if model:
        body["model"] = model
    state = _state(request)
    host = request.headers.get("host", "localhost").encode("latin-1")
    scope, receive = in_process_chat(
        json.dumps(body).encode(), viewer.principal, request.receive,
        base=request.scope, headers=[(b"host", host)],
    )  # fmt: skip

    async def events() -> Any:
        started = time.perf_counter()
        try:
            inner = await state.proxy.handle(Request(scope, receive), "chat")
        except LockgateError as exc:
            yield _event("error", exc.to_dict())
            return
        if not isinstance(inner, RelayResponse):  # the client left, or an answer not streamed
            yield _event("error", {"error": {"message": "the gateway did not stream an answer"}})
            return
        queue: asyncio.Queue[Message] = asyncio.Queue()

        async def send(message: Message) -> None:
            await queue.put(message)

        task = asyncio.create_task(inner(scope, receive, send))
        try:
            while True:
                message = await queue.get()
                if message["type"] != "http.response.body":
                    continue
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body", False):
                    break
            await task
        finally:
            if not task.done():
                task.cancel()
        yield _event("summary", _summary(state, inner, started))

    headers = {**SECURITY_HEADERS, "x-accel-buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _summary(state: GatewayState, inner: RelayResponse, started: float) -> dict[str, Any]:
    call = inner.call
    deployment = call.target.deployment if call.target is not None else None
    cost = None
    if state.costs is not None and deployment is not None:
        cost = state.costs.cost(
            deployment.provider, deployment.model, call.input_tokens, call.output_tokens
        )
    context = call.span.get_span_context()
    return {
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "ttft_ms": round(call.ttft_s * 1000, 1) if call.ttft_s is not None else None,
        "input_tokens": call.input_tokens, "output_tokens": call.output_tokens,
        "cost_usd": cost, "request_id": call.request_id,
        "trace_id": format(context.trace_id, "032x") if context.trace_id else None,
        "model": deployment.model if deployment is not None else call.model,
        "prompt": f"{call.prompt_name}@{call.prompt_version}" if call.prompt_name else None,
    }  # fmt: skip
