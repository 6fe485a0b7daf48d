"""LLM judges on a sampled share of live traffic (``gateway.judges``), off the request path.

```yaml
gateway:
  judges:
    helpfulness:                        # the score's name
      prompt: judge-helpful@production  # the rubric: a registry prompt, as llm_judge takes
      model: judge                      # the route that answers it
      sample_rate: 0.05                 # share of successful calls judged
      routes: [support-bot]             # whose calls (default: every route)
      scale: [1, 5]                     # the rubric's score range, mapped to 0-1
```

**Sampling.** Once a chat or completions call's route is known, each judge draws whether it
samples the call (:meth:`Judges.pick`); a judge's own calls are never sampled. A sampled
stream keeps its answer's text as it passes. Only a call that succeeded is judged.

**Judging.** Each judgment is a task of its own (:meth:`Judges.submit`): the evals'
``llm_judge`` scorer (:class:`~lockgate.evals.scorers.model_based.LLMJudge`) renders the
rubric with ``input`` (the call's messages as ``role: text`` lines, or its prompt; the end is
kept), ``question`` (the last user message) and ``output`` (the answer), each cut to
``max_chars``, and sends it to ``model`` through the gateway's own proxy, in process: the
judge's call has its route, retries, fallbacks and circuit breakers, a span in the judged
call's trace and a call record of its own (request id ``judge:NAME:<judged request id>``),
made key-less as the principal ``judge:NAME``. The score (mapped to 0-1 by ``scale``), the
score as the judge gave it, or why there is none (the judge's call failed, its answer held no
score, the rubric is missing; an upstream key quoted in it is redacted) goes to the
registry's ``call_scores`` with the judged call's time, request and trace id, route, model
and prompt, written in batches off the event loop.
The conversation and the answer are never stored; only the scores are. The rubric is looked
up on first use and again after ``gateway.prompt_cache_ttl_s``, so a moved label is followed.

**Bounds.** At most ``max_pending`` judgments of a judge in flight, each holding at most
three texts of ``max_chars``; a call sampled beyond that is not judged. At most
:data:`MAX_UNWRITTEN` scores wait for the registry. Counted in
``lockgate_judgments_total{judge, outcome}`` (``scored``, ``no_score``, ``failed``,
``busy``) and ``lockgate_judge_scores_dropped_total{reason}`` (``write_failed``,
``queue_full``, ``shutdown``). At shutdown the judgments in flight are cancelled (counted as
``shutdown``) and the finished ones written.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from lockgate.gateway.auth import Principal
from lockgate.gateway.errors import SecretScrubber
from lockgate.gateway.metrics import Metrics
from lockgate.gateway.proxy import SCOPE_JUDGE, in_process_chat
from lockgate.gateway.settings import GatewaySettings, JudgeSettings
from lockgate.gateway.spans import Call
from lockgate.gateway.streaming import StreamScan
from lockgate.gateway.tracing import trace_headers
from lockgate.registry.calls import NewScore
from lockgate.registry.errors import LockgateError

if TYPE_CHECKING:
    from lockgate.evals.scorers.model_based import LLMJudge
    from lockgate.registry.registry import Registry

log = logging.getLogger(__name__)
MAX_UNWRITTEN = 10_000  # finished scores waiting for the registry; beyond: dropped, counted
MAX_ERROR = 200  # characters of a stored error, as call_scores keeps it
JUDGED_OPERATIONS = frozenset({"chat", "text_completion"})
# rubric variable -> what the judged call gives (llm_judge's ``variables``)
VARIABLES = {"input": "conversation", "question": "question", "output": "output"}
Handle = Callable[[Request, Any], Awaitable[Response]]


class JudgeFailed(Exception):
    """The judge's call did not give an answer to score."""


@dataclass
class _Judge:
    name: str
    settings: JudgeSettings
    scorer: LLMJudge
    fresh_until: float = 0.0  # the rubric is looked up again after this (monotonic)
    pending: int = 0


class Judges:
    def __init__(
        self,
        settings: GatewaySettings,
        registry: Registry,
        metrics: Metrics,
        *,
        rng: random.Random | None = None,
    ) -> None:
        from lockgate.evals.scorers.model_based import LLMJudge

        self._registry = registry
        self._scrub = SecretScrubber.of(settings)
        self._ttl = settings.prompt_cache_ttl_s
        self._rng = rng or random.Random()
        self._judges = {
            name: _Judge(name, judge, LLMJudge(name, _scorer_params(judge), None))
            for name, judge in settings.judges.items()
        }
        self._handle: Handle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unwritten: list[NewScore] = []
        self._writer: asyncio.Task[None] | None = None
        self._last_warning = 0.0
        self._judgments = metrics.judgments
        self._dropped = metrics.judge_scores_dropped

    @property
    def in_flight(self) -> int:
        """Judgments running plus scores not yet written (0: everything is stored)."""
        return len(self._tasks) + len(self._unwritten) + (self._writer is not None)

    def attach(self, handle: Handle) -> None:
        """The proxy's ``handle``: the judges' own calls go through it."""
        self._handle = handle

    def pick(self, operation: str, route: str) -> tuple[str, ...]:
        """The judges that sample this call (one draw each)."""
        if operation not in JUDGED_OPERATIONS:
            return ()
        chosen: tuple[str, ...] = ()
        for judge in self._judges.values():
            settings = judge.settings
            if settings.routes and route not in settings.routes:
                continue
            if self._rng.random() < settings.sample_rate:
                chosen += (judge.name,)
        return chosen

    def submit(self, call: Call, sent: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        """Judge a sampled call that answered ``data`` (non-streaming) to ``sent``."""
        self._start(call, sent, answer_text(data))

    def submit_stream(self, call: Call, scan: StreamScan) -> None:
        """Judge a sampled stream that completed (its text kept by ``scan``)."""
        sent = call.judge_input if isinstance(call.judge_input, Mapping) else {}
        self._start(call, sent, "".join(scan.texts.get(0, ())))

    def _start(self, call: Call, sent: Mapping[str, Any], output: str) -> None:
        handle = self._handle
        if handle is None:
            return
        base = _subject(call)
        headers = trace_headers(call.span)
        for name in call.judges:
            judge = self._judges[name]
            if judge.pending >= judge.settings.max_pending:
                self._judgments.labels(name, "busy").inc()
                continue
            judge.pending += 1
            texts = conversation(sent, judge.settings.max_chars)
            sample = _sample(call.request_id, texts, output[: judge.settings.max_chars])
            caller = InProcessCaller(handle, name, call.request_id, headers)
            task = asyncio.get_running_loop().create_task(self._judge(judge, base, sample, caller))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _judge(self, judge: _Judge, base: NewScore, sample: Any, caller: Any) -> None:
        from lockgate.evals.scorers import ScoreContext

        score = replace(base, judge=judge.name)
        try:
            await self._prepare(judge)
            score = replace(score, rubric=_rubric(judge))
            result = await judge.scorer.score(sample, ScoreContext(caller, self._registry))
            detail = result.detail or {}
            if result.value is None:
                outcome = "no_score"
                score = replace(score, error=str(detail.get("error") or "no score")[:MAX_ERROR])
            else:
                outcome = "scored"
                raw = detail.get("raw_score")
                given = float(raw) if isinstance(raw, int | float) else None
                score = replace(score, score=result.value, raw_score=given)
        except asyncio.CancelledError:
            self._dropped.labels("shutdown").inc()
            raise
        except Exception as exc:  # boundary: a failed judgment is recorded, never raised
            outcome = "failed"
            if isinstance(exc, LockgateError):  # the judge's call, or the rubric's look-up
                error = f"{exc.status_code} {exc.code or type(exc).__name__}: {exc.message}"
            else:
                error = f"{type(exc).__name__}: {exc}"
            error = self._scrub(error.encode()).decode(errors="replace")  # a quoted key
            score = replace(score, error=error[:MAX_ERROR])
            self._warn(judge.name, score.error or "")
        finally:
            judge.pending -= 1
        self._judgments.labels(judge.name, outcome).inc()
        self._store(score)

    async def _prepare(self, judge: _Judge) -> None:
        """Look the rubric up (off the event loop) when it was not, or has gone stale."""
        from lockgate.evals.scorers import ScoreContext

        now = time.monotonic()
        if now < judge.fresh_until:
            return
        await anyio.to_thread.run_sync(judge.scorer.prepare, ScoreContext(None, self._registry))
        judge.fresh_until = now + self._ttl

    def _store(self, score: NewScore) -> None:
        if len(self._unwritten) >= MAX_UNWRITTEN:
            self._dropped.labels("queue_full").inc()
            return
        self._unwritten.append(score)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        """Write what has gathered, in batches, until nothing is left (one writer at a time:
        scores finished during a write go in the next batch)."""
        try:
            while self._unwritten:
                batch, self._unwritten = self._unwritten, []
                try:
                    await anyio.to_thread.run_sync(self._registry.calls.record_scores, batch)
                except Exception:  # boundary: the registry may be slow or down; calls go on
                    self._dropped.labels("write_failed").inc(len(batch))
                    self._warn("*", f"could not write {len(batch)} judge scores", exc_info=True)
        finally:
            self._writer = None

    def _warn(self, judge: str, message: str, *, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:
            self._last_warning = now
            log.warning("judge %s: %s", judge, message, exc_info=exc_info)

    async def aclose(self) -> None:
        """Cancel the judgments in flight, then write the finished scores."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._unwritten:
            await self._write()


class InProcessCaller:
    """The llm_judge scorer's :class:`~lockgate.evals.scorers.Caller`: a chat request handed
    to the gateway's proxy in process, as the judge ``judge:NAME`` (which no client can be)."""

    base_url = "gateway:in-process"

    def __init__(
        self, handle: Handle, judge: str, judged_request: str, headers: Mapping[str, str]
    ) -> None:
        self._handle = handle
        self._judge = judge
        self._headers = [
            (b"host", b"localhost"),
            (b"x-request-id", f"judge:{judge}:{judged_request}"[:64].encode("latin-1", "replace")),
            *((k.encode(), v.encode()) for k, v in headers.items()),
        ]
        self._principal = Principal(None, f"judge:{judge}", frozenset({"inference"}))

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path != "/chat/completions":
            raise JudgeFailed(f"a judge calls /chat/completions, not {path}")
        body = {k: v for k, v in body.items() if k != "stream_options"}
        body["stream"] = False
        scope, receive = in_process_chat(
            orjson.dumps(body), self._principal, _never, headers=self._headers,
            extra={SCOPE_JUDGE: self._judge},
        )  # fmt: skip
        response = await self._handle(Request(scope, receive), "chat")
        if response.status_code != 200:
            raise JudgeFailed(f"the judge's call ended with status {response.status_code}")
        try:
            data = orjson.loads(bytes(response.body))
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise JudgeFailed("the judge's answer is not a JSON object") from exc
        if not isinstance(data, dict):
            raise JudgeFailed("the judge's answer is not a JSON object")
        return data


async def _never() -> Message:
    """A judge's call never disconnects: it is cancelled with the judgment."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _scorer_params(judge: JudgeSettings) -> dict[str, Any]:
    return {"prompt": judge.prompt, "model": judge.model, "variables": dict(VARIABLES),
            "scale": judge.scale, "params": dict(judge.params)}  # fmt: skip


def _rubric(judge: _Judge) -> str | None:
    prompt = getattr(judge.scorer, "_prompt", None)
    return f"{prompt.name}@{prompt.version}"[:300] if prompt is not None else None


def _subject(call: Call) -> NewScore:
    """The judged call's identity and filter columns, as its call record has them."""
    deployment = call.target.deployment if call.target is not None else None
    context = call.span.get_span_context()
    return NewScore(
        created_at=call.created_at, request_id=call.request_id, judge="",
        trace_id=format(context.trace_id, "032x") if context.trace_id else None,
        route=call.route[:200] if call.route is not None else None,
        model=deployment.model if deployment is not None else (call.model or "")[:200] or None,
        prompt_name=call.prompt_name, prompt_version=call.prompt_version,
    )  # fmt: skip


def _sample(request_id: str, texts: tuple[str, str], output: str) -> Any:
    from lockgate.evals.records import ExampleResult

    conversation_text, question = texts
    return ExampleResult(
        key=request_id, index=0, epoch=0,
        input={"conversation": conversation_text, "question": question}, output=output,
    )  # fmt: skip


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None
                 for p in content]  # fmt: skip
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def conversation(sent: Mapping[str, Any], max_chars: int) -> tuple[str, str]:
    """(the request as ``role: text`` lines, its end kept; the last user message, its start
    kept), each at most ``max_chars`` characters. A completions prompt is both."""
    messages = sent.get("messages")
    if not isinstance(messages, list):
        prompt = sent.get("prompt")
        text = prompt if isinstance(prompt, str) else _text(prompt)
        return text[-max_chars:], text[:max_chars]
    lines: list[str] = []
    question = ""
    size = 0
    for message in reversed(messages):  # newest first: only the end is kept
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        role = role[:20] if isinstance(role, str) else "?"
        text = _text(message.get("content"))
        if role == "user" and not question:
            question = text[:max_chars]
        if size < max_chars:
            lines.append(f"{role}: {text[-max_chars:]}")
            size += len(lines[-1]) + 1
        elif question:
            break
    joined = "\n".join(reversed(lines))
    return joined[-max_chars:], question


def answer_text(data: Mapping[str, Any]) -> str:
    """The first choice's text of a non-streaming answer (a tool call's: empty)."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    message = choice.get("message")
    if isinstance(message, dict):
        return _text(message.get("content"))
    return _text(choice.get("text"))
