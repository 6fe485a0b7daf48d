"""A fast OpenAI-compatible stub upstream for the gateway benchmark (pure ASGI, one process).

Answers every ``POST /v1/chat/completions`` with the same small completion (as an SSE stream
when the body asks for ``"stream":true``), and accepts
OTLP/HTTP ``POST /v1/traces`` (so the gateway's exporter has somewhere to send spans).

    .venv/bin/python tests/benchmarks/gateway_stub.py --port 4101
"""

from __future__ import annotations

import argparse
import json
from typing import Any

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello world"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    }
).encode()
JSON = [(b"content-type", b"application/json")]
_CHUNK = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
          "model": "bench-model"}  # fmt: skip
STREAM = (
    b"".join(
        b"data: " + json.dumps({**_CHUNK, **event}).encode() + b"\n\n"
        for event in (
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            {"choices": [{"index": 0, "delta": {"content": "Hello"}}]},
            {"choices": [{"index": 0, "delta": {"content": " world"}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {
                "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
            },
        )
    )
    + b"data: [DONE]\n\n"
)
SSE = [(b"content-type", b"text/event-stream")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more, received = True, b""
    while more:  # drain the request body
        message = await receive()
        received += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"].endswith("/chat/completions"):
        streamed = b'"stream":true' in received or b'"stream": true' in received
        body, headers = (STREAM, SSE) if streamed else (COMPLETION, JSON)
    else:  # /v1/traces and anything else: an empty success
        body, headers = b"", [(b"content-type", b"application/x-protobuf")]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=4101)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="auto",
        http="auto",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
