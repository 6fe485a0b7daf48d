"""The chat targets: an OpenAI-compatible endpoint called over HTTP
(:class:`RemoteEndpoint`, the suite gives ``target.base_url``) or lockgate's own gateway
run in this process (:class:`InProcessGateway`, no ``base_url``). Both send the same requests
through :class:`~evals.client.TargetClient`; they differ only in how it reaches the server.

``prompt:NAME@LABEL`` and ``registry:NAME@LABEL`` are resolved to a version once, so a label
moving mid-run cannot mix versions; that version is part of the cache key and the run's
lineage. With ``render: client`` (the default) the prompt is rendered here and plain
``messages`` are sent, which any OpenAI-compatible server understands; with
``render: gateway`` the request carries lockgate's ``prompt`` object and the gateway renders.

The target's key comes with the suite (``target.api_key_env``, looked up when the suite is
loaded); a named variable that held no key stops the run here, before its first call.

Examples are answered concurrently (``concurrency`` at a time), each from the response cache
when it holds the request, else by one call. A call that fails for good (after the retries of
:mod:`evals.retry`) fails the run under ``on_error: fail`` — nothing queued is sent after
that — and marks only its example otherwise.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import httpx

from lockgate.evals.client import (
    IN_PROCESS_URL,
    CallFailed,
    TargetClient,
    TransportFactory,
    trace_id_of,
)
from lockgate.evals.errors import EvalError, SuiteInvalid, TargetFailed
from lockgate.evals.records import ExampleResult, digest
from lockgate.evals.retry import Backoff
from lockgate.evals.suite import LLMTarget
from lockgate.registry.records import LineageEdge, PromptVersionInfo
from lockgate.registry.templates import render_template, variables_of

if TYPE_CHECKING:
    from lockgate.evals.suite import Suite
    from lockgate.evals.target import Answering
    from lockgate.registry.registry import Registry

CHAT_PATH = "/chat/completions"


@dataclass(frozen=True)
class Connection:
    """How the client reaches the target and retries: the suite's call settings, the
    caller's extra headers, and the injected transport and randomness (tests)."""

    timeout: float
    retries: int
    concurrency: int
    headers: Mapping[str, str]
    timing: Backoff
    transport: TransportFactory | None = None  # None: aiohttp's pool (remote endpoints)
    rng: random.Random | None = None


@dataclass
class _ChatTarget:
    """An LLM target with versions pinned; builds one request body per dataset row."""

    spec: LLMTarget
    model: str
    variables: dict[str, str]  # template variable -> dataset column
    connection: Connection
    registry: Registry | None
    prompt: PromptVersionInfo | None = None
    lineage: list[LineageEdge] = field(default_factory=list)
    epochs: int = 1
    _client: TargetClient | None = field(default=None, init=False, repr=False)

    @property
    def identity(self) -> dict[str, Any]:
        """What the cache key and the resume file hang on."""
        prompt = None
        if self.prompt is not None:
            prompt = {"name": self.prompt.name, "version": self.prompt.version,
                      "hash": self.prompt.content_hash}  # fmt: skip
        messages = [m.model_dump() for m in self.spec.messages] if self.spec.messages else None
        return {
            "base_url": self.spec.base_url, "model": self.model, "prompt": prompt,
            "messages": messages, "params": self.spec.params, "render": self.spec.render,
            "variables": self.variables,
        }  # fmt: skip

    @property
    def name(self) -> str:
        if self.prompt is not None:
            return f"prompt:{self.prompt.name}@{self.prompt.version}"
        return self.model

    def required_columns(self) -> list[tuple[str, str]]:
        return [(col, f"target.variables.{var}") for var, col in self.variables.items()]

    def _reach(self) -> tuple[str, httpx.AsyncBaseTransport | None]:
        """The base URL to send to and the transport to send through."""
        raise NotImplementedError

    def open(self) -> TargetClient:
        if self._client is None:
            c = self.connection
            headers = dict(self.spec.headers) | dict(c.headers)
            if self.spec.api_key:
                headers.setdefault("authorization", f"Bearer {self.spec.api_key}")
            base_url, transport = self._reach()
            self._client = TargetClient(
                base_url, timeout=c.timeout, retries=c.retries, concurrency=c.concurrency,
                headers=headers, transport=transport, timing=c.timing, rng=c.rng,
            )  # fmt: skip
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def request(self, row: dict[str, Any]) -> dict[str, Any]:
        values = {var: row[col] for var, col in self.variables.items()}
        params = dict(self.spec.params)
        if self.prompt is not None and self.spec.render == "gateway":
            return {
                **params,
                "model": self.model,
                "prompt": {
                    "name": self.prompt.name,
                    "version": self.prompt.version,
                    "variables": values,
                },
            }
        if self.prompt is not None:
            assert self.registry is not None
            rendered = self.registry.prompts.render(self.prompt, values)
            config = {k: v for k, v in rendered.config.items() if k != "model"}
            messages = rendered.messages or [{"role": "user", "content": rendered.text or ""}]
            return {**config, **params, "model": self.model, "messages": messages}
        assert self.spec.messages is not None
        messages = [
            {"role": m.role, "content": render_template(m.content, values)}
            for m in self.spec.messages
        ]
        return {**params, "model": self.model, "messages": messages}

    async def answer(self, pending: Sequence[ExampleResult], answering: Answering) -> None:
        client = self.open()
        cache = answering.cache
        semaphore = asyncio.Semaphore(self.connection.concurrency)
        stopping = False  # set by the first fatal error, so queued examples are not sent

        async def one(sample: ExampleResult) -> None:
            nonlocal stopping
            async with semaphore:
                if stopping:
                    return
                body = self.request(sample.input)
                key = digest({"target": self.identity, "body": body, "epoch": sample.epoch})
                hit = cache.get(key) if cache is not None else None
                if hit is not None:
                    sample.cached = True
                    _fill(sample, hit)
                else:
                    try:
                        result = await client.call(CHAT_PATH, body)
                    except EvalError:
                        stopping = True
                        raise
                    except CallFailed as exc:
                        if answering.on_error == "fail":
                            stopping = True
                            raise TargetFailed(
                                f"example {sample.index} (epoch {sample.epoch}): {exc}; "
                                "rerun to resume, or set on_error: skip | score_zero",
                            ) from exc
                        sample.error = str(exc)
                    else:
                        answering.calls += 1
                        response = _response(
                            result.data, result.latency_ms, trace_id_of(result.headers)
                        )
                        _fill(sample, response)
                        if cache is not None:
                            cache.put(key, response)
                await answering.done(sample)

        try:
            async with asyncio.TaskGroup() as group:
                for sample in pending:
                    group.create_task(one(sample))
        except* Exception as excs:  # the first failure stops the run; finished rows are kept
            raise excs.exceptions[0] from None


@dataclass
class RemoteEndpoint(_ChatTarget):
    """A :class:`~evals.target.Target`: an OpenAI-compatible server at ``target.base_url``
    (lockgate's gateway, vLLM, OpenAI, …), reached through aiohttp's pool."""

    def _reach(self) -> tuple[str, httpx.AsyncBaseTransport | None]:
        assert self.spec.base_url is not None
        transport = self.connection.transport
        return self.spec.base_url, transport() if transport is not None else None


@dataclass
class InProcessGateway(_ChatTarget):
    """A :class:`~evals.target.Target`: lockgate's gateway app in this process, reached
    through the ``httpx`` transport the CLI root provides (no server, no port)."""

    def _reach(self) -> tuple[str, httpx.AsyncBaseTransport | None]:
        assert self.connection.transport is not None
        return IN_PROCESS_URL, self.connection.transport()


def resolve_chat_target(
    suite: Suite,
    registry: Registry | None,
    *,
    network: TransportFactory | None,
    in_process: TransportFactory | None,
    connection: Connection,
) -> RemoteEndpoint | InProcessGateway:
    """Pin the target's prompt and model versions; refuse a target whose key is missing,
    and one without ``base_url`` where no in-process gateway is available."""
    spec = suite.target
    assert isinstance(spec, LLMTarget)
    if spec.missing_key_env is not None:
        var = spec.missing_key_env
        raise SuiteInvalid(
            f"names the environment variable {var}, which is not set (or empty), so the "
            f"target would be called without its key; set {var} (in CI, from a secret) or "
            "remove target.api_key_env",
            param="target.api_key_env",
        )
    if spec.base_url is None and in_process is None:
        raise EvalError(
            "target.base_url is not set and no in-process gateway is available here; "
            "set target.base_url (e.g. http://127.0.0.1:4000/v1)",
            param="target.base_url",
        )
    lineage: list[LineageEdge] = []
    prompt = None
    if spec.prompt_ref is not None:
        if registry is None:
            raise EvalError(f"target {spec.model} needs a registry", param="target.model")
        prompt = registry.prompts.get(spec.prompt_ref)
        lineage.append(LineageEdge("prompt", f"{prompt.name}@{prompt.version}", "input"))
        template_vars = list(prompt.variables)
        model = str(spec.params.get("model") or prompt.config.get("model") or "")
        if spec.render == "gateway":
            model = f"prompt:{prompt.name}@{prompt.version}"
        if not model:
            raise SuiteInvalid(
                f"prompt {prompt.name}@{prompt.version} names no model in its config; "
                "set target.params.model",
                param="target.params.model",
            )
    else:
        assert spec.messages is not None
        template_vars = variables_of(m.content for m in spec.messages)
        model = spec.model
    if model.startswith("registry:"):
        if registry is None:
            raise EvalError(f"target model {model} needs a registry", param="target.model")
        version = registry.models.get(model.removeprefix("registry:"))
        model = f"registry:{version.name}@{version.version}"
        lineage.append(LineageEdge("model", f"{version.name}@{version.version}", "input"))
    unknown = sorted(set(spec.variables) - set(template_vars))
    if unknown:
        raise SuiteInvalid(
            f"maps {', '.join(unknown)}, which the template does not use "
            f"(it takes: {', '.join(template_vars) or 'none'})",
            param="target.variables",
        )
    variables = {var: spec.variables.get(var, var) for var in template_vars}
    if spec.base_url is not None:
        remote = replace(connection, transport=network)
        return RemoteEndpoint(spec, model, variables, remote, registry, prompt, lineage,
                              suite.epochs)  # fmt: skip
    local = replace(connection, transport=in_process)
    return InProcessGateway(spec, model, variables, local, registry, prompt, lineage,
                            suite.epochs)  # fmt: skip


def _response(data: dict[str, Any], latency_ms: float, trace_id: str | None) -> dict[str, Any]:
    try:
        message = data["choices"][0]["message"]
        output = message.get("content")
        if output is None and message.get("tool_calls"):
            output = message["tool_calls"]
    except (KeyError, IndexError, TypeError, AttributeError):
        output = None
    return {"output": output, "usage": data.get("usage") or {}, "latency_ms": latency_ms,
            "trace_id": trace_id, "model": data.get("model")}  # fmt: skip


def _fill(sample: ExampleResult, response: dict[str, Any]) -> None:
    sample.output = response.get("output")
    sample.usage = dict(response.get("usage") or {})
    sample.latency_ms = response.get("latency_ms")
    sample.trace_id = response.get("trace_id")
    if sample.output is None:
        sample.error = "the response has no choices[0].message.content"
