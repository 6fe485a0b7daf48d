"""A fake upstream on loopback speaking the OpenAI protocol (and Anthropic's ``/v1/messages``).

Behaviour is chosen by the model the gateway forwards:

- ``status-NNN``: an OpenAI-shaped error with status NNN; ``status-NNN-text``: a plain-text one
- ``slow-stream``: streams with 0.3 s between chunks
- anything else: a normal answer; non-streaming answers carry ``echo`` (the body received)

Every request's headers and body are kept in :attr:`Upstream.requests`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

CHUNK_DELAY_S = 0.3
USAGE = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


class Upstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/messages", self.anthropic_messages, methods=["POST"]),
            ]
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
        n = body.get("n") or 1
        if body.get("stream"):
            return StreamingResponse(self._chat_stream(body, n), media_type="text/event-stream")
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

    async def _chat_stream(self, body: dict[str, Any], n: int) -> AsyncIterator[bytes]:
        slow = body["model"] == "slow-stream"
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
        for piece in ("Hello", " world"):
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
        for i in range(n):
            yield _sse({**base, "choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            yield _sse({**base, "choices": [], "usage": USAGE})
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
