"""A fake upstream on loopback speaking the OpenAI protocol (and Anthropic's ``/v1/messages``).

Behaviour is chosen by the model the gateway forwards:

- ``status-NNN``: an OpenAI-shaped error with status NNN; ``status-NNN-text``: a plain-text one
- ``slow-stream``: streams with 0.3 s between chunks
- ``fixed-…``: the same small answer (or stream) whatever else the body says (for fuzzing)
- anything else: a normal answer; non-streaming answers carry ``echo`` (the body received)

A test can also tell it to misbehave for one upstream model name: :meth:`Upstream.script`
queues :class:`Fault` s (one per request, then ``then`` for every later one): an error
status (with or without ``Retry-After``), a stall before the first byte or mid-stream, a
stream cut after some chunks, a malformed event, a stream without ``[DONE]``, an error that
quotes the API key it was sent. A TCP reset needs a socket: see ``servers.ResetServer``.

Every request's headers and body are kept in :attr:`Upstream.requests`; the models whose
request saw the client (the gateway) disconnect are in :attr:`Upstream.disconnects`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

CHUNK_DELAY_S = 0.3
USAGE = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


@dataclass(frozen=True)
class Fault:
    kind: str  # status | stall | cut | malformed | no_done | echo_key
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    after: int = 0  # content chunks sent before the stream fault (stall: 0 = before headers)
    finish: bool = False  # no_done: send the finish_reason chunk (only [DONE] is missing)


def status(code: int, retry_after: str | None = None) -> Fault:
    return Fault("status", status=code, retry_after=retry_after)


def stall(seconds: float, after: int = 0) -> Fault:
    return Fault("stall", seconds=seconds, after=after)


def cut(after: int) -> Fault:
    return Fault("cut", after=after)


def malformed(after: int) -> Fault:
    return Fault("malformed", after=after)


def no_done(finish: bool = False) -> Fault:
    return Fault("no_done", finish=finish)


ECHO_KEY = Fault("echo_key")
OK: Fault | None = None


class StreamCut(Exception):
    """Raised mid-stream: uvicorn then drops the connection with the body unfinished."""


class Upstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.disconnects: list[str] = []
        self._scripts: dict[str, deque[Fault | None]] = {}
        self._then: dict[str, Fault | None] = {}
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/messages", self.anthropic_messages, methods=["POST"]),
            ]
        )

    def script(self, model: str, *faults: Fault | None, then: Fault | None = None) -> None:
        """Requests for upstream ``model`` get ``faults`` one by one, then ``then`` each."""
        self._scripts[model] = deque(faults)
        self._then[model] = then

    def count(self, model: str) -> int:
        return sum(1 for r in self.requests if r["body"].get("model") == model)

    def _fault(self, model: str) -> Fault | None:
        queue = self._scripts.get(model)
        if queue:
            return queue.popleft()
        return self._then.get(model)

    async def _stall(self, request: Request, seconds: float, model: str) -> bool:
        """Wait; True when the client went away meanwhile."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await request.is_disconnected():
                self.disconnects.append(model)
                return True
            await asyncio.sleep(0.02)
        return False

    async def _misbehave(
        self, request: Request, fault: Fault | None, model: str
    ) -> Response | None:
        """The response for a fault that acts before the first byte (None: go on)."""
        if fault is None:
            return None
        if fault.kind == "status":
            headers = {"retry-after": fault.retry_after} if fault.retry_after else None
            error = {"message": f"upstream says {fault.status}", "type": "upstream_test",
                     "param": None, "code": f"e{fault.status}"}  # fmt: skip
            return JSONResponse({"error": error}, status_code=fault.status, headers=headers)
        if fault.kind == "echo_key":
            sent = request.headers.get("authorization", "")
            error = {"message": f"Incorrect API key provided: {sent}", "type": "invalid_key",
                     "param": None, "code": "invalid_api_key"}  # fmt: skip
            return JSONResponse({"error": error}, status_code=401)
        stalled = fault.kind == "stall" and fault.after == 0
        if stalled and await self._stall(request, fault.seconds, model):
            return Response(status_code=499)
        return None

    @staticmethod
    def _fixed(stream: bool) -> Response:
        base = {"id": "f", "created": 1, "model": "fixed"}
        if stream:
            delta = {"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}
            chunk = {**base, "object": "chat.completion.chunk", "choices": [delta]}
            return Response(_sse(chunk) + b"data: [DONE]\n\n", media_type="text/event-stream")
        message = {"role": "assistant", "content": "ok"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return JSONResponse(
            {**base, "object": "chat.completion", "choices": [choice], "usage": USAGE}
        )

    async def _receive(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        self.requests.append(
            {"path": request.url.path, "headers": dict(request.headers), "body": body}
        )
        return body

    @staticmethod
    def _failure(model: str) -> Response | None:
        if not model.startswith("status-"):
            return None
        code = int(model.split("-")[1])
        if model.endswith("-text"):
            return PlainTextResponse("upstream exploded", status_code=code)
        error = {
            "message": f"upstream says {code}",
            "type": "upstream_test",
            "param": None,
            "code": f"e{code}",
        }
        return JSONResponse({"error": error}, status_code=code)

    async def chat(self, request: Request) -> Response:
        body = await self._receive(request)
        model = body.get("model", "")
        failure = self._failure(model)
        if failure is not None:
            return failure
        if isinstance(model, str) and model.startswith("fixed"):
            return self._fixed(body.get("stream") is True)
        fault = self._fault(model)
        early = await self._misbehave(request, fault, model)
        if early is not None:
            return early
        n = body.get("n") or 1
        if body.get("stream"):
            return StreamingResponse(
                self._chat_stream(body, n, fault, request), media_type="text/event-stream"
            )
        if body.get("tools"):
            tool = body["tools"][0]["function"]["name"]
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": tool, "arguments": '{"city": "Paris"}'},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": "Hello world"}, "stop"
        return JSONResponse(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model + "-0001",
                "choices": [
                    {"index": i, "message": message, "finish_reason": finish, "logprobs": None}
                    for i in range(n)
                ],
                "usage": USAGE,
                "echo": body,
            }
        )

    async def _chat_stream(
        self,
        body: dict[str, Any],
        n: int,
        fault: Fault | None = None,
        request: Request | None = None,
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chat_events(body, n, fault, request):
                yield chunk
        except asyncio.CancelledError:
            self.disconnects.append(body["model"])
            raise

    async def _chat_events(
        self, body: dict[str, Any], n: int, fault: Fault | None, request: Request | None
    ) -> AsyncIterator[bytes]:
        slow = body["model"] == "slow-stream"
        kind = fault.kind if fault is not None else None
        base = {
            "id": "chatcmpl-stream",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": body["model"] + "-0001",
        }
        for i in range(n):
            yield _sse(
                {
                    **base,
                    "choices": [
                        {
                            "index": i,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    ],
                }
            )
        for sent, piece in enumerate(("Hello", " world")):
            if fault is not None and sent == fault.after:
                if kind == "cut":
                    raise StreamCut("the test told the stream to break")
                if kind == "malformed":
                    yield b'data: {"choices": [{"delta": {"content": "bro\n\n'
                if kind == "stall" and fault.after and request is not None:
                    await self._stall(request, fault.seconds, body["model"])
            if slow:
                await asyncio.sleep(CHUNK_DELAY_S)
            for i in range(n):
                yield _sse(
                    {
                        **base,
                        "choices": [
                            {"index": i, "delta": {"content": piece}, "finish_reason": None}
                        ],
                    }
                )
        if kind == "no_done" and fault is not None and not fault.finish:
            return
        for i in range(n):
            yield _sse({**base, "choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            yield _sse({**base, "choices": [], "usage": USAGE})
        if kind != "no_done":
            yield b"data: [DONE]\n\n"

    async def completions(self, request: Request) -> Response:
        body = await self._receive(request)
        failure = self._failure(body.get("model", ""))
        if failure is not None:
            return failure
        choice = {"index": 0, "text": "Hello world", "finish_reason": "length", "logprobs": None}
        return JSONResponse(
            {
                "id": "cmpl-stub",
                "object": "text_completion",
                "created": 1,
                "model": body["model"],
                "choices": [choice],
                "usage": USAGE,
                "echo": body,
            }
        )

    async def embeddings(self, request: Request) -> Response:
        body = await self._receive(request)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
            for i in range(len(inputs))
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": 4, "total_tokens": 4},
            }
        )

    # -- Anthropic's Messages API, for the litellm provider --------------------------------

    async def anthropic_messages(self, request: Request) -> Response:
        body = await self._receive(request)
        if request.headers.get("x-api-key") != "sk-ant-test":
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            return JSONResponse({"type": "error", "error": error}, status_code=401)
        if body.get("stream"):
            return StreamingResponse(self._anthropic_stream(body), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "msg_stub",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "Bonjour"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 3},
            }
        )

    @staticmethod
    async def _anthropic_stream(body: dict[str, Any]) -> AsyncIterator[bytes]:
        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        yield event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_stream",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 11, "output_tokens": 1},
                },
            },
        )
        yield event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        for piece in ("Bon", "jour"):
            yield event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        yield event("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 3},
            },
        )
        yield event("message_stop", {"type": "message_stop"})
