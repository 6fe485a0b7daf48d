"""The demo's stand-in model: a scripted OpenAI-compatible server on loopback.

It answers customer-support questions from a small FAQ, so the demo runs offline with no
API keys and gives the same answers every time. It follows its system prompt in one way
only: a prompt that asks it to "talk like a pirate" makes it forget the facts — the planted
regression the demo's eval gate catches.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

FAQ = {  # topic: (question, answer, the fact a correct answer contains)
    "order": ("Where is my order?", "Track your order under Account > Orders.", "Account > Orders"),
    "refund": ("How long does a refund take?", "Refunds reach your card within 5 business days.",
               "5 business days"),
    "password": ("I forgot my password.", "Reset your password from the sign-in page.",
                 "sign-in page"),
    "shipping": ("How much is shipping?", "Shipping is free on orders over 50 euros.", "50 euros"),
    "cancel": ("Can I cancel my subscription?", "Cancel any time under Account > Plan.",
               "Account > Plan"),
    "invoice": ("Where do I find my invoice?", "Invoices are under Account > Billing.",
                "Account > Billing"),
    "warranty": ("How long is the warranty?", "Every device has a 2-year warranty.", "2-year"),
    "open": ("When is support open?", "Support is open 9:00-18:00, Monday to Friday.",
              "9:00-18:00"),
}  # fmt: skip
PHRASINGS = [
    "{q}",
    "Hi! {q}",
    "Quick question: {q}",
    "{q} Thanks.",
    "Hello, {q}",
    "Please help. {q}",
]
MODEL = "lockgate-demo-faq"


def dataset_rows() -> list[dict[str, str]]:
    """The demo's eval set: every FAQ question in several phrasings, with the expected fact."""
    return [
        {"product": "Acme Cloud", "question": p.format(q=question), "fact": fact}
        for question, _, fact in FAQ.values()
        for p in PHRASINGS
    ]


def answer(messages: list[dict[str, Any]]) -> str:
    system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
    user = str(messages[-1].get("content", "")) if messages else ""
    topic = next((k for k in FAQ if k in user.lower()), None)
    if "pirate" in system.lower():
        return "Arr, ask me again when the tide turns, matey!"
    if topic is None:
        return "I can help with orders, refunds, passwords, shipping, plans, invoices and more."
    return FAQ[topic][1]


def _usage(messages: list[dict[str, Any]], text: str) -> dict[str, int]:
    given = sum(len(str(m.get("content", "")).split()) for m in messages)
    taken = len(text.split())
    return {"prompt_tokens": given, "completion_tokens": taken, "total_tokens": given + taken}


async def chat(request: Request) -> Any:
    body = await request.json()
    messages = body.get("messages") or []
    text = answer(messages)
    created = int(time.time())
    if not body.get("stream"):
        return JSONResponse({
            "id": f"chatcmpl-demo-{created}", "object": "chat.completion", "created": created,
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": _usage(messages, text),
        })  # fmt: skip

    async def events() -> AsyncIterator[bytes]:
        base = {"id": f"chatcmpl-demo-{created}", "object": "chat.completion.chunk",
                "created": created, "model": MODEL}  # fmt: skip
        for i, word in enumerate(text.split(" ")):
            delta = {"content": ("" if i == 0 else " ") + word}
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield b"data: " + json.dumps(done).encode() + b"\n\n"
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {**base, "choices": [], "usage": _usage(messages, text)}
            yield b"data: " + json.dumps(usage).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


def build_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )
