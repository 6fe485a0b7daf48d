"""Relaying an upstream SSE stream to the client once its first chunk has arrived.

The stream ends one of four ways, and the call record says which:

- complete: ``data: [DONE]`` arrived (or the upstream closed after a ``finish_reason``;
  ``[DONE]`` is then added for the client) → 200;
- broken: the connection failed, the attempt's ``timeouts.total_s`` ran out, an event was
  not JSON, or the upstream closed before finishing → a final ``data: {"error": …}`` event
  (the openai SDK raises it as ``APIError``), recorded as 502/504 with ``error_type``
  ``stream_interrupted``, ``upstream_timeout``, ``stream_malformed`` or ``stream_incomplete``;
- the client went away → the upstream request is closed, recorded as 499 ``client_closed``;
  a client that closes once the upstream's ``[DONE]`` was relayed got the whole answer: 200.

Never a silent 200 with a truncated answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from lockgate.gateway.dispatch import OpenStream
from lockgate.gateway.errors import StreamBroken, UpstreamTimeout
from lockgate.gateway.spans import Call
from lockgate.gateway.streaming import DONE, StreamScan
from lockgate.registry.errors import LockgateError

CLIENT_CLOSED = 499
Finish = Callable[[Call, int, BaseException | None, StreamScan], None]


def error_event(exc: LockgateError) -> bytes:
    return b"\ndata: " + orjson.dumps(exc.to_dict()) + b"\n\n"


class RelayResponse(StreamingResponse):
    """A streaming response that finishes its call however the response ends: a relay
    abandoned mid-way (the client left) is closed at once, and one that never started (the
    client left before the first byte) still closes the upstream and finishes the call."""

    def __init__(
        self,
        call: Call,
        opened: OpenStream,
        scan: StreamScan,
        finish: Finish,
        headers: dict[str, str],
    ) -> None:
        self._relay = relay(call, opened, scan, finish)
        self._call, self._opened, self._scan, self._finish = call, opened, scan, finish
        super().__init__(self._relay, media_type="text/event-stream", headers=headers)

    @property
    def call(self) -> Call:
        """The call this response relays (its figures are final once the stream ends)."""
        return self._call

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._relay.aclose()
            if not self._call.finished:
                await self._opened.chunks.aclose()
                self._finish(self._call, CLIENT_CLOSED, None, self._scan)


async def relay(
    call: Call, opened: OpenStream, scan: StreamScan, finish: Finish
) -> AsyncGenerator[bytes, None]:
    """Yield the stream to the client; ``finish`` is called exactly once at the end."""
    chunks = opened.chunks
    status: int = 200
    error: LockgateError | None = None
    try:
        chunk: bytes | None = opened.first
        while chunk is not None:
            if call.ttft_s is None and chunk:
                call.ttft_s = time.perf_counter() - call.started
            out = scan.feed(chunk)
            if out:
                yield out
            if scan.malformed is not None:
                raise StreamBroken(
                    f"the upstream sent an event that is not JSON: {scan.malformed[:60]!r}",
                    code="stream_malformed",
                )
            try:
                async with asyncio.timeout_at(opened.deadline):
                    chunk = await anext(chunks, None)
            except TimeoutError as exc:
                raise UpstreamTimeout("the upstream stream ran past timeouts.total_s") from exc
        tail = scan.finish()
        if tail:
            yield tail
        if scan.malformed is not None:
            raise StreamBroken("the upstream's last event is not JSON", code="stream_malformed")
        if not scan.done:
            if not scan.finish_reasons:
                raise StreamBroken(
                    "the upstream stream ended before the answer finished (no finish_reason, "
                    "no [DONE])",
                    code="stream_incomplete",
                )
            yield DONE
    except StreamBroken as exc:
        status, error = exc.status_code, exc
        yield error_event(exc)
    except UpstreamTimeout as exc:
        status, error = exc.status_code, exc
        yield error_event(exc)
    except LockgateError as exc:  # the connection failed mid-way
        error = StreamBroken(
            f"the upstream stream broke after it started: {exc.message}", code="stream_interrupted"
        )
        status = error.status_code
        yield error_event(error)
    except BaseException:  # cancelled: the client went away, or closed on the last event
        status = 200 if scan.done else CLIENT_CLOSED
        raise
    finally:
        await chunks.aclose()
        finish(call, status, error, scan)
