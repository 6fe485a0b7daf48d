"""The ``local`` provider: registry ``hf`` and ``lora`` versions served in process with
transformers + PEFT.

A model string ``registry:NAME@LABEL`` naming an ``hf`` or ``lora`` version routes here, and
so does ``ft:JOB_ID:ckpt-step-N``, a fine-tuning job's stored checkpoint (its adapter).
Each base model is fetched from the artifact store (hash-verified) and loaded once, on
first use; every ``lora`` version on that base is attached to the same loaded weights as a
named adapter, so many adapters share one copy of the base. Generation runs in a worker
thread (one at a time per base: switching adapters is model-global state) and streams
tokens as they are produced. A caller that goes away (client disconnect, timeout) stops its
generation after the current token, so it does not hold the base for the next request.

This is for small models and for trying a fresh adapter; production multi-LoRA serving is
vLLM's job (``--enable-lora``) behind the OpenAI-compatible fast path — see
docs/finetune.md.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from lockgate.gateway.errors import InvalidRequest, UpstreamError
from lockgate.gateway.providers import (
    ProviderContext,
    UpstreamCall,
    UpstreamResponse,
    register_provider,
)
from lockgate.registry.errors import LockgateError, NotFound
from lockgate.registry.records import ModelVersionInfo

if TYPE_CHECKING:
    from lockgate.finetune.inference import TokenCounts

REGISTRY = "registry:"


class _Loaded:
    __slots__ = ("adapter", "base")

    def __init__(self, base: Any, adapter: str | None) -> None:
        self.base = base
        self.adapter = adapter


@register_provider("local")
class LocalProvider:
    def __init__(self, context: ProviderContext) -> None:
        self._registry = context.registry
        self._dir = Path(context.settings.local.cache_dir or (
            context.registry.settings.data_dir / "models" if context.registry else "models"
        ))  # fmt: skip
        self._bases: dict[str, Any] = {}
        self._models: dict[str, _Loaded] = {}
        self._lock = asyncio.Lock()

    async def _load(self, ref: str) -> _Loaded:
        loaded = self._models.get(ref)
        if loaded is not None:
            return loaded
        async with self._lock:  # one load at a time; loads are slow and memory-hungry
            loaded = self._models.get(ref)
            if loaded is None:
                loaded = await asyncio.to_thread(self._load_sync, ref)
                self._models[ref] = loaded
            return loaded

    def _base(self, key: str | None, path: Path) -> Any:
        from lockgate.finetune.inference import load_base

        key = key or str(path.resolve())
        if key not in self._bases:
            self._bases[key] = load_base(path)
        return self._bases[key]

    def _fetch(self, info: ModelVersionInfo) -> Path:
        assert self._registry is not None and info.artifact_digest is not None
        dest: Path = self._dir / info.artifact_digest.replace(":", "-")
        if not (dest / ".complete").exists():
            self._registry.models.fetch(f"{info.name}@{info.version}", dest)
            (dest / ".complete").touch()
        return dest

    def _load_sync(self, ref: str) -> _Loaded:
        from lockgate.finetune.inference import CHECKPOINT_PREFIX, attach_adapter

        if self._registry is None:
            raise InvalidRequest("the local provider needs the registry", param="model")
        if ref.startswith(CHECKPOINT_PREFIX):
            return self._load_checkpoint(ref)
        info = self._registry.models.get(ref)
        if info.flavor == "hf":
            return _Loaded(self._base(info.artifact_digest, self._fetch(info)), None)
        if info.flavor != "lora":
            raise InvalidRequest(f"{ref} is a {info.flavor!r} model, not hf or lora", param="model")
        base = self._base_of(str(info.spec["base_model"]), ref)
        attach_adapter(base, self._fetch(info), ref)
        return _Loaded(base, ref)

    def _base_of(self, base_ref: str, ref: str) -> Any:
        """The loaded base an adapter was trained on, as its spec names it."""
        assert self._registry is not None
        if base_ref.startswith(REGISTRY):
            base_info = self._registry.models.get(base_ref[len(REGISTRY) :])
            return self._base(base_info.artifact_digest, self._fetch(base_info))
        path = Path(base_ref)
        if not path.is_dir():
            raise NotFound(f"the base model {base_ref!r} of {ref} is not a local directory")
        return self._base(str(path.resolve()), path)

    def _load_checkpoint(self, ref: str) -> _Loaded:
        """``ft:JOB_ID:ckpt-step-N``: the adapter of a job's stored checkpoint (fetched from
        the artifact store, hash-verified) on the job's base model."""
        from lockgate.finetune.inference import attach_adapter, find_checkpoint

        assert self._registry is not None
        checkpoint = find_checkpoint(self._registry, ref)
        dest: Path = self._dir / checkpoint.digest.replace(":", "-")
        if not (dest / ".complete").exists():
            self._registry.artifacts.fetch_dir(checkpoint.digest, dest)
            (dest / ".complete").touch()
        base = self._base_of(checkpoint.base_model, ref)
        attach_adapter(base, dest / "adapter", checkpoint.adapter_name)
        return _Loaded(base, checkpoint.adapter_name)

    @staticmethod
    def _request(call: UpstreamCall) -> tuple[list[dict[str, Any]], int, float]:
        if call.operation != "chat":
            raise InvalidRequest("local models serve /v1/chat/completions only", param="model")
        messages = call.body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages must be a non-empty list", param="messages")
        limit = call.body.get("max_completion_tokens") or call.body.get("max_tokens") or 64
        temperature = call.body.get("temperature") or 0.0
        if not isinstance(limit, int) or not 1 <= limit <= 4096:
            raise InvalidRequest("max_tokens must be an integer from 1 to 4096", param="max_tokens")
        if not isinstance(temperature, int | float) or temperature < 0:
            raise InvalidRequest("temperature must be a number >= 0", param="temperature")
        return messages, limit, float(temperature)

    @staticmethod
    def _usage(counts: TokenCounts) -> dict[str, int]:
        given, taken = counts.prompt, counts.completion
        return {"prompt_tokens": given, "completion_tokens": taken, "total_tokens": given + taken}

    async def complete(self, call: UpstreamCall) -> UpstreamResponse:
        from lockgate.finetune.inference import TokenCounts, generate

        messages, limit, temperature = self._request(call)
        loaded = await self._loaded(call)
        stop, counts = threading.Event(), TokenCounts()
        try:
            text = await asyncio.to_thread(
                generate, loaded.base, messages, adapter=loaded.adapter,
                max_new_tokens=limit, temperature=temperature, stop=stop, counts=counts,
            )  # fmt: skip
            usage = self._usage(counts)
        except LockgateError:
            raise
        except Exception as exc:  # boundary: a model failure becomes a 502
            raise UpstreamError(502, f"local model {call.deployment.model} failed: {exc}") from exc
        finally:
            stop.set()  # cancelled while generating: the thread ends after its current token
        finish = "length" if usage["completion_tokens"] >= limit else "stop"
        data = {
            "id": f"chatcmpl-local-{time.time_ns()}", "object": "chat.completion",
            "created": int(time.time()), "model": call.deployment.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish}],
            "usage": usage,
        }  # fmt: skip
        return UpstreamResponse(orjson.dumps(data), data)

    async def _loaded(self, call: UpstreamCall) -> _Loaded:
        try:
            return await self._load(call.deployment.model)
        except LockgateError:
            raise
        except Exception as exc:  # boundary: a model that will not load is the upstream's fault
            raise UpstreamError(
                502, f"local model {call.deployment.model} could not be loaded: {exc}"
            ) from exc

    async def stream(self, call: UpstreamCall) -> AsyncGenerator[bytes, None]:
        messages, limit, temperature = self._request(call)
        loaded = await self._loaded(call)
        return self._events(call, loaded, messages, limit, temperature)

    async def _events(
        self, call: UpstreamCall, loaded: _Loaded, messages: list[dict[str, Any]], limit: int,
        temperature: float,
    ) -> AsyncGenerator[bytes, None]:  # fmt: skip
        from lockgate.finetune.inference import TokenCounts, stream

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        stop, counts = threading.Event(), TokenCounts()

        def produce() -> None:
            try:
                for piece in stream(loaded.base, messages, adapter=loaded.adapter,
                                    max_new_tokens=limit, temperature=temperature,
                                    stop=stop, counts=counts):  # fmt: skip
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
            except BaseException as exc:  # handed to the event loop, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        producer = asyncio.create_task(asyncio.to_thread(produce))
        base = {"id": f"chatcmpl-local-{time.time_ns()}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": call.deployment.model}  # fmt: skip
        pieces: list[str] = []
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise UpstreamError(502, f"local model {call.deployment.model} failed: {item}")
                if not item:
                    continue
                pieces.append(item)
                delta = {"role": "assistant", "content": item} if len(pieces) == 1 else {
                    "content": item}  # fmt: skip
                chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            usage = self._usage(counts)
            finish = "length" if usage["completion_tokens"] >= limit else "stop"
            last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
            yield b"data: " + orjson.dumps(last) + b"\n\n"
            options = call.body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                yield b"data: " + orjson.dumps({**base, "choices": [], "usage": usage}) + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            stop.set()  # the client went away mid-stream: end the generation, free the base
            await producer

    async def aclose(self) -> None:
        self._models.clear()
        self._bases.clear()
