"""Loading litellm: slow (seconds), so in a background thread at start-up, or on first use.

litellm fetches its model cost map from the internet at import unless told not to; with
``gateway.litellm_local_cost_map`` (the default) it uses the copy bundled with the package.
That switch is litellm's own environment variable, set here just before the import.

Importing is not all of it: litellm's first call builds the pydantic schemas of its own
response types and of the openai SDK's (over a second here). :func:`warm_litellm` imports
litellm and makes one chat call, plain and streamed, through litellm's OpenAI-protocol path
to an in-process transport (``httpx.MockTransport``: no socket, nothing leaves the process),
so that the first call a client makes pays for neither.

litellm's TypedDicts mark items ``ReadOnly``, and pydantic notes that with a UserWarning each
time it builds a schema for one: 16 lines in a gateway's log at its first litellm call.
:func:`silence_readonly_notes` ignores exactly those (that message, that category, from
pydantic's schema generator), for the process: warning filters are process-wide, and the
notes come at litellm's first calls as well as at its import.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from typing import Any, cast

_LOCK = threading.Lock()
# "Items 'a', 'b' on TypedDict class 'X' are using …" / "Item 'a' on TypedDict class 'X' is using …"
READONLY_NOTE = r"Items? .* on TypedDict class .* (is|are) using the `ReadOnly` qualifier"
READONLY_NOTE_MODULE = r"pydantic\._internal\._generate_schema"
_WARM_UP_MODEL = "openai/lockgate-warm-up"
_WARM_UP_ANSWER = {
    "id": "chatcmpl-warm-up", "object": "chat.completion", "created": 0,
    "model": "lockgate-warm-up",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}  # fmt: skip
_WARM_UP_CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
]


def silence_readonly_notes() -> None:
    """Ignore pydantic's notes on ``ReadOnly`` TypedDict items (litellm's), and only those."""
    warnings.filterwarnings(
        "ignore", message=READONLY_NOTE, category=UserWarning, module=READONLY_NOTE_MODULE
    )


def load_litellm(local_cost_map: bool = True) -> Any:
    with _LOCK:
        if local_cost_map:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        silence_readonly_notes()
        import litellm

        litellm.suppress_debug_info = True
        return litellm


def warm_litellm(local_cost_map: bool = True) -> Any:
    """:func:`load_litellm`, then one chat call, plain and streamed, that never leaves the
    process: litellm's first call from a client then costs what the others do."""
    litellm = load_litellm(local_cost_map)
    import httpx
    import openai

    def answer(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("stream"):
            head = {"id": "chatcmpl-warm-up", "object": "chat.completion.chunk", "created": 0,
                    "model": "lockgate-warm-up"}  # fmt: skip
            events = [f"data: {json.dumps({**head, **chunk})}\n\n" for chunk in _WARM_UP_CHUNKS]
            body = "".join(events) + "data: [DONE]\n\n"
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=_WARM_UP_ANSWER)

    messages = [{"role": "user", "content": "warm-up"}]
    with httpx.Client(transport=httpx.MockTransport(answer)) as http:
        client = openai.OpenAI(  # openai 3 takes an httpx client as well as an httpx2 one
            api_key="warm-up", base_url="http://warm-up.invalid/v1",
            http_client=cast(Any, http), max_retries=0,
        )  # fmt: skip
        litellm.completion(model=_WARM_UP_MODEL, messages=messages, client=client).model_dump()
        for chunk in litellm.completion(
            model=_WARM_UP_MODEL, messages=messages, client=client, stream=True
        ):
            chunk.model_dump()
    return litellm
