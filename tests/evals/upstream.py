"""A tiny OpenAI-compatible upstream on loopback, for the eval tests and benchmark.

It answers arithmetic questions ("What is 3+4?") in the last user message: correctly,
unless the system message contains ``WRONG`` (the "regressed" prompt version), then off by
one. It counts requests, can sleep per request, can start failing after N requests, and
answers its next requests with the planned :class:`Fault` s first (an error status with
headers, or a stall). ``POST /v1/files`` stands for a call that is not inference.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_SUM = re.compile(r"(-?\d+)\s*\+\s*(-?\d+)")


@dataclass(frozen=True)
class Fault:
    """One planned answer: ``status`` (with ``headers``) instead of the real one, or, with
    ``stall``, the real one after that many seconds."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0


@dataclass
class UpstreamState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # monotonic time of each request
    delay: float = 0.0
    fail_after: int | None = None
    faults: list[Fault] = field(default_factory=list)  # answer the next requests with these
    judge_answer: str = '{"score": 4, "why": "mostly right"}'

    def reset(self) -> None:
        self.requests.clear()
        self.arrivals.clear()
        self.faults.clear()
        self.delay, self.fail_after = 0.0, None

    async def planned(self) -> JSONResponse | None:
        """The next planned fault's answer (None: answer normally, after any stall)."""
        self.arrivals.append(time.monotonic())
        if not self.faults:
            return None
        fault = self.faults.pop(0)
        if fault.stall:
            await asyncio.sleep(fault.stall)
        if fault.status is None:
            return None
        error = {"error": {"message": f"planned {fault.status}"}}
        return JSONResponse(error, status_code=fault.status, headers=fault.headers)

    @property
    def chat_calls(self) -> int:
        return sum(1 for r in self.requests if r.get("_path") == "chat")


def answer(messages: list[dict[str, Any]]) -> str:
    system = " ".join(m["content"] for m in messages if m["role"] == "system")
    user = [m["content"] for m in messages if m["role"] == "user"][-1]
    if "JUDGE" in system:
        return ""
    match = _SUM.search(user)
    if not match:
        return "I don't know"
    total = int(match[1]) + int(match[2])
    return str(total + 1 if "WRONG" in system else total)


def build_app(state: UpstreamState) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        state.requests.append({**body, "_path": "chat"})
        if (planned := await state.planned()) is not None:
            return planned
        if state.fail_after is not None and state.chat_calls > state.fail_after:
            return JSONResponse({"error": {"message": "planned failure"}}, status_code=500)
        if state.delay:
            await asyncio.sleep(state.delay)
        messages = body.get("messages") or []
        text = answer(messages)
        if any("JUDGE" in m.get("content", "") for m in messages if m["role"] == "system"):
            text = state.judge_answer
        n = len(state.requests)
        return JSONResponse(
            {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            },
            headers={"traceparent": f"00-{n:032x}-{n:016x}-01"},
        )

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        state.requests.append({**body, "_path": "embeddings"})
        data = []
        for i, text in enumerate(body["input"]):
            vec = [0.0] * 26
            for ch in str(text).lower():
                if "a" <= ch <= "z":
                    vec[ord(ch) - 97] += 1
            data.append({"object": "embedding", "index": i, "embedding": vec})
        return JSONResponse({"object": "list", "data": data, "model": body.get("model")})

    async def files(request: Request) -> JSONResponse:
        body = await request.json()
        state.requests.append({**body, "_path": "files"})
        if (planned := await state.planned()) is not None:
            return planned
        return JSONResponse({"id": f"file-{len(state.requests)}", "object": "file"})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/files", files, methods=["POST"]),
        ]
    )


class Upstream:
    """Runs the app with uvicorn in a thread on a free loopback port."""

    def __init__(self) -> None:
        self.state = UpstreamState()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock
        config = uvicorn.Config(
            build_app(self.state), log_level="error", lifespan="off", access_log=False, backlog=2048
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Upstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the stub upstream did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self._sock.close()
