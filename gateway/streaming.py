"""Watching an OpenAI SSE stream as it is relayed, at the cost of a few byte searches.

Bytes are passed on as they arrive, cut only at the last line break so that an event
split across chunks is scanned whole. A line is parsed only when it carries what tracing
needs: the first event (response id and model), a non-null ``finish_reason``, or a
``usage`` object. When the gateway asked the upstream for usage on the client's behalf,
the usage-only event is removed again, so the client gets the stream it asked for.

It also judges the stream's integrity, cheaply: every ``data:`` payload must be ``[DONE]``
or look like one JSON object (``{`` … ``}``); the first that does not is ``malformed`` and
nothing from it on is passed. ``done`` says whether ``data: [DONE]`` arrived.
"""

from __future__ import annotations

from typing import Any

import orjson

_MARKERS = (b'"finish_reason":"', b'"finish_reason": "', b'"usage":{', b'"usage": {')
DONE = b"data: [DONE]\n\n"


class StreamScan:
    __slots__ = (
        "capture",
        "carry",
        "done",
        "finish_reasons",
        "malformed",
        "response_id",
        "response_model",
        "strip_usage",
        "texts",
        "usage",
    )

    def __init__(self, *, strip_usage: bool = False, capture: bool = False) -> None:
        self.carry = b""
        self.strip_usage = strip_usage
        self.capture = capture
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.texts: dict[int, list[str]] = {}
        self.done = False
        self.malformed: bytes | None = None

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on now (complete lines only)."""
        data = self.carry + chunk if self.carry else chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            self.carry = data
            return b""
        out, self.carry = (data, b"") if cut == len(data) else (data[:cut], data[cut:])
        return self._scan(out)

    def finish(self) -> bytes:
        """Whatever is left after the last line break (a stream that does not end in one)."""
        out, self.carry = self.carry, b""
        return self._scan(out) if out else out

    def _scan(self, out: bytes) -> bytes:
        lines = out.split(b"\n")
        changed = False
        observe_all = self.response_id is None or self.capture
        for i, line in enumerate(lines):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if not (payload.startswith(b"{") and payload.endswith(b"}")):
                if payload == b"[DONE]":
                    self.done = True
                    continue
                self.malformed = payload[:100]
                good = b"\n".join(lines[:i])
                return good + b"\n" if good else b""
            if not (observe_all or any(m in line for m in _MARKERS)):
                continue
            try:
                event = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                continue  # [DONE] or something that is not ours to judge
            if not isinstance(event, dict):
                continue
            if self._observe(event):
                lines[i] = b""
                changed = True
        return b"\n".join(lines) if changed else out

    def _observe(self, event: dict[str, Any]) -> bool:
        """Take what tracing needs; True when the event is to be removed."""
        if self.response_id is None:
            self.response_id = event.get("id") or ""
            self.response_model = event.get("model")
        choices = event.get("choices") or []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            reason = choice.get("finish_reason")
            if reason:
                self.finish_reasons.append(reason)
            if self.capture:
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                if isinstance(text, str):
                    self.texts.setdefault(int(choice.get("index") or 0), []).append(text)
        usage = event.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            return self.strip_usage and not choices
        return False
